#!/usr/bin/env bash
# `make bench-memory` / `make soak` (bench/memory.py): peak memory under
# 40-megapixel pictures on both hosts, and a 10-minute soak. Installs the
# test tools (cargo-lambda's emulator), builds the release binary and the
# fixtures (the 40-megapixel JPEGs, the tiny model), then runs.
#   bench/memory.sh memory
#   bench/memory.sh soak [--minutes 10] [--clients 8]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/prepare.sh
bench_prepare
cargo build --release --locked -p catdog
"$CATDOG_PYTHON" tests/fixtures/make_fixtures.py target/fixtures "$DATA" > /dev/null
"$CATDOG_PYTHON" bench/memory.py "$@" --catdog target/release/catdog --fixtures target/fixtures --data "$DATA" \
  --cargo-lambda "$(dirname "$CATDOG_PYTHON")/cargo-lambda"
