"""Static int8 quantization of a catdog model with ONNX Runtime's tools:
QDQ format, per-channel int8 weights kept to 7 bits (`reduce_range`), uint8
activations calibrated on real pictures preprocessed exactly as the model's
contract says (the `caffe` or `torch` preset in its metadata). The metadata
is carried over, plus `catdog_quantization` describing what was done.

Why 7-bit weights: x86 Lambda CPUs have AVX2 but no VNNI, and there ONNX
Runtime multiplies uint8 activations by int8 weights with `vpmaddubsw`, which
adds two products into an int16 and can saturate once 2 x 255 x |w| > 32767.
Weights within +-64 cannot saturate, so the model answers alike with and
without VNNI. Measured (`make bench-cpus`, BENCHMARKS.md, MobileNetV2, 46 test
photos, qemu Haswell against a VNNI machine): with full 8-bit weights 4 labels
and 17 top-1 classes differed, scores by up to 0.53; with 7-bit weights none,
scores bit for bit equal, at the same speed. uint8 weights (`--weights uint8`)
are exact too but 2.1-2.7x slower on the VNNI machine; int8 activations
(`--activations int8`) answer differently too (2 labels, 18 classes) and are
~2x slower.

Static QDQ is the kind that pays on CPUs: VGG16 runs ~3.7x faster. Dynamic
quantization (`quantize_dynamic`) turns Convs into ConvInteger and is ~7x
*slower* there, so it is not offered.

Usage: quantize.py IN.onnx OUT.onnx --calib DIR [--count 32]
       [--weights int8|uint8] [--activations uint8|int8] [--no-reduce-range] [--no-per-channel]
"""
import argparse
import json
import os

import numpy as np
import onnx
from PIL import Image, ImageOps
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.registry import QDQRegistry

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
CAFFE_MEAN = np.array([103.939, 116.779, 123.68], np.float32)


def torch_hwc(img):
    """torchvision Resize(256) + CenterCrop(224) + ToTensor + Normalize, HWC."""
    w, h = img.size
    if w <= h:
        nw, nh = 256, int(256 * h / w)
    else:
        nw, nh = int(256 * w / h), 256
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = int(round((nw - 224) / 2.0)), int(round((nh - 224) / 2.0))
    x = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32) / np.float32(255.0)
    return (x - MEAN) / STD


def caffe_hwc(img):
    """Keras load_img(target_size=(224, 224)) + vgg16.preprocess_input, HWC BGR."""
    x = np.asarray(img.resize((224, 224), Image.NEAREST), np.float32)[..., ::-1]
    return x - CAFFE_MEAN


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--calib", required=True, help="folder of pictures (walked recursively)")
    ap.add_argument("--count", type=int, default=32, help="calibration pictures, spread over the folder")
    ap.add_argument("--weights", choices=["int8", "uint8"], default="int8", help="weight type")
    ap.add_argument("--activations", choices=["uint8", "int8"], default="uint8", help="activation type")
    ap.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=True,
                    help="7-bit weights (default), which cannot saturate on x86 CPUs without VNNI")
    ap.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None,
                    help="per-channel weight scales (default: when the opset allows it, 13 and up)")
    args = ap.parse_args()

    model = onnx.load(args.model, load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    preset = meta.get("preprocessing", "").strip().strip('"')
    if preset.startswith("{"):
        # The JSON form catdog finetune writes names the preset it spells out.
        preset = json.loads(preset).get("preset") or preset
    prep = {"caffe": caffe_hwc, "torch": torch_hwc}.get(preset)
    if prep is None:
        raise SystemExit(f"{args.model}: preprocessing {preset!r} is not a preset (caffe, torch); "
                         "quantize.py calibrates only with those")
    inp = model.graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    nchw = dims[1] == 3

    files = []
    for root, _, names in os.walk(args.calib):
        files += [os.path.join(root, n) for n in names if n.lower().endswith((".jpg", ".jpeg", ".png"))]
    files.sort()
    if not files:
        raise SystemExit(f"no pictures in {args.calib}")
    files = files[:: max(1, len(files) // args.count)][: args.count]

    def tensor(path):
        x = prep(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        return (x.transpose(2, 0, 1) if nchw else x)[None].astype(np.float32).copy()

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(files)

        def get_next(self):
            f = next(self.it, None)
            return None if f is None else {inp.name: tensor(f)}

    # Per-channel DequantizeLinear needs its `axis` attribute, added in opset 13.
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    per_channel = opset >= 13 if args.per_channel is None else args.per_channel
    if per_channel and opset < 13:
        raise SystemExit(f"{args.model}: per-channel weights need opset 13, the model has {opset}")
    # Softmax stays in float: quantized, its output is rounded to 1/255 steps
    # and no longer sums to 1 ([0, 0.996] for a sure answer), which blurs the
    # probabilities the service reports for no speed gained.
    ops = [op for op in QDQRegistry if op != "Softmax"]
    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    quantize_static(args.model, args.out, Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    reduce_range=args.reduce_range, activation_type=types[args.activations],
                    weight_type=types[args.weights], op_types_to_quantize=ops)
    q = onnx.load(args.out, load_external_data=False)
    del q.metadata_props[:]
    weights = f"{'7-bit ' if args.reduce_range else ''}{args.weights} weights"
    meta["catdog_quantization"] = json.dumps({"method": f"static QDQ, {'per-channel' if per_channel else 'per-tensor'} "
                                                        f"{weights}, {args.activations} activations",
                                              "weights": args.weights, "activations": args.activations,
                                              "reduce_range": args.reduce_range, "per_channel": per_channel,
                                              "calibration_pictures": len(files)})
    for k, v in meta.items():
        q.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(q, args.out)
    print(f"{args.out}: {os.path.getsize(args.out) / 1e6:.1f} MB (from {os.path.getsize(args.model) / 1e6:.1f} MB), "
          f"calibrated on {len(files)} pictures")


if __name__ == "__main__":
    main()
