"""int8 recipes on CPUs with and without VNNI (issue 23): `make bench-cpus`.

x86 Lambda CPUs have AVX2 but neither AVX-512 nor VNNI. Without VNNI, ONNX
Runtime multiplies uint8 activations by int8 weights with `vpmaddubsw`, which
adds two u8 x s8 products into an int16 and saturates, so an int8 model can
answer differently there than on the VNNI machine it was measured on. This
runs the same `catdog predict --json` natively and under `qemu-x86_64 -cpu
Haswell` (AVX2, FMA, no AVX-512, no VNNI) on the shared test photos, for
MobileNetV2 quantized by models/quantize.py with each recipe variant, and
prints, side by side: labels and top-1 ImageNet classes that differ between
the two CPUs, the largest score difference, cat/dog accuracy on both, and the
native inference time per picture against the recipe before issue 23.

The fp32 model is the shared int8 MobileNetV2 dequantized (bench/dequantize.py:
no other real fp32 classifier is available offline); each recipe is calibrated
on the train photos and measured on the test photos. fp32 is emulated on a few
photos only (--fp32-photos): TCG runs float vector code ~50 s a picture.

Writes its section of BENCHMARKS.md (between the CPUS markers). Not a test: it
measures and reports.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import dequantize  # noqa: E402
from quantize import torch_hwc  # noqa: E402

# (name, quantize.py flags). Every flag is spelled out, so a row means the same
# whatever quantize.py's defaults are; the default is found by asking it.
BEFORE = "u8s8, per-channel"
VARIANTS = [
    (BEFORE, ["--activations", "uint8", "--weights", "int8", "--no-reduce-range", "--per-channel"]),
    ("u8s8, per-channel, reduce_range", ["--activations", "uint8", "--weights", "int8", "--reduce-range", "--per-channel"]),
    ("u8u8, per-channel", ["--activations", "uint8", "--weights", "uint8", "--no-reduce-range", "--per-channel"]),
    ("s8s8, per-channel", ["--activations", "int8", "--weights", "int8", "--no-reduce-range", "--per-channel"]),
    ("u8s8, per-tensor", ["--activations", "uint8", "--weights", "int8", "--no-reduce-range", "--no-per-channel"]),
    ("u8s8, per-tensor, reduce_range", ["--activations", "uint8", "--weights", "int8", "--reduce-range", "--no-per-channel"]),
    ("u8u8, per-tensor", ["--activations", "uint8", "--weights", "uint8", "--no-reduce-range", "--no-per-channel"]),
]
QEMU_NOISE = "qemu-x86_64: warning: TCG doesn't support requested feature"


def predict(cmd, files, env):
    """`catdog predict --json` -> {file: answer}, and its wall time."""
    t = time.perf_counter()
    p = subprocess.run(cmd + ["--json"] + files, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        err = "\n".join(line for line in p.stderr.splitlines() if QEMU_NOISE not in line)
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-3000:]}")
    out = {}
    for line in p.stdout.splitlines():
        a = json.loads(line)
        out[os.path.basename(os.path.dirname(a["file"])) + "/" + os.path.basename(a["file"])] = a
    return out, wall


def top1(a):
    return a["imagenet_top5"][0]["index"] if a.get("imagenet_top5") else None


def compare(native, emulated):
    keys = sorted(emulated)
    labels = sum(native[k]["label"] != emulated[k]["label"] for k in keys)
    tops = sum(top1(native[k]) != top1(emulated[k]) for k in keys)
    diff = max(abs(native[k]["scores"][c] - emulated[k]["scores"][c]) for k in keys for c in native[k]["scores"])
    return labels, tops, diff


def right(answers):
    return sum(a["label"] == k.split("/")[0] for k, a in answers.items())


def speed(models, tensors, rounds, threads):
    """Median ms per picture of a ready tensor, per model, by Python onnxruntime
    (the library catdog loads, same version), rounds interleaved across models
    so that the shared machine's noise falls on all of them alike."""
    import onnxruntime as ort
    sessions = {}
    for name, path in models.items():
        o = ort.SessionOptions()
        o.intra_op_num_threads = threads
        sessions[name] = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    times = {name: [] for name in models}
    for r in range(rounds + 1):
        for name, s in sessions.items():
            feed = s.get_inputs()[0].name
            for x in tensors:
                t = time.perf_counter()
                s.run(None, {feed: x})
                if r:  # the first round warms up
                    times[name].append((time.perf_counter() - t) * 1e3)
    return {name: float(np.median(t)) for name, t in times.items()}


def cpu_name():
    with open("/proc/cpuinfo") as f:
        info = f.read()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    has = [n for f, n in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "AVX512-VNNI"),
                          ("avx_vnni", "AVX-VNNI"), ("amx_int8", "AMX-INT8")) if f in flags]
    return name, has


def write_section(path, section):
    text = open(path).read() if os.path.exists(path) else ""
    start, end = text.find("<!-- CPUS -->"), text.find("<!-- /CPUS -->")
    if start >= 0 and end > start:
        text = text[:start] + section + text[end + len("<!-- /CPUS -->\n"):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catdog", default="target/release/catdog")
    ap.add_argument("--data", help="the shared data folder (default: scripts/data_dir.sh's)")
    ap.add_argument("--work", default="target/bench/cpus", help="where the models are made")
    ap.add_argument("--qemu", default="qemu-x86_64")
    ap.add_argument("--cpu", default="Haswell", help="qemu CPU model: AVX2, no AVX-512, no VNNI")
    ap.add_argument("--count", type=int, default=32, help="calibration pictures (quantize.py --count)")
    ap.add_argument("--fp32-photos", type=int, default=4, help="test photos fp32 is emulated on (0: none)")
    ap.add_argument("--rounds", type=int, default=5, help="native timing rounds over the test photos")
    ap.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    ap.add_argument("--out", default="BENCHMARKS.md", help="'' to write nothing")
    args = ap.parse_args()
    args.data = args.data or dequantize.data_dir()

    os.makedirs(args.work, exist_ok=True)
    test = os.path.join(args.data, "catsdogs", "test")
    train = os.path.join(args.data, "catsdogs", "train")
    shared = os.path.join(args.data, "models", "mobilenetv2-12-int8.onnx")
    files = sorted(os.path.join(r, n) for r, _, ns in os.walk(test) for n in ns if n.lower().endswith((".jpg", ".jpeg", ".png")))
    fp32 = os.path.join(args.work, "mobilenetv2_fp32.onnx")
    import onnx
    onnx.save(dequantize.dequantize(shared), fp32)

    quantize = [sys.executable, os.path.join(HERE, "..", "models", "quantize.py")]

    def recipe(flags, out):
        p = subprocess.run(quantize + [fp32, out, "--calib", train, "--count", str(args.count)] + flags,
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"quantize.py {' '.join(flags)} failed:\n{p.stderr[-3000:]}")
        q = onnx.load(out, load_external_data=False)
        return json.loads(next(p.value for p in q.metadata_props if p.key == "catdog_quantization"))

    default_meta = recipe([], os.path.join(args.work, "default.onnx"))
    same = ("weights", "activations", "reduce_range", "per_channel")
    rows = [("fp32 (dequantized)", fp32, {}), ("shared int8 (ONNX Model Zoo, u8s8 per-channel, QOperator)", shared,
                                             {"MODEL_PREPROCESSING": "torch"})]
    default_name = None
    for name, flags in VARIANTS:
        if args.only and name not in args.only:
            continue
        path = os.path.join(args.work, name.replace(", ", "_").replace(" ", "_") + ".onnx")
        meta = recipe(flags, path)
        if all(meta[k] == default_meta[k] for k in same):
            default_name = name
        rows.append((name, path, {}))
        print(f"made {name}: {meta['method']}", flush=True)

    env0 = {**os.environ, "RUST_LOG": "warn"}
    half = max(args.fp32_photos // 2, 1)
    fp32_files = ([f for f in files if "/cat/" in f][:half] + [f for f in files if "/dog/" in f][:half]
                  if args.fp32_photos else [])
    fp32_native, _ = predict([args.catdog, "predict", "--model", fp32], files, env0)
    results = []
    for name, path, env in rows:
        pics = fp32_files if path == fp32 else files
        if not pics:
            continue
        cmd = [args.catdog, "predict", "--model", path]
        native = fp32_native if path == fp32 else predict(cmd, pics, {**env0, **env})[0]
        emulated, wall = predict([args.qemu, "-cpu", args.cpu] + cmd, pics, {**env0, **env})
        labels, tops, diff = compare(native, emulated)
        r = {"name": name, "path": path, "n": len(pics), "labels": labels, "top1": tops, "diff": diff,
             "right_native": right({k: native[k] for k in emulated}), "right_emulated": right(emulated),
             "emulated_s": wall}
        if path != fp32:
            # How far the recipe moves the ImageNet answer from the float model's, natively.
            r["top1_as_fp32"] = sum(top1(native[k]) == top1(fp32_native[k]) for k in native)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "path"}), flush=True)

    def tensor(f):
        x = torch_hwc(ImageOps.exif_transpose(Image.open(f)).convert("RGB"))
        return x.transpose(2, 0, 1)[None].astype(np.float32).copy()

    threads = len(os.sched_getaffinity(0))
    ms = speed({r["name"]: r["path"] for r in results}, [tensor(f) for f in files], args.rounds, threads)
    for r in results:
        r["ms"] = ms[r["name"]]
    base = next((r["ms"] for r in results if r["name"] == BEFORE), None)

    name, has = cpu_name()
    lines = ["<!-- CPUS -->", "## int8 recipes on CPUs without VNNI (`make bench-cpus`)", "",
             f"Measured {time.strftime('%Y-%m-%d')} by `make bench-cpus` (bench/cpus.py): {name}, {threads} cores "
             f"({', '.join(has)}), ONNX Runtime threads = {threads}. `catdog predict --json` (release build) on the "
             f"{len(files)} shared test photos, natively and under `{args.qemu} -cpu {args.cpu}` (AVX2 and FMA, no "
             "AVX-512, no VNNI: the x86 Lambda CPUs' instruction set), same binary, same ONNX Runtime library. "
             "Model: the shared MobileNetV2 int8 dequantized to fp32 (bench/dequantize.py), then quantized by "
             f"models/quantize.py with each recipe (static QDQ, calibrated on {args.count} of the train photos). "
             f"fp32 is emulated on {len(fp32_files)} photos only (TCG runs float vector code slowly: "
             f"{next((r['emulated_s'] for r in results if r['path'] == fp32), 0):.0f} s for them). "
             "Native ms: median `session.run` per picture on a ready tensor, Python onnxruntime (the same version), "
             f"{args.rounds} rounds over the test photos, models interleaved; ratios against `{BEFORE}`, the recipe "
             "before issue 23; speed is this machine's only (on an AVX2 CPU, 7-bit and 8-bit u8s8 weights run "
             "the same kernel). Scores are catdog's `cat`/`dog`/`neither`; top-1 is the ImageNet class.", "",
             "| model / recipe | photos | labels differing, Haswell vs native | top-1 class differing | "
             "max \\|score diff\\| | cat/dog right, native | right, Haswell | top-1 as fp32 (native, of 46) | "
             "native ms / picture | ÷ before |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        star = " (**quantize.py default**)" if r["name"] == default_name else ""
        lines.append(f"| {r['name']}{star} | {r['n']} | {r['labels']} | {r['top1']} | {r['diff']:.4f} | "
                     f"{r['right_native']}/{r['n']} | {r['right_emulated']}/{r['n']} | "
                     f"{r.get('top1_as_fp32', '—')} | {r['ms']:.2f} | "
                     + (f"{r['ms'] / base:.2f}× |" if base else "— |"))
    q = [r for r in results if r["path"] not in (fp32, shared)]
    if q and base:
        worst = max(q, key=lambda r: (r["labels"], r["diff"]))
        best = min(q, key=lambda r: (r["labels"], r["top1"], r["diff"]))
        slow = max(q, key=lambda r: r["ms"])
        fast = min(q, key=lambda r: r["ms"])
        lines += ["", f"Worst recipe across the two CPUs: {worst['name']}, {worst['labels']} labels and "
                      f"{worst['top1']} top-1 classes of {worst['n']} differ, scores by up to {worst['diff']:.4f}. "
                      f"Best: {best['name']}, {best['labels']} labels and {best['top1']} top-1 classes differ, scores "
                      f"by up to {best['diff']:.4f}. Native speed against the recipe before: from "
                      f"{fast['ms'] / base:.2f}× ({fast['name']}) to {slow['ms'] / base:.2f}× ({slow['name']})."]
    d = next((r for r in results if r["name"] == default_name), None)
    if d and base:
        lines += ["", f"quantize.py's default ({default_name}): {d['labels']} labels and {d['top1']} top-1 classes of "
                      f"{d['n']} differ between the two CPUs, scores by up to {d['diff']:.4f}"
                      + (" (bit for bit equal)" if d["diff"] == 0 else "") +
                      f"; cat/dog right {d['right_native']}/{d['n']}, top-1 equal to the fp32 model's on "
                      f"{d['top1_as_fp32']}/{d['n']}; native speed {d['ms'] / base:.2f}× the recipe before."]
    lines += ["", f"The fp32 model natively, all {len(files)} photos: cat/dog right {right(fp32_native)}/{len(files)}.",
              "", "Emulated wall time per run (start included; not a speed on any real CPU): " +
              "; ".join(f"{r['name']} {r['emulated_s']:.0f} s for {r['n']}" for r in results) + ".",
              "<!-- /CPUS -->"]
    section = "\n".join(lines) + "\n"
    print(section)
    if args.out:
        write_section(args.out, section)


if __name__ == "__main__":
    main()
