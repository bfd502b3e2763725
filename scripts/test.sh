#!/usr/bin/env bash
# The test command (`make test`; CI's .ci/run calls it): installs what is
# missing, builds the fixtures, builds everything in one profile, runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

eval "$(CATDOG_WITH_KERAS=1 scripts/setup.sh --test-tools)"
source scripts/data_dir.sh # exports CATDOG_DATA
# A test that cannot find its data or tools fails; CATDOG_ALLOW_SKIPS=1 lets it
# skip instead, recorded as a line `TEST: reason` in the skip log, summed up
# at the end.
skip_log="${CATDOG_SKIP_LOG:-target/test-skips.txt}"
[[ $skip_log == /* ]] || skip_log="$PWD/$skip_log"
export CATDOG_SKIP_LOG="$skip_log"
rm -f "$CATDOG_SKIP_LOG" # a stale log would list an earlier run's skips
if [[ ! -d "$CATDOG_DATA/catsdogs" ]]; then
  if [[ ${CATDOG_ALLOW_SKIPS:-} == 1 ]]; then
    echo "test: shared data not found at $CATDOG_DATA: tests that need it will be skipped (CATDOG_ALLOW_SKIPS=1) and listed at the end"
  else
    echo "test: shared data not found at $CATDOG_DATA: tests that need it will FAIL; set CATDOG_DATA to the folder, or CATDOG_ALLOW_SKIPS=1 to skip them"
  fi
fi

# Debian packages at the versions tools/apt.txt locks (scripts/tools.sh's
# apt_from_lock: root or sudo; a version Debian's archive no longer has is
# replaced by apt's own, and the run says so).
source scripts/tools.sh

echo "== Debian packages (tools/apt.txt): chromium + chromium-driver (browser test of the upload page)"
apt_from_lock chromium chromium-driver

# tests/it/image.rs builds the container image with umoci.
echo "== Debian packages (tools/apt.txt): umoci (the container image, built without Docker)"
apt_from_lock umoci

# tests/it/cpus.rs runs the arm64 package under qemu-aarch64 (with Debian's
# aarch64 C and C++ runtimes as its sysroot) and the x86_64 one under
# qemu-x86_64 -cpu Haswell; cargo-lambda builds the arm64 one with Rust's
# aarch64 standard library.
echo "== Debian packages (tools/apt.txt): qemu-user + libc6-arm64-cross + libstdc++6-arm64-cross (other CPUs' tests)"
apt_from_lock qemu-user libc6-arm64-cross libstdc++6-arm64-cross
# From the Rust toolchain's own distribution server, as the toolchain itself
# came: if it cannot be reached, the rest of the suite still runs and the
# arm64 tests say why they fail.
if ! rustup target list --installed 2> /dev/null | grep -qx aarch64-unknown-linux-gnu; then
  echo "== adding Rust's aarch64-unknown-linux-gnu standard library (the arm64 Lambda package)"
  rustup target add aarch64-unknown-linux-gnu \
    || echo "== could not add it: tests/it/cpus.rs's arm64 tests will fail (or skip with CATDOG_ALLOW_SKIPS=1)"
fi

echo "== notebook tools (evcxr kernel + Jupyter; built once, then reused)"
eval "$(scripts/setup_notebook.sh)"
export CATDOG_REQUIRE_NOTEBOOK=1

echo "== SAM CLI (tests/it/deploy.rs runs \`sam build\`; installed once, then reused)"
eval "$(scripts/setup_sam.sh)"

# (cargo-machete, the lint's, is scripts/lint.sh's to install.)
echo "== cargo tools (tools/cargo-tools.txt: cargo-nextest runs the tests)"
cargo_tool cargo-nextest

echo "== fixtures"
"$CATDOG_PYTHON" tests/fixtures/make_fixtures.py target/fixtures "$CATDOG_DATA"

echo "== build"
cargo build --workspace --all-targets --locked

# The same lint as `make lint` (scripts/lint.sh: cargo fmt --check, cargo
# machete, cargo clippy -D warnings). A lint failure fails the run, but the
# tests still run: one failure does not hide the others.
echo "== lint (scripts/lint.sh)"
lint_rc=0
scripts/lint.sh || lint_rc=$?

echo "== tests"
rc=0
# cargo-nextest: a process per test, profile in .config/nextest.toml (no
# retries, no fail-fast). The crates have no doctests (nextest runs none).
cargo nextest run --workspace --locked --no-fail-fast || rc=$?

# `== skipped: N test part(s): name (reason); …`, or `== skipped: none`.
if [[ -s $CATDOG_SKIP_LOG ]]; then
  echo "== skipped: $(grep -c '' "$CATDOG_SKIP_LOG") test part(s): $(sort "$CATDOG_SKIP_LOG" | awk '
    { i = index($0, ": "); item = i ? substr($0, 1, i - 1) " (" substr($0, i + 2) ")" : $0
      printf "%s%s", (NR > 1 ? "; " : ""), item }')"
else
  echo "== skipped: none"
fi
if ((rc == 0 && lint_rc == 0)); then
  echo "== all tests passed in $((SECONDS - start)) s"
elif ((rc == 0)); then
  echo "== tests FAILED (lint: scripts/lint.sh exit status $lint_rc, its summary above; the tests themselves passed) in $((SECONDS - start)) s"
  rc=$lint_rc
else
  echo "== tests FAILED (cargo nextest exit status $rc) in $((SECONDS - start)) s"
fi
exit "$rc"
