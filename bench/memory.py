"""Memory under large pictures, and a soak.

`memory`: the two cases of issue 22 with the release binary, on `catdog
serve` and on the Lambda bootstrap (cargo-lambda's emulator,
AWS_LAMBDA_FUNCTION_MEMORY_SIZE=3008), with the tiny test model and the
shared MobileNetV2 int8: 24 concurrent 40-megapixel JPEGs to /predict, and
one v2 infer request of 16 of them. Peak RSS is the server's VmHWM, reset
through /proc/PID/clear_refs before each case; the footprint is its RSS
once ready and warm. Target: peak <= footprint + 1 GiB, every answer right.

`soak`: `catdog serve` (MobileNetV2 int8) for --minutes (default 10) under 8
clients sending a mix of good, odd and hostile requests over keep-alive
sessions; every answer is checked, RSS is sampled every second. Holds when
RSS at the end is within 5% of RSS after the first minute, no request is
lost (every one answered, no connection error) and every answer is right.

Run through `make bench-memory` / `make soak` (bench/memory.sh builds first).
Each writes its section of BENCHMARKS.md (between its markers). Not a test:
it measures and reports; the targets are printed beside the figures.
"""
import argparse
import base64
import concurrent.futures as cf
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time

import requests

MIB = 1 << 20
GIB = 1 << 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kib(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name):
                return int(line.split()[1]) * 1024
    raise KeyError(name)


def reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def wait_http(url, timeout=60, want=200):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == want:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer {want} within {timeout} s")


class Server:
    """`catdog serve`, or the bootstrap under cargo-lambda's emulator."""

    def __init__(self, catdog, model, lambda_path=False, env=None, cargo_lambda=None):
        self.procs = []
        # The shared MobileNetV2 carries no preprocessing metadata: it is torch-style.
        env = {**os.environ, "RUST_LOG": "warn", "MODEL_PREPROCESSING": "torch", **(env or {})}
        env.pop("AWS_LAMBDA_RUNTIME_API", None)
        port = free_port()
        if lambda_path:
            emu = subprocess.Popen([cargo_lambda, "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1",
                                    "-P", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(emu)
            deadline = time.time() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.1)
            env.update({"AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{port}/.rt", "AWS_LAMBDA_FUNCTION_NAME": "_",
                        "AWS_LAMBDA_FUNCTION_VERSION": "1", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
                        "MODEL_URI": model})
            self.server = subprocess.Popen([catdog], env=env, stdout=subprocess.DEVNULL)
            self.base = f"http://127.0.0.1:{port}/lambda-url/_"
        else:
            self.server = subprocess.Popen([catdog, "serve", "--port", str(port), "--model", model], env=env,
                                           stdout=subprocess.DEVNULL)
            self.base = f"http://127.0.0.1:{port}"
        self.procs.append(self.server)
        try:
            wait_http(self.base + "/health", timeout=120)
        except Exception:
            self.close()
            raise
        self.pid = self.server.pid

    def close(self):
        for p in reversed(self.procs):
            p.kill()
            p.wait()


def infer_body(pictures):
    data = b"".join(struct.pack("<I", len(p)) + p for p in pictures)
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(pictures)],
                                     "parameters": {"binary_data_size": len(data)}}]}).encode()
    return header + data, {"Inference-Header-Content-Length": str(len(header)),
                           "Content-Type": "application/octet-stream"}


def v2_labels(answer):
    return next(o["data"] for o in answer["outputs"] if o["name"] == "label")


def memory_cases(server, red, blue, small):
    """The two cases on one server: (footprint, peak over it for each, all answers right, seconds)."""
    want = requests.post(server.base + "/predict", data=small, headers={"Content-Type": "image/jpeg"}).json()["label"]
    # The 40-megapixel pictures' answers one at a time first: what each answer must be.
    ref = {}
    for name, body in [("red", red), ("blue", blue)]:
        ref[name] = requests.post(server.base + "/predict", data=body,
                                  headers={"Content-Type": "image/jpeg"}, timeout=300).json()["label"]
    footprint = status_kib(server.pid, "VmRSS:")
    reset_peak(server.pid)
    started = time.perf_counter()

    def one(i):
        name, body = ("red", red) if i % 2 == 0 else ("blue", blue)
        r = requests.post(server.base + "/predict", data=body, headers={"Content-Type": "image/jpeg"}, timeout=600)
        return r.status_code == 200 and r.json()["label"] == ref[name]

    with cf.ThreadPoolExecutor(24) as pool:
        ok24 = sum(pool.map(one, range(24)))
    t24 = time.perf_counter() - started
    peak24 = status_kib(server.pid, "VmHWM:") - footprint
    names = ["blue" if i % 4 == 3 else "red" for i in range(16)]
    body, headers = infer_body([blue if n == "blue" else red for n in names])
    reset_peak(server.pid)
    started = time.perf_counter()
    r = requests.post(server.base + "/v2/models/catdog/infer", data=body, headers=headers, timeout=600)
    t16 = time.perf_counter() - started
    peak16 = status_kib(server.pid, "VmHWM:") - footprint
    ok16 = r.status_code == 200 and v2_labels(r.json()) == [ref[n] for n in names]
    return {"footprint": footprint, "peak24": peak24, "ok24": ok24, "t24": t24,
            "peak16": peak16, "ok16": ok16, "t16": t16, "small": want}


def run_memory(args):
    red = open(os.path.join(args.fixtures, "images", "red_40mp.jpg"), "rb").read()
    blue = open(os.path.join(args.fixtures, "images", "blue_40mp.jpg"), "rb").read()
    small = open(os.path.join(args.fixtures, "images", "red.jpg"), "rb").read()
    models = [("tiny (fixture)", os.path.join(args.fixtures, "tiny_torch_nchw.onnx")),
              ("MobileNetV2 int8", os.path.join(args.data, "models", "mobilenetv2-12-int8.onnx"))]
    rows = []
    for model_name, model in models:
        for host, lam in [("catdog serve", False), ("Lambda bootstrap, 3008 MB", True)]:
            print(f"== {model_name}, {host}", flush=True)
            server = Server(args.catdog, model, lambda_path=lam, cargo_lambda=args.cargo_lambda)
            try:
                r = memory_cases(server, red, blue, small)
            finally:
                server.close()
            r.update(model=model_name, host=host)
            print(json.dumps(r), flush=True)
            rows.append(r)
    lines = ["<!-- MEMORY -->", "## Memory under large pictures (`make bench-memory`)", "",
             f"Measured {time.strftime('%Y-%m-%d')} with the release binary, {os.cpu_count()} cores. Each picture is a "
             f"39.9-megapixel JPEG of {len(red) // 1000} kB (7296×5472, 120 MB decoded). Peak is the server "
             "process's VmHWM (reset before each case) minus its footprint (RSS once ready and warm). The memory "
             "budget decided itself (`auto`): 512 MiB on this machine and on a 3008 MB Lambda. Target: peak at most "
             "footprint + 1 GiB, every answer right (each equal to that picture's answer alone).", "",
             "| model | host | footprint | 24 concurrent /predict: peak over footprint | answered right | wall | "
             "one v2 request of 16: peak over footprint | right | wall |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['host']} | {r['footprint'] // MIB} MiB | {r['peak24'] // MIB} MiB | "
                     f"{r['ok24']}/24 | {r['t24']:.1f} s | {r['peak16'] // MIB} MiB | "
                     f"{'16/16' if r['ok16'] else 'NO'} | {r['t16']:.1f} s |")
    worst = max(max(r["peak24"], r["peak16"]) for r in rows)
    lines += ["", f"Worst peak over the footprint: {worst // MIB} MiB of the 1024 MiB target"
              f" ({worst / GIB:.2f}×). Before the budget (issue 22, the same tiny model, debug build): 24 "
              "concurrent reached 2824 MB and the 16-picture request 3864 MB. On the Lambda bootstrap requests "
              "come one at a time (one per execution environment), so the 24 run in turn.", "<!-- /MEMORY -->"]
    write_section(args.out, "MEMORY", "\n".join(lines) + "\n")
    ok = all(r["ok24"] == 24 and r["ok16"] and max(r["peak24"], r["peak16"]) <= GIB for r in rows)
    print("\n".join(lines))
    return 0 if ok else 1


def write_section(path, marker, section):
    text = open(path).read() if os.path.exists(path) else ""
    start, end = text.find(f"<!-- {marker} -->"), text.find(f"<!-- /{marker} -->")
    if start >= 0 and end > start:
        text = text[:start] + section + text[end + len(f"<!-- /{marker} -->\n"):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


# --- soak -------------------------------------------------------------------

def soak_requests(args):
    """Every kind of request the soak sends: (kind, method, path, body, headers, check)."""
    img = lambda n: open(os.path.join(args.fixtures, "images", n), "rb").read()  # noqa: E731
    photos_dir = os.path.join(args.data, "catsdogs", "test")
    photos = sorted(os.path.join(d, f) for d, _, fs in os.walk(photos_dir) for f in fs if f.endswith(".jpg"))[:12]
    kinds = []

    def err(status, code):
        def check(r, _ref):
            if r.status_code != status:
                return f"status {r.status_code}, want {status}"
            body = r.json()
            got = body["error"] if isinstance(body["error"], str) else body["error"]["code"]
            if isinstance(body["error"], dict) and got != code:
                return f"code {got}, want {code}"
            return None
        return check

    def label(r, ref):
        if r.status_code != 200:
            return f"status {r.status_code}: {r.text[:200]}"
        got = r.json()
        got = got.get("label") or [p["label"] for p in got.get("predictions", [])] or v2_labels(got)
        return None if got == ref else f"label {got}, want {ref}"

    jpeg = {"Content-Type": "image/jpeg"}
    for p in photos:
        kinds.append(("good: a shared test photo", "POST", "/predict", open(p, "rb").read(), jpeg, label))
    batch = {"images": [base64.b64encode(open(p, "rb").read()).decode() for p in photos[:4]]}
    kinds.append(("good: a JSON batch of 4", "POST", "/predict", json.dumps(batch).encode(),
                  {"Content-Type": "application/json"}, label))
    body, headers = infer_body([open(p, "rb").read() for p in photos[4:8]])
    kinds.append(("good: v2 infer of 4", "POST", "/v2/models/catdog/infer", body, headers, label))
    kinds.append(("good: the tutorial's endpoint", "POST", "/",
                  json.dumps({"image": base64.b64encode(open(photos[8], "rb").read()).decode()}).encode(),
                  {"Content-Type": "application/json"}, None))
    for name in ["red_cmyk.jpg", "gray16.png", "red_exif_rot6.jpg", "red_1x1.png", "red_10000x10.png",
                 "anim_red_then_blue.gif", "red_palette.png", "red.webp", "red.bmp"]:
        kinds.append((f"odd: {name}", "POST", "/predict", img(name), {"Content-Type": "application/octet-stream"}, label))
    kinds.append(("odd: 40-megapixel JPEG", "POST", "/predict", img("red_40mp.jpg"), jpeg, label))
    kinds.append(("odd: progressive 40-megapixel JPEG", "POST", "/predict", img("red_40mp_progressive.jpg"), jpeg, label))
    hostile = [
        ("hostile: truncated JPEG", "/predict", img("truncated.jpg"), jpeg, err(400, "invalid_image")),
        ("hostile: decompression bomb", "/predict", img("bomb_50000x50000.png"), {"Content-Type": "image/png"},
         err(422, "image_too_large")),
        ("hostile: text as a JPEG", "/predict", img("text.jpg"), jpeg, err(400, "invalid_image")),
        ("hostile: TIFF", "/predict", img("red.tiff"), {"Content-Type": "image/tiff"},
         err(415, "unsupported_image_format")),
        ("hostile: body over 6 MiB", "/predict", b"\0" * (7 << 20), jpeg, err(413, "payload_too_large")),
        ("hostile: 17 pictures", "/predict", json.dumps({"images": ["aGk="] * 17}).encode(),
         {"Content-Type": "application/json"}, err(422, "too_many_images")),
        ("hostile: mistyped model, 200 kB body", "/v2/models/nope/infer", b"x" * 200_000,
         {"Content-Type": "application/json"}, err(404, "unknown_model")),
        ("hostile: unknown route, 200 kB body", "/nope", b"x" * 200_000, jpeg, err(404, "not_found")),
        ("hostile: invalid UTF-8 in the model name", "/v2/models/%FF%FE/infer", b"{}",
         {"Content-Type": "application/json"}, err(400, "invalid_path")),
        ("hostile: wrong Content-Type", "/predict", b"hello", {"Content-Type": "text/plain"},
         err(415, "unsupported_media_type")),
        ("hostile: 70 KiB of headers", "/predict", img("red.png"),
         {"Content-Type": "image/png", "X-Filler": "a" * 70_000}, err(431, "request_head_too_large")),
    ]
    for name, path, body, headers, check in hostile:
        kinds.append((name, "POST", path, body, headers, check))
    return kinds


def run_soak(args):
    model = os.path.join(args.data, "models", "mobilenetv2-12-int8.onnx")
    server = Server(args.catdog, model)
    kinds = soak_requests(args)
    session = requests.Session()
    refs = []
    for kind, method, path, body, headers, check in kinds:
        r = session.request(method, server.base + path, data=body, headers=headers, timeout=120)
        if check is None or check.__name__ != "label":
            refs.append(None)
            continue
        got = r.json()
        refs.append(got.get("label") or [p["label"] for p in got.get("predictions", [])] or v2_labels(got))
    stop = threading.Event()
    lock = threading.Lock()
    stats = {"sent": 0, "right": 0, "wrong": 0, "lost": 0, "by_kind": {}}
    problems = []

    # RSS is compared at rest: with 40-megapixel pictures in flight it swings
    # by their 120 MB each; what a leak would show is what stays once they
    # are done. So the clients pause (each after its request in flight) for
    # each of the two readings.
    pause = threading.Event()
    resting = threading.Semaphore(0)
    go_on = threading.Event()

    def client(seed):
        rng = random.Random(seed)
        s = requests.Session()
        while not stop.is_set():
            if pause.is_set():
                resting.release()
                go_on.wait()
                continue
            i = rng.randrange(len(kinds))
            kind, method, path, body, headers, check = kinds[i]
            try:
                r = s.request(method, server.base + path, data=body, headers=headers, timeout=120)
                problem = check(r, refs[i]) if check else (None if r.status_code == 200 else f"status {r.status_code}")
            except requests.RequestException as e:
                problem, r = f"lost: {e}", None
            with lock:
                stats["sent"] += 1
                stats["by_kind"][kind] = stats["by_kind"].get(kind, 0) + 1
                if problem is None:
                    stats["right"] += 1
                elif problem.startswith("lost"):
                    stats["lost"] += 1
                    problems.append(f"{kind}: {problem}")
                else:
                    stats["wrong"] += 1
                    problems.append(f"{kind}: {problem}")

    def at_rest():
        go_on.clear()
        pause.set()
        for _ in range(args.clients):
            resting.acquire()
        time.sleep(2)
        rss = status_kib(server.pid, "VmRSS:")
        pause.clear()
        go_on.set()
        return rss

    samples = []
    after_first = None
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(args.clients)]
    started = time.time()
    for t in threads:
        t.start()
    try:
        while time.time() - started < args.minutes * 60:
            time.sleep(1)
            samples.append((time.time() - started, status_kib(server.pid, "VmRSS:")))
            if after_first is None and samples[-1][0] >= 60:
                after_first = at_rest()
                print(f"  RSS at rest after the first minute: {after_first / MIB:.1f} MiB", flush=True)
            if len(samples) % 60 == 0:
                with lock:
                    print(f"  {samples[-1][0] / 60:.0f} min: RSS {samples[-1][1] // MIB} MiB, "
                          f"{stats['sent']} requests, {stats['wrong']} wrong, {stats['lost']} lost", flush=True)
        end = at_rest()
    finally:
        stop.set()
        go_on.set()
        for t in threads:
            t.join(timeout=150)
    alive = server.server.poll() is None and requests.get(server.base + "/health").status_code == 200
    peak = status_kib(server.pid, "VmHWM:")
    server.close()
    drift = (end - after_first) / after_first
    holds = abs(drift) <= 0.05 and stats["lost"] == 0 and stats["wrong"] == 0 and alive
    lines = ["<!-- SOAK -->", "## Soak (`make soak`)", "",
             f"Measured {time.strftime('%Y-%m-%d')}: the release `catdog serve` with the shared MobileNetV2 int8, "
             f"{args.clients} clients (keep-alive sessions) for {args.minutes:g} minutes on {os.cpu_count()} cores, "
             f"each picking one of {len(kinds)} kinds of request at random: good (shared test photos, a JSON batch, "
             "a v2 request), odd but valid (CMYK, 16-bit, EXIF-rotated, 1×1, 10000×10, animated, 40-megapixel "
             "baseline and progressive JPEGs) and hostile (truncated, a decompression bomb, text, TIFF, over the "
             "body limit, too many pictures, early 404s with 200 kB bodies, invalid UTF-8 paths, 70 KiB headers). "
             "Every answer is checked: a picture's label against its answer alone before the soak, an error's "
             "status and code against the error table of docs/api.md. RSS is compared at rest (the clients pause after their "
             "request in flight, 2 s before the reading): under load it swings by the 40-megapixel pictures in flight, "
             "120 MB each.", "",
             "| figure | value | target |", "| --- | --- | --- |",
             f"| requests | {stats['sent']} ({stats['sent'] / (args.minutes * 60):.1f}/s) | — |",
             f"| answered right | {stats['right']} | all |",
             f"| wrong answers | {stats['wrong']} | 0 |",
             f"| lost (connection errors, timeouts) | {stats['lost']} | 0 |",
             f"| RSS after the first minute, at rest | {after_first / MIB:.1f} MiB | — |",
             f"| RSS at the end, at rest | {end / MIB:.1f} MiB | within 5% of the above |",
             f"| change | {drift * 100:+.2f}% | ±5% |",
             f"| RSS under load, lowest / highest sampled each second after the first minute | "
             f"{min(r for t, r in samples if t >= 60) / MIB:.1f} / {max(r for t, r in samples if t >= 60) / MIB:.1f} MiB | — |",
             f"| peak RSS (VmHWM) | {peak / MIB:.1f} MiB | — |",
             f"| server still serving after | {'yes' if alive else 'NO'} | yes |", "",
             f"Result: {'holds' if holds else 'DOES NOT HOLD'}.", "<!-- /SOAK -->"]
    if problems:
        print("problems (first 20):\n  " + "\n  ".join(problems[:20]))
    write_section(args.out, "SOAK", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if holds else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["memory", "soak"])
    ap.add_argument("--catdog", required=True)
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--cargo-lambda", default="cargo-lambda")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", default="BENCHMARKS.md")
    args = ap.parse_args()
    sys.exit(run_memory(args) if args.what == "memory" else run_soak(args))


if __name__ == "__main__":
    main()
