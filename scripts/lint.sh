#!/usr/bin/env bash
# The one lint (`make lint`; scripts/test.sh runs it too, so the two cannot
# drift apart): the code's style (cargo fmt --check), dependencies nothing
# uses (cargo machete, at the version tools/cargo-tools.txt locks, installed
# the way the test command installs its tools), and the architecture's rules
# that the compiler cannot state plus warnings (cargo clippy -D warnings;
# clippy.toml: only settings reads the process environment).
#
# All three run even when one fails, each is reported, and the exit status
# is non-zero if any failed: one finding does not hide the others.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
source scripts/tools.sh

failed=()
# check NAME COMMAND...: runs it, noting NAME and its exit status on failure.
check() {
  local name=$1 rc=0
  shift
  echo "== lint: $name"
  "$@" || rc=$?
  ((rc == 0)) || failed+=("$name (exit status $rc)")
}

check "cargo fmt --check" cargo fmt --all --check
if cargo_tool cargo-machete; then
  check "cargo machete" cargo machete
else
  failed+=("cargo machete (not installed: installing the version tools/cargo-tools.txt locks failed)")
fi
check "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings

if ((${#failed[@]})); then
  summary=$(printf '%s; ' "${failed[@]}")
  echo "== lint FAILED: ${summary%; }"
  exit 1
fi
echo "== lint passed (cargo fmt, cargo machete, cargo clippy)"
