# The two commands a fresh machine needs:
#   make serve   install what is missing, build, serve the upload page + API on http://127.0.0.1:8080/
#   make test    install what is missing (ONNX Runtime, Python tools, moto), build, run every test
# Both take everything from the package registries only (crates.io, PyPI).

SHELL := /bin/bash
ENV = eval "$$(scripts/setup.sh)"
HOST ?= 127.0.0.1
PORT ?= 8080
ARCH ?= x86_64

.PHONY: setup build serve test lint bench fuzz build-CatdogFunction

setup:
	@scripts/setup.sh > /dev/null

build:
	cargo build --release --bin catdog

serve: setup build
	@$(ENV) && exec target/release/catdog serve --host $(HOST) --port $(PORT)

test:
	@scripts/test.sh

# Side-by-side benchmark (bench/README.md): prints a table, writes BENCHMARKS.md + bench/benchmarks.png.
bench:
	@bench/run.sh

# Bounded fuzzing of request decoding → preprocessing (FUZZ_SECONDS, default 120; needs nightly).
fuzz:
	@scripts/fuzz.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Called by `sam build` (template.yaml, BuildMethod: makefile) with ARTIFACTS_DIR set:
# the binary as `bootstrap` plus the ONNX Runtime library it loads from its own folder.
# cargo-lambda (PyPI `cargo-lambda`) builds against Amazon Linux's glibc; without it
# a plain release build is used (fine when this machine's glibc is not newer than AL2023's).
build-CatdogFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it)"; exit 2; }
	@if command -v cargo-lambda > /dev/null; then \
	  cargo lambda build --release --bin catdog $$([ "$(ARCH)" = arm64 ] && echo --arm64) && \
	  cp target/lambda/catdog/bootstrap "$(ARTIFACTS_DIR)/bootstrap"; \
	else \
	  cargo build --release --bin catdog && cp target/release/catdog "$(ARTIFACTS_DIR)/bootstrap"; \
	fi
	@ORT_ARCH=$(ARCH) scripts/setup.sh --lambda-lib "$(ARTIFACTS_DIR)"
