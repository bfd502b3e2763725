"""Builds a full-size VGG16 as the tutorial fine-tunes it (13 conv + 3 dense,
224x224, the last layer replaced by a 2-way softmax: ~528 MB) with random
weights, in ONNX with catdog's metadata (labels, caffe preprocessing), and its
int8 copy (models/quantize.py: static QDQ, per-channel, calibrated on real photos).

Speed does not depend on the weights, so random ones measure what real ones
would. Usage: make_vgg16.py OUT_DIR PHOTO_DIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = sys.argv[1]
PHOTOS = sys.argv[2] if len(sys.argv) > 2 else None
os.makedirs(OUT, exist_ok=True)
fp32 = os.path.join(OUT, "vgg16.onnx")
int8 = os.path.join(OUT, "vgg16.int8.onnx")

CONV = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def build():
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x, cin, i = "input", 3, 0
    for v in CONV:
        if v == "M":
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            x = f"pool{i}"
            continue
        i += 1
        w = (rng.standard_normal((v, cin, 3, 3), dtype=np.float32) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"conv{i}_w"), numpy_helper.from_array(np.zeros(v, np.float32), f"conv{i}_b")]
        nodes.append(helper.make_node("Conv", [x, f"conv{i}_w", f"conv{i}_b"], [f"conv{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]))
        x, cin = f"relu{i}", v
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
    x, fin = "flat", 512 * 7 * 7
    for j, fout in enumerate([4096, 4096, 2], start=1):
        w = (rng.standard_normal((fin, fout), dtype=np.float32) * np.sqrt(2.0 / fin)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"fc{j}_w"), numpy_helper.from_array(np.zeros(fout, np.float32), f"fc{j}_b")]
        nodes.append(helper.make_node("Gemm", [x, f"fc{j}_w", f"fc{j}_b"], [f"fc{j}"]))
        if j < 3:
            nodes.append(helper.make_node("Relu", [f"fc{j}"], [f"fc{j}_relu"]))
            x = f"fc{j}_relu"
        fin = fout
    nodes.append(helper.make_node("Softmax", ["fc3"], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes, "vgg16_catdog",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in {"labels": '["cat", "dog"]', "preprocessing": "caffe"}.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, fp32)


if not os.path.exists(fp32):
    print(f"building {fp32} (random weights)", flush=True)
    build()
fp32_only = os.environ.get("BENCH_FP32_ONLY") == "1"  # bench/run.sh --only-s3
if not os.path.exists(int8) and not fp32_only:
    print(f"quantizing to {int8} (static int8, calibrated on {PHOTOS})", flush=True)
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([sys.executable, os.path.join(here, "..", "models", "quantize.py"), fp32, int8,
                    "--calib", PHOTOS, "--count", "16"], check=True)
for p in (fp32,) if fp32_only else (fp32, int8):
    print(f"{p}: {os.path.getsize(p) / 1e6:.0f} MB")
