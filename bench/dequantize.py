"""An fp32 MobileNetV2 made from the shared int8 one, for measuring int8 recipes.

    dequantize.py [IN.onnx] OUT.onnx

Why it exists: measuring what `models/quantize.py` does (accuracy, and whether
answers hold on CPUs without VNNI) needs a real fp32 classifier with
meaningful accuracy to quantize, and none can be had offline here (no
trained VGG16 weights; the shared MobileNetV2, `mobilenetv2-12-int8.onnx`, is
already quantized). So this turns that int8 model back into float: every
weight is stored as its dequantized value, so the fp32 model computes what the
int8 one does without the activations' rounding and without their clipping to
calibrated ranges (a ReLU6 is a ReLU6 again). Its weights are the int8 grid's,
not the original training's. Measured on the 46 test photos: cat/dog right
43/46 (the int8 model: 42/46), the same top-1 ImageNet class as the int8 model
on 39/46.

The shared model is in ONNX Runtime's operator format (QLinearConv,
QLinearAdd, QLinearMatMul, ...), not QDQ, so each quantized op becomes its
float op:
  QLinearConv      -> Conv, W = (w_q - w_zp) * w_s per output channel,
                      B = b_q * x_s * w_s (the int32 bias's scale); when the
                      output's zero point is 0 the int8 model had folded a
                      ReLU6 into it (its range starts at 0), so Clip(0, 6)
                      follows, as in MobileNetV2 itself
  QLinearAdd       -> Add (residual connections, linear)
  QLinearGlobalAveragePool -> GlobalAveragePool
  Reshape + QLinearMatMul + QLinearAdd -> Flatten + Gemm (the classifier)
and the input QuantizeLinear / output DequantizeLinear disappear. The result
is opset 13 (so quantize.py may quantize it per channel) and carries catdog's
`preprocessing: torch` metadata (the shared model is torchvision-style but
says nothing). `bench/cpus.py` and tests/fixtures/make_fixtures.py use it.
"""
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# The shared MobileNetV2 int8 (under data_dir()), when no input is given.
DEFAULT_MODEL = os.path.join("models", "mobilenetv2-12-int8.onnx")


def data_dir():
    """The shared data folder: what scripts/data_dir.sh says, the one place its
    default is written ($CATDOG_DATA, else shared/data beside the checkout)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "data_dir.sh")
    return subprocess.run([script], check=True, capture_output=True, text=True).stdout.strip()


def dequantize(src):
    m = onnx.load(src)
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}

    def f(name):
        return np.asarray(init[name]).astype(np.float64)

    def qdq(q, s, zp, axis=0):
        s, zp = f(s), f(zp)
        if s.ndim == 1:  # per output channel: axis 0 of a Conv weight, 1 of a MatMul's [K, N]
            shape = [1] * init[q].ndim
            shape[axis] = -1
            s, zp = s.reshape(shape), zp.reshape(shape)
        return (f(q) - zp) * s

    def fl(name):
        # Tensors between ops keep their quantized names minus the suffix.
        return name[: -len("_quantized")] if name.endswith("_quantized") else name

    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    inp = m.graph.input[0].name
    for n in m.graph.node:
        op = n.op_type
        if op == "QuantizeLinear" and n.input[0] == inp:
            continue  # "input_quantized" is read as "input"
        elif op == "QLinearConv":
            x, xs, _, w, ws, wzp, _, yzp = n.input[:8]
            weight = qdq(w, ws, wzp)
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            ins = [fl(x), const(fl(w), weight)]
            if len(n.input) > 8:
                bias = f(n.input[8]) * f(xs) * f(ws)  # ws is per output channel
                ins.append(const(fl(n.input[8]), bias))
            out = fl(n.output[0])
            if int(init[yzp]) == 0:
                nodes.append(helper.make_node("Conv", ins, [out + "_preact"], **attrs))
                nodes.append(helper.make_node("Clip", [out + "_preact", const(out + "_min", 0.0),
                                                       const(out + "_max", 6.0)], [out]))
            else:
                nodes.append(helper.make_node("Conv", ins, [out], **attrs))
        elif op == "QLinearAdd":
            a, b = n.input[0], n.input[3]
            if b in init:  # the classifier's bias, handled with its MatMul
                continue
            nodes.append(helper.make_node("Add", [fl(a), fl(b)], [fl(n.output[0])]))
        elif op == "QLinearGlobalAveragePool":
            nodes.append(helper.make_node("GlobalAveragePool", [fl(n.input[0])], [fl(n.output[0])]))
        elif op == "QLinearMatMul":
            a, w, ws, wzp = n.input[0], n.input[3], n.input[4], n.input[5]
            # The Reshape before it flattens the pooled [N, C, 1, 1] tensor.
            reshape = producer[a]
            assert reshape.op_type == "Reshape", reshape.op_type
            add = next(k for k in m.graph.node if k.op_type == "QLinearAdd" and k.input[0] == n.output[0])
            bq, bs, bzp = add.input[3], add.input[4], add.input[5]
            nodes.append(helper.make_node("Flatten", [fl(reshape.input[0])], ["flat"], axis=1))
            nodes.append(helper.make_node("Gemm", ["flat", const(fl(w), qdq(w, ws, wzp, axis=1)), const(fl(bq), qdq(bq, bs, bzp))],
                                          [fl(add.output[0])]))
        elif op in ("DequantizeLinear", "Shape", "Gather", "Unsqueeze", "Concat", "Reshape"):
            # The output's DequantizeLinear (the Gemm writes "output"), and
            # the Reshape's shape computation, replaced by Flatten.
            continue
        else:
            raise SystemExit(f"{src}: no float form for {op} ({n.name})")

    graph = helper.make_graph(nodes, "mobilenetv2_fp32", list(m.graph.input), list(m.graph.output), inits)
    out = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="catdog bench/dequantize.py")
    out.ir_version = 8
    out.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT
    out.metadata_props.append(onnx.StringStringEntryProto(key="preprocessing", value="torch"))
    onnx.checker.check_model(out)
    return out


def main():
    args = sys.argv[1:]
    if len(args) == 1:
        args = [os.path.join(data_dir(), DEFAULT_MODEL)] + args
    if len(args) != 2:
        raise SystemExit(__doc__)
    onnx.save(dequantize(args[0]), args[1])
    print(f"{args[1]}: {os.path.getsize(args[1]) / 1e6:.1f} MB fp32 from {args[0]}")


if __name__ == "__main__":
    main()
