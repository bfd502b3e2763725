#!/usr/bin/env bash
# `make bench-explain`: what explain=true costs (bench/explain.py): the
# full-size VGG16 (fp32, Grad-CAM in the graph; its int8 copy) and the
# shared MobileNetV2 int8 (CAM), each with and without explain=true.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/prepare.sh
bench_prepare
cargo build --release --locked -p catdog
"$CATDOG_PYTHON" bench/make_vgg16.py target/bench/models "$DATA/catsdogs/train"
"$CATDOG_PYTHON" bench/explain.py --catdog target/release/catdog --photos "$DATA/catsdogs/test" \
  --model "VGG16 fp32=target/bench/models/vgg16.onnx" \
  --model "VGG16 int8 (models/quantize.py)=target/bench/models/vgg16.int8.onnx" \
  --model "MobileNetV2 int8 (shared)=$DATA/models/mobilenetv2-12-int8.onnx:torch" "$@"
