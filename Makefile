# The two commands a fresh machine needs:
#   make serve      install what serving needs (the ONNX Runtime library, nothing else), build,
#                   serve the upload page + API on http://127.0.0.1:8080/
#   make setup      the same set-up without serving: then target/release/catdog works as it is
#   make test       install what is missing, at the versions locked in tools/ (ONNX Runtime, Python
#                   test tools, s3s-fs, evcxr, SAM CLI, jQuery), build, lint, run every test
#   make lock       regenerate those lock files (on purpose, to move to newer tools)
# Also:
#   make install    release build, then $(PREFIX)/bin/catdog + ONNX Runtime in $(PREFIX)/lib/catdog/
#                   (PREFIX defaults to ~/.local)
#   make uninstall  removes what make install put there
# All take everything from the package registries only (crates.io, PyPI).

SHELL := /bin/bash
HOST ?= 127.0.0.1
PORT ?= 8080
ARCH ?= x86_64
PREFIX ?= $(HOME)/.local
BINDIR = $(PREFIX)/bin
LIBDIR = $(PREFIX)/lib/catdog
# Which build `setup`, `serve` and `install` use (`debug` for a quick one).
PROFILE ?= release
CARGO_PROFILE = $(if $(filter debug,$(PROFILE)),dev,$(PROFILE))

.PHONY: runtime setup build serve install install-files uninstall test lint lock bench bench-objects bench-explain bench-concurrency bench-memory bench-cpus prices soak fuzz image build-CatdogFunction build-CatdogManagedFunction build-PreTrafficHook

# Only what running catdog needs: the ONNX Runtime shared library, into
# ~/.cache/catdog/, where the binary finds it with no variable set
# (`scripts/setup.sh --test-tools` adds the tests' Python virtualenv).
runtime:
	@scripts/setup.sh > /dev/null

# Everything `target/release/catdog` needs: the library and the binary.
setup: runtime build

build:
	cargo build --locked --profile $(CARGO_PROFILE) --bin catdog

serve: setup
	@exec target/$(PROFILE)/catdog serve --host $(HOST) --port $(PORT)

# catdog finds the library in ../lib/catdog/ relative to its own folder.
install: setup
	@$(MAKE) --no-print-directory install-files

# The copying alone, of a binary already built (tests/it/newcomer.rs runs it).
install-files:
	@set -e; lib=$$(eval "$$(scripts/setup.sh)" && echo "$$ORT_DYLIB_PATH"); \
	install -d "$(BINDIR)" "$(LIBDIR)"; \
	install -m 0755 target/$(PROFILE)/catdog "$(BINDIR)/catdog"; \
	rm -f "$(LIBDIR)"/libonnxruntime.so*; \
	install -m 0755 "$$lib" "$(LIBDIR)/"; \
	echo "installed $(BINDIR)/catdog"; \
	echo "installed $(LIBDIR)/$$(basename "$$lib")"; \
	case ":$$PATH:" in *":$(BINDIR):"*|*":$(BINDIR)/:"*) ;; \
	  *) echo "note: $(BINDIR) is not on your PATH; add it, e.g. to ~/.profile:"; \
	     echo "  export PATH=\"$(BINDIR):\$$PATH\"";; esac

uninstall:
	@rm -fv "$(BINDIR)/catdog" "$(LIBDIR)"/libonnxruntime.so*
	@rmdir "$(LIBDIR)" 2> /dev/null || true

test:
	@scripts/test.sh

# Regenerate the tool lock files in tools/ (newest versions the .in files allow);
# `make test` installs exactly what they name.
lock:
	@scripts/lock.sh

# Side-by-side benchmark (bench/README.md): prints a table, writes BENCHMARKS.md + bench/benchmarks.png.
bench:
	@bench/run.sh

# S3 objects per second (fp32, int8) and the cost table: BENCHMARKS.md's "S3 objects" section.
bench-objects:
	@bench/objects.sh

# What explain=true costs, in the graph and by occlusion: BENCHMARKS.md's "Explanations" section.
bench-explain:
	@bench/explain.sh

# One Lambda environment taking 1, 4, 8 invokes at once (Managed Instances) beside catdog serve:
# BENCHMARKS.md's "Many invokes per environment" section.
bench-concurrency:
	@bench/concurrency.sh

# Peak memory under 40-megapixel pictures, on both hosts: BENCHMARKS.md's "Memory" section.
bench-memory:
	@bench/memory.sh memory

# int8 recipes natively and on an AVX2 CPU without VNNI (qemu Haswell, as x86 Lambda):
# BENCHMARKS.md's "int8 recipes on CPUs without VNNI" section.
bench-cpus:
	@bench/cpus.sh

# docs/deploy.md's "What a picture costs" table, from BENCHMARKS.md's VGG16 latencies and AWS's prices.
prices:
	@python3 bench/prices.py

# Ten minutes of good, odd and hostile requests at 8 clients: BENCHMARKS.md's "Soak" section.
soak:
	@bench/memory.sh soak

# Bounded fuzzing of request decoding → preprocessing (FUZZ_SECONDS, default 120; needs nightly).
fuzz:
	@scripts/fuzz.sh

# The Lambda package as an OCI image, built without Docker (umoci): target/image/$(ARCH)/oci,
# tag catdog (docs/deploy.md, "A container image"). MODEL=file.onnx puts the model inside
# (MODEL_SHA256=<hex> checks it is that one). The Dockerfile builds the same on AWS's base
# image from what this packs.
image:
	@scripts/image.sh --arch $(ARCH) $(if $(MODEL),--model "$(MODEL)") $(if $(MODEL_SHA256),--model-sha256 "$(MODEL_SHA256)")

# cargo fmt --check, cargo machete, cargo clippy -D warnings: the same
# script the test command runs (it installs cargo-machete's locked version).
lint:
	@scripts/lint.sh

# Called by `sam build` (template.yaml, BuildMethod: makefile) with ARTIFACTS_DIR set:
# the binary as `bootstrap` plus the ONNX Runtime library it loads from its own folder.
# ARCH=arm64 (as in `ARCH=arm64 sam build --parameter-overrides Architecture=arm64`)
# builds for aarch64; each architecture's binary has its own folder under
# target/lambda/, so building one never replaces the other's.
# cargo-lambda (PyPI `cargo-lambda`) builds against Amazon Linux's glibc; without it
# a plain release build is used (fine when this machine's glibc is not newer than AL2023's).
# Its zig comes from the `ziglang` package beside it, which cargo-lambda runs with
# `python3 -m ziglang`: pointed at cargo-lambda's own python3, so another virtualenv
# first on PATH (the SAM CLI's, Jupyter's) does not hide it.
define lambda-bootstrap
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it)"; exit 2; }
	@if command -v cargo-lambda > /dev/null; then \
	  py="$$(dirname "$$(command -v cargo-lambda)")/python3"; \
	  if [ -z "$$CARGO_ZIGBUILD_PYTHON_PATH" ] && [ -x "$$py" ]; then export CARGO_ZIGBUILD_PYTHON_PATH="$$py"; fi; \
	  cargo lambda build --locked --release --bin catdog $$([ "$(ARCH)" = arm64 ] && echo --arm64) \
	    --lambda-dir "$${CARGO_TARGET_DIR:-target}/lambda/$(ARCH)" && \
	  cp "$${CARGO_TARGET_DIR:-target}/lambda/$(ARCH)/catdog/bootstrap" "$(ARTIFACTS_DIR)/bootstrap"; \
	else \
	  cargo build --locked --release --bin catdog && cp "$${CARGO_TARGET_DIR:-target}/release/catdog" "$(ARTIFACTS_DIR)/bootstrap"; \
	fi
endef

# template.yaml's CatdogManagedFunction (Hosting ManagedInstances) is the same package.
build-CatdogFunction build-CatdogManagedFunction:
	$(lambda-bootstrap)
	@ORT_ARCH=$(ARCH) scripts/setup.sh --lambda-lib "$(ARTIFACTS_DIR)"

# template.yaml's PreTrafficHook: the same build of the same binary (its
# Handler, `pretraffic`, selects the hook), the bootstrap alone: the hook runs
# no model, so it carries no ONNX Runtime library. cargo finds the build
# build-CatdogFunction made up to date and only the copy is new.
build-PreTrafficHook:
	$(lambda-bootstrap)
