#!/usr/bin/env bash
# The test command (`make test`; CI's .ci/run calls it): installs what is
# missing, builds the fixtures, builds everything in one profile, runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

eval "$(CATDOG_WITH_KERAS=1 scripts/setup.sh --test-tools)"
export CATDOG_DATA="${CATDOG_DATA:-$(cd .. && pwd)/shared/data}"
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

# Debian packages at the versions locked in tools/apt.txt, from the machine's
# apt sources (needs root or sudo); a package already at its version is left.
# Debian's archive keeps no superseded version (a stable update replaces it
# within days: qemu-user's +b2 was gone the day it was locked), so where the
# locked version can no longer be had, apt's own is installed and the run
# says so, with the lock's and the installed version, rather than not run.
apt_install() {
  local sudo pkg want have wanted=()
  sudo=$([[ $(id -u) == 0 ]] && echo "" || echo sudo)
  for pkg in "$@"; do
    want=$(sed -n "s/^$pkg=//p" tools/apt.txt)
    [[ -n $want ]] || { echo "test: $pkg has no version in tools/apt.txt" >&2; exit 2; }
    have=$(dpkg-query -W -f='${Version}' "$pkg" 2> /dev/null || true)
    [[ $have == "$want" ]] || wanted+=("$pkg=$want")
  done
  ((${#wanted[@]})) || return 0
  $sudo apt-get install -y -q --allow-downgrades "${wanted[@]}" > /dev/null 2>&1 \
    || { $sudo apt-get update -q > /dev/null \
      && $sudo apt-get install -y -q --allow-downgrades "${wanted[@]}" > /dev/null 2>&1; } \
    || {
      $sudo apt-get install -y -q "${wanted[@]%%=*}" > /dev/null
      for pkg in "${wanted[@]}"; do
        have=$(dpkg-query -W -f='${Version}' "${pkg%%=*}")
        [[ $have == "${pkg#*=}" ]] \
          || echo "== apt: ${pkg%%=*} ${pkg#*=} (tools/apt.txt) is no longer in Debian's archive: installed $have; \`make lock\` records it"
      done
    }
}

echo "== Debian packages (tools/apt.txt): chromium + chromium-driver (browser test of the upload page)"
apt_install chromium chromium-driver

# tests/it/cpus.rs runs the arm64 package under qemu-aarch64 (with Debian's
# aarch64 C and C++ runtimes as its sysroot) and the x86_64 one under
# qemu-x86_64 -cpu Haswell; cargo-lambda builds the arm64 one with Rust's
# aarch64 standard library.
echo "== Debian packages (tools/apt.txt): qemu-user + libc6-arm64-cross + libstdc++6-arm64-cross (other CPUs' tests)"
apt_install qemu-user libc6-arm64-cross libstdc++6-arm64-cross
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

echo "== cargo tools (tools/cargo-tools.txt: cargo-nextest runs the tests, cargo-machete finds unused dependencies)"
source scripts/tools.sh
cargo_tool cargo-nextest
cargo_tool cargo-machete

echo "== fixtures"
"$CATDOG_PYTHON" tests/fixtures/make_fixtures.py target/fixtures "$CATDOG_DATA"

echo "== build"
cargo build --workspace --all-targets --locked

# The architecture's rules that the compiler cannot state (clippy.toml: only
# settings reads the process environment) and the code's style.
echo "== lint (cargo fmt --check, cargo machete, cargo clippy -D warnings)"
lint_rc=0
cargo fmt --all --check || lint_rc=$?
cargo machete || lint_rc=$?
cargo clippy --workspace --all-targets --locked -- -D warnings || lint_rc=$?

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
  echo "== tests FAILED (lint: cargo fmt/clippy exit status $lint_rc; the tests themselves passed) in $((SECONDS - start)) s"
  rc=$lint_rc
else
  echo "== tests FAILED (cargo nextest exit status $rc) in $((SECONDS - start)) s"
fi
exit "$rc"
