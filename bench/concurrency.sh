#!/usr/bin/env bash
# `make bench-concurrency`: one Lambda environment taking several invokes at
# once (Managed Instances) beside `catdog serve` at the same client counts
# (bench/concurrency.py), fp32 and int8 VGG16.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/prepare.sh
bench_prepare
source scripts/tools.sh
apt_from_lock wrk
cargo build --release --locked -p catdog
"$CATDOG_PYTHON" bench/make_vgg16.py target/bench/models "$DATA/catsdogs/train"
"$CATDOG_PYTHON" bench/concurrency.py --catdog target/release/catdog --models target/bench/models \
  --photos "$DATA/catsdogs/test" "$@"
