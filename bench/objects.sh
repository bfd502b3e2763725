#!/usr/bin/env bash
# `make bench-objects`: S3 objects per second and the cost table (bench/objects.py).
# Installs what it needs (the test tools, s3s-fs), builds catdog in release
# mode, the S3 simulation's proxy and the full-size VGG16 models, then runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/prepare.sh
bench_prepare
cargo build --release --locked -p catdog
cargo build --locked -p catdog-tests --bin s3_throttle
"$CATDOG_PYTHON" bench/make_vgg16.py target/bench/models "$DATA/catsdogs/train"
"$CATDOG_PYTHON" bench/objects.py --catdog target/release/catdog --models target/bench/models \
  --photos "$DATA/catsdogs" --python "$CATDOG_PYTHON" "$@"
