#!/usr/bin/env bash
# `make bench`: installs what the benchmark needs, at the versions tools/
# locks (wrk, Flask, matplotlib, TensorFlow for the tutorial's peer, s3s-fs),
# builds catdog in release mode, the S3 simulation's proxy and the VGG16
# models, then runs bench/run.py (extra arguments are passed on: e.g.
# `bench/run.sh --only-s3`, `--s3-mbps 90`).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/prepare.sh
bench_prepare --keras

# wrk at the version tools/apt.txt locks, as the test command installs its packages.
source scripts/tools.sh
apt_from_lock wrk

cargo build --release --locked -p catdog
# The simulated S3's bandwidth/first-byte proxy, in the dev profile the tests
# build anyway (a no-op after `make test`): its time goes to system calls, and
# dependencies (tokio) are optimised in dev builds too.
cargo build --locked -p catdog-tests --bin s3_throttle
only_s3=0
for a in "$@"; do [[ $a == --only-s3 ]] && only_s3=1; done
# --only-s3 needs the fp32 model only: skip quantizing the int8 copy.
BENCH_FP32_ONLY=$only_s3 "$CATDOG_PYTHON" bench/make_vgg16.py target/bench/models "$DATA/catsdogs/train"
# The package that ships, measured as Lambda too: what `sam build` makes (the
# same build as tests/it/deploy.rs, so a no-op after `make test`).
eval "$(scripts/setup_sam.sh)"
SAM_CLI_TELEMETRY=0 sam build --build-dir target/sam-build > /dev/null < /dev/null
"$CATDOG_PYTHON" bench/run.py --catdog target/release/catdog --models target/bench/models \
  --photos "$DATA/catsdogs/test" --keras-python "$CATDOG_KERAS_PYTHON" \
  --lambda-bootstrap target/sam-build/CatdogFunction/bootstrap "$@"
