"""Side-by-side benchmark of catdog serve against its peers, in one run, on
one machine, with one model and the same photos. Prints a table and writes
BENCHMARKS.md and a PNG chart. Run it through `make bench` (bench/run.sh),
which builds and installs everything first.

Figures per contender: cold start (process start to the first correct
answer, model on local disk), latency p50/p99 at 1 client, images/s at 4
clients (wrk, a real load generator), peak RSS. Plus the floor (raw
session.run of a ready tensor) and the model fetch from an S3 server on
loopback (parallel ranged GETs vs one GET vs boto3).
"""
import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = r"""
local bodies = {}
for line in io.lines(os.getenv("BENCH_LIST")) do
  local f = io.open(line, "rb"); bodies[#bodies + 1] = f:read("*a"); f:close()
end
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/predict", {["Content-Type"] = "image/jpeg"}, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"status_errors":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def post(port, body, timeout=60):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body, method="POST",
                                 headers={"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def peak_rss_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def wrk(port, clients, seconds, listfile):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA)
    out = subprocess.run(
        ["wrk", f"-t{min(clients, 2)}", f"-c{clients}", f"-d{seconds}s", "--timeout", "60s", "-s", f.name,
         f"http://127.0.0.1:{port}/predict"],
        capture_output=True, text=True, env={**os.environ, "BENCH_LIST": listfile})
    os.unlink(f.name)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            r = json.loads(line[6:])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
            return r
    raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")


def run_contender(name, cmd, env, port, photos, listfile, seconds, expect=None):
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    body = open(photos[0], "rb").read()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    first = None
    try:
        while time.perf_counter() - t0 < 600:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                first = post(port, body)
                if "label" in first:
                    break
            except Exception:
                time.sleep(0.02)
        cold = time.perf_counter() - t0
        if expect is not None and first["label"] != expect:
            raise RuntimeError(f"{name} answered {first} for {photos[0]}, expected {expect}")
        for p in photos[:3]:
            post(port, open(p, "rb").read())
        one = wrk(port, 1, seconds, listfile)
        four = wrk(port, 4, seconds, listfile)
        rss = peak_rss_mb(proc.pid)
        errors = one["status_errors"] + one["socket_errors"] + four["status_errors"] + four["socket_errors"]
        r = {"name": name, "cold_s": cold, "p50_ms": one["p50_us"] / 1e3, "p99_ms": one["p99_us"] / 1e3,
             "rps1": one["rps"], "rps4": four["rps"], "rss_mb": rss, "errors": errors, "first": first}
        print(f"   cold {cold:.2f} s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
              f"{r['rps4']:.2f} img/s at 4 clients, peak RSS {rss:.0f} MB, errors {errors}", flush=True)
        return r
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def s3_fetch(args, model):
    """Model fetch from moto's S3 server on loopback: catdog parallel, catdog one GET, boto3."""
    import boto3

    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}"}
    os.environ.update(env)
    out = {}
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"])
        s3.create_bucket(Bucket="bench")
        s3.upload_file(model, "bench", "vgg16.onnx")
        for label, conc in (("catdog, 8 parallel ranged GETs", "8"), ("catdog, one GET", "1")):
            sp = free_port()
            proc = subprocess.Popen([args.catdog, "serve", "--port", str(sp), "--model", "s3://bench/vgg16.onnx"],
                                    env={**os.environ, "CATDOG_S3_CONCURRENCY": conc},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                info = None
                for _ in range(6000):
                    try:
                        info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{sp}/model", timeout=2).read())
                        if "fetch_ms" in json.dumps(info):
                            break
                    except Exception:
                        time.sleep(0.05)
                fetch = info.get("fetch_ms") or info.get("model", {}).get("fetch_ms")
                out[label] = fetch / 1e3
                print(f"   S3 fetch, {label}: {out[label]:.2f} s", flush=True)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
        t = time.perf_counter()
        n = len(s3.get_object(Bucket="bench", Key="vgg16.onnx")["Body"].read())
        out["boto3 get_object().read()"] = time.perf_counter() - t
        print(f"   S3 fetch, boto3: {out['boto3 get_object().read()']:.2f} s ({n / 1e6:.0f} MB)", flush=True)
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(10)
    return out


def lambda_cold_start(args, model):
    """The real binary as a Lambda bootstrap against a stand-in Runtime API on
    loopback: init (process start to its first /next poll) and the first
    invocation (the Function URL event with a real photo) until its response."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    event = open(os.path.join(HERE, "..", "events", "function-url.json"), "rb").read()
    marks = {}
    done = threading.Event()

    class Api(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if "next" not in marks:
                marks["next"] = time.perf_counter()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", "bench-1")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 600000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:0:function:catdog")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(event)))
                self.end_headers()
                self.wfile.write(event)
            else:
                done.wait(30)  # park the next poll; the process is killed after

        def do_POST(self):
            n = int(self.headers.get("Content-Length", 0))
            marks.setdefault("body", self.rfile.read(n))
            marks.setdefault("response", time.perf_counter())
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            done.set()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    env = {"AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{srv.server_address[1]}", "AWS_LAMBDA_FUNCTION_NAME": "catdog",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
           "MODEL_URI": model, "RUST_LOG": "warn"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([args.catdog], env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        done.wait(120)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        srv.shutdown()
    body = json.loads(marks.get("body", b"{}") or b"{}")
    ok = body.get("statusCode") == 200
    return {"init_s": marks["next"] - t0, "first_s": marks["response"] - t0, "ok": ok}


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--catdog", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--keras-python")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--png", default="bench/benchmarks.png")
    ap.add_argument("--skip-s3", action="store_true")
    args = ap.parse_args()

    photos = []
    for root, _, names in os.walk(args.photos):
        photos += [os.path.join(root, n) for n in names if n.lower().endswith((".jpg", ".jpeg"))]
    photos.sort()
    listfile = tempfile.NamedTemporaryFile("w", delete=False, suffix=".txt")
    listfile.write("\n".join(photos) + "\n")
    listfile.close()
    fp32 = os.path.join(args.models, "vgg16.onnx")
    int8 = os.path.join(args.models, "vgg16.int8.onnx")
    threads = os.cpu_count()

    results = []
    raw = {}
    for label, model in (("fp32", fp32), ("int8", int8)):
        r = json.loads(subprocess.run([sys.executable, os.path.join(HERE, "peers/raw_ort.py"), model, "30"],
                                      capture_output=True, text=True, check=True).stdout)
        raw[label] = r
        print(f"== raw session.run {label}: p50 {r['p50_ms']:.1f} ms", flush=True)
        # The same photo must get the same answer from catdog and the Python peer.
        p = free_port()
        ours = run_contender(f"catdog serve ({label})", [args.catdog, "serve", "--port", str(p), "--model", model],
                             {"RUST_LOG": "warn"}, p, photos, listfile.name, args.seconds)
        results.append(ours)
        if label == "fp32":
            # The same binary with micro-batching off: its effect, side by side.
            p = free_port()
            results.append(run_contender(f"catdog serve ({label}, no batching)",
                                         [args.catdog, "serve", "--port", str(p), "--model", model],
                                         {"RUST_LOG": "warn", "BATCH_WINDOW_MS": "0"}, p, photos, listfile.name,
                                         args.seconds))
        # The same binary loading the model the plain way (ONNX Runtime parses
        # and copies the weights): the zero-copy load's effect, side by side.
        p = free_port()
        results.append(run_contender(f"catdog serve ({label}, plain load)",
                                     [args.catdog, "serve", "--port", str(p), "--model", model],
                                     {"RUST_LOG": "warn", "CATDOG_ZERO_COPY": "false"}, p, photos, listfile.name,
                                     args.seconds))
        p = free_port()
        results.append(run_contender(f"Flask + onnxruntime ({label})",
                                     [sys.executable, os.path.join(HERE, "peers/flask_ort.py"), model, str(p)],
                                     {}, p, photos, listfile.name, args.seconds))
    if args.keras_python:
        p = free_port()
        results.append(run_contender("Flask + Keras (tutorial, fp32)",
                                     [args.keras_python, os.path.join(HERE, "peers/flask_keras.py"), str(p)],
                                     {}, p, photos, listfile.name, args.seconds))
    lam = {}
    for label, model in (("fp32", fp32), ("int8", int8)):
        lam[label] = lambda_cold_start(args, model)
        print(f"== Lambda bootstrap ({label}): init {lam[label]['init_s']:.2f} s, first answer "
              f"{lam[label]['first_s']:.2f} s, ok {lam[label]['ok']}", flush=True)
    s3 = {} if args.skip_s3 else s3_fetch(args, fp32)
    report(args, results, raw, s3, threads, len(photos), lam)


def report(args, results, raw, s3, threads, nphotos, lam):
    by = {r["name"]: r for r in results}
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {time.strftime('%Y-%m-%d')}: {cpu_model()}, {threads} cores, "
        f"ONNX Runtime threads = {threads} (catdog: available cores; Python: os.cpu_count()). "
        f"Model: VGG16 (13 conv + 3 dense, 2-way softmax head, random weights) fp32 "
        f"{os.path.getsize(os.path.join(args.models, 'vgg16.onnx')) / 1e6:.0f} MB and static int8 "
        f"{os.path.getsize(os.path.join(args.models, 'vgg16.int8.onnx')) / 1e6:.0f} MB. "
        f"Requests: the {nphotos} JPEG photos of the shared test set, in turn, as raw bodies to "
        f"POST /predict; load by wrk ({args.seconds} s per phase). All contenders in one run, one after another.",
        "",
        "| contender | cold start (s) | p50 1 client (ms) | p99 1 client (ms) | img/s 4 clients | peak RSS (MB) | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(f"| {r['name']} | {r['cold_s']:.2f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['rps4']:.2f} | {r['rss_mb']:.0f} | {r['errors']} |")
    for label in ("fp32", "int8"):
        lines.append(f"| raw session.run ({label}), ready tensor | — | {raw[label]['p50_ms']:.1f} | "
                     f"{raw[label]['p99_ms']:.1f} | — | — | — |")
    for r in results:
        t = r["first"].get("timings_ms") if isinstance(r.get("first"), dict) else None
        if t and r["name"].startswith("catdog serve"):
            lines.append("")
            lines.append(f"{r['name']}, where one request's time goes (first photo, ms): read {t['read']:.1f}, "
                         f"decode {t['decode']:.1f}, preprocess {t['preprocess']:.1f}, inference {t['inference']:.1f}, "
                         f"total {t['total']:.1f}.")
    lines += ["", "## Ratios and targets", "", "| figure | value | target |", "| --- | ---: | --- |"]

    def ratio(a, b):
        return a / b if b else float("nan")

    for label in ("fp32", "int8"):
        c, f = by[f"catdog serve ({label})"], by[f"Flask + onnxruntime ({label})"]
        lines += [
            f"| {label}: catdog p50 / raw session.run p50 | {ratio(c['p50_ms'], raw[label]['p50_ms']):.2f}× | ≤ 1.05× |",
            f"| {label}: catdog img/s ÷ Flask+onnxruntime img/s (4 clients) | {ratio(c['rps4'], f['rps4']):.2f}× | ≥ 1.3× |",
            f"| {label}: catdog cold start ÷ Flask+onnxruntime | {ratio(c['cold_s'], f['cold_s']):.2f}× | ≤ 0.33× |",
            f"| {label}: catdog peak RSS ÷ Flask+onnxruntime | {ratio(c['rss_mb'], f['rss_mb']):.2f}× | ≤ 0.7× |",
        ]
    k = by.get("Flask + Keras (tutorial, fp32)")
    if k:
        c = by["catdog serve (fp32)"]
        lines.append(f"| fp32: catdog img/s ÷ Flask+Keras img/s (4 clients) | {ratio(c['rps4'], k['rps4']):.2f}× | ≥ 2× |")
    nb = by.get("catdog serve (fp32, no batching)")
    if nb:
        lines.append(f"| fp32: micro-batching on ÷ off, img/s at 4 clients | "
                     f"{ratio(by['catdog serve (fp32)']['rps4'], nb['rps4']):.2f}× | (gain) |")
    for label in ("fp32", "int8"):
        pl = by.get(f"catdog serve ({label}, plain load)")
        if pl:
            c = by[f"catdog serve ({label})"]
            lines.append(f"| {label}: zero-copy load ÷ plain load, cold start / peak RSS | "
                         f"{ratio(c['cold_s'], pl['cold_s']):.2f}× / {ratio(c['rss_mb'], pl['rss_mb']):.2f}× | (gain) |")
    lines.append(f"| catdog int8 img/s ÷ catdog fp32 img/s (4 clients) | "
                 f"{ratio(by['catdog serve (int8)']['rps4'], by['catdog serve (fp32)']['rps4']):.2f}× | ≥ 2× |")
    ort_lib = os.environ.get("ORT_DYLIB_PATH", "")
    pkg = os.path.getsize(args.catdog) + (os.path.getsize(ort_lib) if os.path.exists(ort_lib) else 0)
    lines += ["", "## Lambda bootstrap (stand-in Runtime API on loopback, model on local disk)", "",
              f"Package: bootstrap {os.path.getsize(args.catdog) / 1e6:.1f} MB + libonnxruntime "
              f"{(pkg - os.path.getsize(args.catdog)) / 1e6:.1f} MB = {pkg / 1e6:.1f} MB unzipped (the model is not in it: S3).",
              "", "| model | init (start → first /next) s | first answer s | answer ok |", "| --- | ---: | ---: | --- |"]
    for label, r in lam.items():
        lines.append(f"| {label} | {r['init_s']:.2f} | {r['first_s']:.2f} | {r['ok']} |")
    if s3:
        lines += ["", "## Model fetch from S3 (moto server on loopback, fp32 model)", "",
                  "| fetch | seconds |", "| --- | ---: |"]
        lines += [f"| {k2} | {v:.2f} |" for k2, v in s3.items()]
        par, one = s3.get("catdog, 8 parallel ranged GETs"), s3.get("catdog, one GET")
        if par and one:
            lines += ["", f"Parallel ÷ single GET speed-up: {one / par:.2f}× (target ≥ 2×)."]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    with open(args.out, "w") as f:
        f.write(text)
    chart(args.png, results)


def chart(path, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in results]
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.5))
    for ax, key, title in zip(axes, ("rps4", "p50_ms", "cold_s", "rss_mb"),
                              ("images/s at 4 clients (higher is better)", "p50 latency, 1 client, ms",
                               "cold start, s", "peak RSS, MB")):
        ax.barh(names, [r[key] for r in results], color=["#2a7" if n.startswith("catdog") else "#999" for n in names])
        ax.set_title(title)
        ax.invert_yaxis()
    for ax in axes[1:]:
        ax.set_yticklabels([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"chart: {path}")


if __name__ == "__main__":
    main()
