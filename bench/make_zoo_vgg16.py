"""A stand-in for the ONNX Model Zoo vgg16-7 (which cannot be downloaded here): the same
layer shapes, opset 7, batch fixed at 1, Gemm with transB=1, 1000 raw logits, no metadata,
random weights. Usage: make_zoo_vgg16.py OUT.onnx (553 MB)."""
import sys

import numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
rng = np.random.default_rng(0)
CONV = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
nodes, inits = [], []
x, cin, i = "data", 3, 0
for v in CONV:
    if v == "M":
        nodes.append(helper.make_node("MaxPool", [x], [f"pool{i}"], kernel_shape=[2, 2], strides=[2, 2])); x = f"pool{i}"; continue
    i += 1
    w = (rng.standard_normal((v, cin, 3, 3), dtype=np.float32) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"conv{i}_w"), numpy_helper.from_array(np.zeros(v, np.float32), f"conv{i}_b")]
    nodes.append(helper.make_node("Conv", [x, f"conv{i}_w", f"conv{i}_b"], [f"conv{i}"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]))
    nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"])); x, cin = f"relu{i}", v
nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1)); x, fin = "flat", 512 * 7 * 7
for j, fout in enumerate([4096, 4096, 1000], start=1):
    w = (rng.standard_normal((fout, fin), dtype=np.float32) * np.sqrt(2.0 / fin)).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"fc{j}_w"), numpy_helper.from_array(np.zeros(fout, np.float32), f"fc{j}_b")]
    out = f"fc{j}" if j < 3 else "vgg0_dense2_fwd"
    nodes.append(helper.make_node("Gemm", [x, f"fc{j}_w", f"fc{j}_b"], [out], transB=1))
    if j < 3:
        nodes.append(helper.make_node("Relu", [out], [f"{out}_relu"])); x = f"{out}_relu"
    fin = fout
g = helper.make_graph(nodes, "vgg16", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 224, 224])],
                      [helper.make_tensor_value_info("vgg0_dense2_fwd", TensorProto.FLOAT, [1, 1000])], inits)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 7)]); m.ir_version = 3
onnx.save(m, sys.argv[1])
