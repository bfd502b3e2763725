#!/usr/bin/env python3
"""What `explain=true` costs: for each model, `POST /predict` of the same
photos with and without `explain=true`, interleaved in one run on one
server (one request at a time, so the two never share a batch), median and
p90 latency each and their ratio; writes BENCHMARKS.md's "Explanations"
section. Run it through `make bench-explain` (bench/explain.sh).

    explain.py --catdog target/release/catdog --model NAME=PATH[:PRESET] ... --photos DIR
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from memory import write_section  # noqa: E402
from run import cpu_model, free_port, wait_port  # noqa: E402

ROUNDS = 3
# And rounds until this long: on a fast model (MobileNetV2 runs in ~3 ms)
# three rounds gave ratios 0.955-1.090x from run to run, the machine's
# drift as large as the branch.
MIN_SECONDS = 20


def post(port, body, explain):
    url = f"http://127.0.0.1:{port}/predict" + ("?explain=true" if explain else "")
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "image/jpeg"})
    t = time.perf_counter()
    answer = json.loads(urllib.request.urlopen(req, timeout=600).read())
    return (time.perf_counter() - t) * 1e3, answer


def measure(catdog, model, preset, photos):
    port = free_port()
    args = [catdog, "serve", "--port", str(port), "--model", model]
    if preset:
        args += ["--preprocessing", preset]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "RUST_LOG": "warn"})
    try:
        wait_port(port, 60)
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=600) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        break
            except urllib.error.HTTPError as e:
                # 503 while loading; a failed load says why, and ends the run.
                status = json.loads(e.read() or b"{}").get("status")
                if status == "failed":
                    raise RuntimeError(f"{model} failed to load") from e
            time.sleep(0.2)
        info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/model").read())
        bodies = [open(p, "rb").read() for p in photos]
        rounds = ROUNDS
        if info["explanation"] == "occlusion":
            # 50 runs per explained picture: a few pictures tell the ratio.
            bodies, rounds = bodies[:2], 1
        post(port, bodies[0], False)  # warm both paths once
        post(port, bodies[0], True)
        plain, explained = [], []
        started, done = time.monotonic(), 0
        while done < rounds or (rounds > 1 and time.monotonic() - started < MIN_SECONDS):
            done += 1
            for body in bodies:
                # Alternating, so drift in the machine's speed hits both alike.
                ms, answer = post(port, body, False)
                plain.append((ms, answer["timings_ms"]["inference"], 0))
                ms, answer = post(port, body, True)
                assert answer["explanation"]["method"] == info["explanation"], answer
                size = len(answer["explanation"].get("overlay_png", "")) * 3 // 4
                explained.append((ms, answer["timings_ms"]["inference"], size))
        return info["explanation"], plain, explained
    finally:
        server.terminate()
        server.wait()


def p90(values):
    return sorted(values)[int(0.9 * (len(values) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--catdog", required=True)
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH[:PRESET]")
    ap.add_argument("--photos", required=True)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--out", default="BENCHMARKS.md")
    args = ap.parse_args()
    photos = sorted(os.path.join(d, f) for d, _, fs in os.walk(args.photos) for f in fs
                    if f.lower().endswith((".jpg", ".jpeg")))[: args.count]
    rows = []
    for spec in args.model:
        name, rest = spec.split("=", 1)
        path, _, preset = rest.partition(":")
        method, plain, explained = measure(args.catdog, path, preset, photos)
        col = lambda runs, i: [r[i] for r in runs]  # noqa: E731
        row = {
            "name": name, "method": method,
            "run_plain": statistics.median(col(plain, 1)), "run_explained": statistics.median(col(explained, 1)),
            "plain_median": statistics.median(col(plain, 0)), "plain_p90": p90(col(plain, 0)),
            "explained_median": statistics.median(col(explained, 0)),
            "explained_p90": p90(col(explained, 0)),
            "png_kb": statistics.median(col(explained, 2)) / 1024,
        }
        row["run_ratio"] = row["run_explained"] / row["run_plain"]
        row["ratio"] = row["explained_median"] / row["plain_median"]
        row["ratio_p90"] = row["explained_p90"] / row["plain_p90"]
        rows.append(row)
        print(f"{name}: {method}, model run {row['run_plain']:.1f} → {row['run_explained']:.1f} ms "
              f"({row['run_ratio']:.3f}×), answer {row['plain_median']:.1f} → {row['explained_median']:.1f} ms "
              f"({row['ratio']:.3f}×)", flush=True)
    lines = ["<!-- EXPLAIN -->", "## Explanations (`make bench-explain`)", "",
             f"Measured {time.strftime('%Y-%m-%d')} on {cpu_model()} ({os.cpu_count()} cores): "
             f"`POST /predict` of {len(photos)} test photos, {ROUNDS} rounds and more until {MIN_SECONDS} s "
             "(occlusion: 2 photos, 1 round), "
             "one request at a time, "
             "with and without `explain=true` alternating on one `catdog serve`. *Model run*: the "
             "answer's `timings_ms.inference` (the ONNX Runtime run, with the explanation branch when "
             "asked; for occlusion, the answer's own run). *Answer*: the whole request, client side "
             "(with the overlay PNG drawn, encoded and sent). Medians in ms; ratios explained over plain.", "",
             "| model | method | model run | explained | ratio | answer | explained | ratio | p90 ratio | PNG |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['method']} | {r['run_plain']:.1f} | {r['run_explained']:.1f} | "
                     f"{r['run_ratio']:.3f}× | {r['plain_median']:.1f} | {r['explained_median']:.1f} | "
                     f"{r['ratio']:.3f}× | {r['ratio_p90']:.3f}× | {r['png_kb']:.0f} KB |")
    in_graph = [r for r in rows if r["method"] != "occlusion"]
    if in_graph:
        best = min(in_graph, key=lambda r: r["run_ratio"])
        worst = max(in_graph, key=lambda r: r["run_ratio"])
        lines += ["", f"In the graph (CAM, Grad-CAM), the model run: best {best['run_ratio']:.3f}× "
                      f"({best['name']}), worst {worst['run_ratio']:.3f}× ({worst['name']}); the target is "
                      "≤ 1.05×. The whole answer adds the overlay: a PNG of the picture at most 384 a side."]
    lines += ["<!-- /EXPLAIN -->", ""]
    write_section(args.out, "EXPLAIN", "\n".join(lines))
    print(f"wrote the Explanations section of {args.out}")


if __name__ == "__main__":
    main()
