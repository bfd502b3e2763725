#!/usr/bin/env bash
# The test command (`make test`; CI's .ci/run calls it): installs what is
# missing, builds the fixtures, builds everything in one profile, runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

eval "$(CATDOG_WITH_KERAS=1 scripts/setup.sh)"
export CATDOG_DATA="${CATDOG_DATA:-$(cd .. && pwd)/shared/data}"
[[ -d "$CATDOG_DATA/catsdogs" ]] || echo "test: shared data not found at $CATDOG_DATA: tests that need it will say 'skipped'"

if ! command -v chromium > /dev/null || ! command -v chromedriver > /dev/null; then
  echo "== installing Debian's chromium + chromium-driver (browser test of the upload page)"
  SUDO=$([[ $(id -u) == 0 ]] && echo "" || echo sudo)
  $SUDO apt-get install -y -q chromium chromium-driver > /dev/null 2>&1 \
    || { $SUDO apt-get update -q > /dev/null && $SUDO apt-get install -y -q chromium chromium-driver > /dev/null; }
fi

echo "== notebook tools (evcxr kernel + Jupyter; built once, then reused)"
eval "$(scripts/setup_notebook.sh)"
export CATDOG_REQUIRE_NOTEBOOK=1

echo "== fixtures"
"$CATDOG_PYTHON" tests/fixtures/make_fixtures.py target/fixtures "$CATDOG_DATA"

echo "== build"
cargo build --workspace --all-targets --locked

echo "== tests"
cargo test --workspace --locked --no-fail-fast

echo "== all tests passed in $((SECONDS - start)) s"
