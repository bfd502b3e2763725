"""Side-by-side benchmark of catdog serve against its peers, in one run, on
one machine, with one model and the same photos. Prints a table and writes
BENCHMARKS.md and a PNG chart. Run it through `make bench` (bench/run.sh),
which builds and installs everything first.

Figures per contender: cold start (process start to the first correct
answer, model on local disk), latency p50/p99 at 1 client, images/s at 4
clients (wrk, a real load generator), peak RSS. Plus the floor (raw
session.run of a ready tensor) and, from a simulated S3 (s3s-fs on loopback
behind tests' s3_throttle proxy: a per-connection bandwidth cap and a
first-byte delay), the model fetch (one GET vs parallel ranged GETs), cold
start against Python peers that load from S3 and Lambda init.
`--only-s3` runs just that part.
"""
import argparse
import concurrent.futures as cf
import json
import os
import platform
import re
import shutil
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


def start_until_answer(name, cmd, env, port, photo, expect=None):
    """Starts `cmd` and POSTs `photo` to it until it answers with a label:
    returns (process, seconds from process start to that answer, the answer).
    The caller stops the process (stop())."""
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    body = open(photo, "rb").read()
    t0 = time.perf_counter()
    # stderr to a file, not a pipe: a chatty process must never block on a full pipe.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log,
                            start_new_session=True)
    proc.log = log
    first = None
    try:
        while time.perf_counter() - t0 < 600:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {stderr_text(proc)[-2000:]}")
            try:
                first = post(port, body)
                if "label" in first:
                    break
            except Exception:
                time.sleep(0.02)
        cold = time.perf_counter() - t0
        if first is None or "label" not in first:
            raise RuntimeError(f"{name} gave no answer in 600 s: {stderr_text(proc)[-2000:]}")
        if expect is not None and first["label"] != expect:
            raise RuntimeError(f"{name} answered {first} for {photo}, expected {expect}")
        return proc, cold, first
    except BaseException:
        stop(proc)
        raise


def stderr_text(proc):
    proc.log.seek(0)
    return proc.log.read().decode(errors="replace")


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def packed_after(port, started, timeout=300):
    """catdog answering with plain weights while it packs them
    (CATDOG_PREPACK=later): waits until GET /model says they are packed and
    returns the seconds since `started`; None for anything else (a peer, a
    model never packed or packed at load)."""
    try:
        if model_info(port).get("weights") != "packing":
            return None
    except Exception:
        return None
    while time.perf_counter() - started < timeout:
        if model_info(port).get("weights") != "packing":
            return time.perf_counter() - started
        time.sleep(0.05)
    raise RuntimeError(f"weights still packing after {timeout} s")


def run_contender(name, cmd, env, port, photos, listfile, seconds, expect=None):
    started = time.perf_counter()
    proc, cold, first = start_until_answer(name, cmd, env, port, photos[0], expect)
    try:
        # Throughput is measured with the weights the server keeps.
        packed = packed_after(port, started)
        for p in photos[:3]:
            post(port, open(p, "rb").read())
        one = wrk(port, 1, seconds, listfile)
        four = wrk(port, 4, seconds, listfile)
        rss = peak_rss_mb(proc.pid)
        errors = one["status_errors"] + one["socket_errors"] + four["status_errors"] + four["socket_errors"]
        r = {"name": name, "cold_s": cold, "p50_ms": one["p50_us"] / 1e3, "p99_ms": one["p99_us"] / 1e3,
             "rps1": one["rps"], "rps4": four["rps"], "rss_mb": rss, "errors": errors, "first": first,
             "packed_s": packed}
        packed_txt = f", packed after {packed:.2f} s" if packed is not None else ""
        print(f"   cold {cold:.2f} s{packed_txt}, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
              f"{r['rps4']:.2f} img/s at 4 clients, peak RSS {rss:.0f} MB, errors {errors}", flush=True)
        return r
    finally:
        stop(proc)


class S3Sim:
    """S3 that behaves like S3 for reads, on loopback: s3s-fs (reads only the
    range asked for) behind s3_throttle (each connection capped at `mbps`
    MB/s server to client; each response's first byte held `first_byte_ms`
    after its request). The model is PUT into it directly, unthrottled."""

    BUCKET, KEY = "bench", "vgg16.onnx"

    def __init__(self, args, model):
        import boto3

        self.throttle_bin = args.s3_throttle
        # Beside the models folder (target/bench/): the same disk, out of the model cache.
        self.procs, self.root = [], tempfile.mkdtemp(prefix="s3sim-", dir=os.path.dirname(
            os.path.dirname(os.path.abspath(model))))
        creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
        try:
            port = free_port()
            self.procs.append(subprocess.Popen(
                [args.s3s_fs, "--host", "127.0.0.1", "--port", str(port), "--access-key", "bench",
                 "--secret-key", "bench", self.root],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
            wait_port(port)
            direct = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="bench",
                                  aws_secret_access_key="bench", region_name="us-east-1")
            direct.create_bucket(Bucket=self.BUCKET)
            # Through S3, not copied in: s3s-fs keeps the ETag it computes on a
            # PUT; a file without one is MD5-hashed whole on every GET.
            direct.upload_file(model, self.BUCKET, self.KEY)
            proxy = subprocess.Popen(
                [args.s3_throttle, "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{port}",
                 "--mbps", str(args.s3_mbps), "--first-byte-ms", str(args.s3_first_byte_ms)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
            self.procs.append(proxy)
            addr = proxy.stdout.readline().strip()
            if not addr:
                raise RuntimeError("s3_throttle printed no address")
            self.direct = f"http://127.0.0.1:{port}"
            self.env = {**creds, "AWS_ENDPOINT_URL_S3": f"http://{addr}", "AWS_EC2_METADATA_DISABLED": "true"}
        except BaseException:
            self.close()
            raise
        self.uri = f"s3://{self.BUCKET}/{self.KEY}"

    def uncapped(self):
        """A second proxy in front of the same s3s-fs with no cap and no delay
        (this machine's ceiling for the simulation itself). Returns its env."""
        proxy = subprocess.Popen(
            [self.throttle_bin, "--listen", "127.0.0.1:0", "--upstream", self.direct.removeprefix("http://"),
             "--mbps", "0", "--first-byte-ms", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        self.procs.append(proxy)
        return {**self.env, "AWS_ENDPOINT_URL_S3": f"http://{proxy.stdout.readline().strip()}"}

    def ranges_speedup(self, size, parts=8, limit=64_000_000):
        """The simulation's own speed figure: the first `limit` bytes of the
        model in one GET, then in `parts` ranged GETs at once (each on its own
        connection), through the throttle. tests/it/s3_sim.rs checks that the
        cap is per connection by the throttle's byte counts (a timing ratio
        fails on a busy machine); what that buys in time is measured here."""
        import boto3
        from botocore.config import Config

        n = min(size, limit)
        s3 = boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL_S3"], aws_access_key_id="bench",
                          aws_secret_access_key="bench", region_name="us-east-1",
                          config=Config(max_pool_connections=parts))

        def get(first, last):
            body = s3.get_object(Bucket=self.BUCKET, Key=self.KEY, Range=f"bytes={first}-{last}")["Body"]
            return len(body.read())

        started = time.monotonic()
        whole = get(0, n - 1)
        one = time.monotonic() - started
        step = -(-n // parts)
        started = time.monotonic()
        with cf.ThreadPoolExecutor(parts) as pool:
            pieces = sum(pool.map(lambda first: get(first, min(first + step, n) - 1), range(0, n, step)))
        parallel = time.monotonic() - started
        if whole != n or pieces != n:
            raise RuntimeError(f"ranged GETs returned {whole} and {pieces} bytes of {n}")
        return {"mb": n / 1e6, "parts": parts, "one_s": one, "parallel_s": parallel}

    def cpu_s(self):
        """CPU seconds used so far by the simulation's processes (s3s-fs and
        proxies): it shares the machine's cores with the contender."""
        total = 0.0
        for p in self.procs:
            try:
                fields = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                pass
        return total

    def close(self):
        for p in reversed(self.procs):
            stop(p)
        shutil.rmtree(self.root, ignore_errors=True)


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def model_info(port):
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=10).read())


def fetch_ms_in_log(text):
    """fetch_ms from catdog's "model ready" line (text or JSON logs)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    for line in text.splitlines():
        if "model ready" in line:
            m = re.search(r"fetch_ms\W{1,3}([0-9.]+)", line)
            if m:
                return float(m.group(1))
    return None


def s3_section(args, model, photo):
    """From the simulated S3, side by side: catdog's model fetch with one GET
    and with 16 parallel ranged GETs; cold start (process start to the first
    correct answer) of catdog and of two Python peers (boto3 download_file,
    its own parallel transfer, then a session from the file; and
    get_object().read() into a session from bytes); Lambda init."""
    size = os.path.getsize(model)
    print(f"== simulated S3: s3s-fs behind s3_throttle, {args.s3_mbps:g} MB/s per connection, "
          f"{args.s3_first_byte_ms} ms to first byte; putting {size / 1e6:.0f} MB", flush=True)
    sim = S3Sim(args, model)
    out = {"size_mb": size / 1e6, "mbps": args.s3_mbps, "first_byte_ms": args.s3_first_byte_ms, "rows": []}
    # Python's imports from a cold page cache would land on whichever peer runs first.
    subprocess.run([sys.executable, "-c", "import boto3, flask, numpy, onnxruntime, PIL"], check=True)
    try:
        expect = None

        def catdog(p):
            return [args.catdog, "serve", "--port", str(p), "--model", sim.uri]

        def peer(p):
            return [sys.executable, os.path.join(HERE, "peers/flask_ort.py"), sim.uri, str(p)]

        def catdog_file(p):
            return [args.catdog, "serve", "--port", str(p), "--model", model]

        runs = [
            ("catdog serve, the same model from a local file (reference)", catdog_file, {}, sim.env),
            ("catdog serve, one GET (CATDOG_S3_CONCURRENCY=1)", catdog, {"CATDOG_S3_CONCURRENCY": "1"}, sim.env),
            ("catdog serve, 16 parallel ranged GETs (CATDOG_S3_CONCURRENCY=16)", catdog,
             {"CATDOG_S3_CONCURRENCY": "16"}, sim.env),
            ("catdog serve, 16 parallel ranged GETs, no cap, no delay (the simulation's ceiling here)", catdog,
             {"CATDOG_S3_CONCURRENCY": "16"}, None),
            ("Python: boto3 download_file (default TransferConfig) + InferenceSession(path)", peer,
             {"PEER_S3_LOAD": "download_file"}, sim.env),
            ("Python: get_object()['Body'].read() + InferenceSession(bytes)", peer, {"PEER_S3_LOAD": "read"},
             sim.env),
        ]
        for name, cmd, extra, s3env in runs:
            s3env = s3env if s3env is not None else sim.uncapped()
            p = free_port()
            sim_cpu = sim.cpu_s()
            proc, cold, first = start_until_answer(name, cmd(p), {**s3env, **extra, "RUST_LOG": "info"}, p, photo,
                                                   expect)
            sim_cpu = sim.cpu_s() - sim_cpu
            try:
                expect = expect or first["label"]  # every contender must give catdog's answer
                # catdog's own figure (the "model ready" line; /model as a fallback); the peer prints its own.
                log = stderr_text(proc)
                fetch = fetch_ms_in_log(log)
                if fetch is None and name.startswith("catdog") and "local file" not in name:
                    fetch = model_info(p).get("fetch_ms")
                m = re.search(r"peer: fetched \S+ in ([0-9.]+) s", log)
                fetch = float(m.group(1)) if m else fetch / 1e3 if fetch is not None else None
                rss = peak_rss_mb(proc.pid)
                # What verifying costs: the wait for the digest after the last byte arrived.
                m = re.search(r"digest_wait_ms\W{1,3}([0-9.]+)", re.sub(r"\x1b\[[0-9;]*m", "", log))
                digest_wait = float(m.group(1)) if m else None
            finally:
                stop(proc)
            out["rows"].append({"name": name, "cold_s": cold, "fetch_s": fetch, "rss_mb": rss, "sim_cpu_s": sim_cpu,
                                "digest_wait_ms": digest_wait})
            extra_txt = f", fetch {fetch:.2f} s ({size / 1e6 / fetch:.0f} MB/s)" if fetch else ""
            print(f"   cold start {cold:.2f} s{extra_txt}, peak RSS {rss:.0f} MB, "
                  f"CPU of the simulated S3 {sim_cpu:.1f} s", flush=True)
        out["ranges"] = sim.ranges_speedup(size)
        rs = out["ranges"]
        print(f"== the simulation itself: {rs['mb']:.0f} MB in one GET {rs['one_s']:.2f} s, in {rs['parts']} "
              f"parallel ranged GETs {rs['parallel_s']:.2f} s", flush=True)
        # The package `sam build` makes when there is one (bench/run.sh builds it), else the release binary.
        out["lambda"] = lambda_cold_start(args, sim.uri, {**sim.env, "RUST_LOG": "info"}, args.lambda_bootstrap)
        out["lambda"]["binary"] = "sam build artifact" if args.lambda_bootstrap else "release binary"
        lam = out["lambda"]
        print(f"== Lambda bootstrap, model from the simulated S3: init {lam['init_s']:.2f} s"
              + (f" (fetch {lam['fetch_s']:.2f} s)" if lam.get("fetch_s") else "")
              + f", first answer {lam['first_s']:.2f} s, ok {lam['ok']}", flush=True)
    finally:
        sim.close()
    return out


def lambda_cold_start(args, model, extra_env=None, binary=None):
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
           "MODEL_URI": model, "RUST_LOG": "warn", **(extra_env or {})}
    log = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary or args.catdog], env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=log, start_new_session=True)
    proc.log = log
    try:
        done.wait(120)
    finally:
        stop(proc)
        srv.shutdown()
    if "next" not in marks or "response" not in marks:
        raise RuntimeError(f"the Lambda bootstrap never answered: {stderr_text(proc)[-2000:]}")
    body = json.loads(marks.get("body", b"{}") or b"{}")
    ok = body.get("statusCode") == 200
    fetch = fetch_ms_in_log(stderr_text(proc))
    return {"init_s": marks["next"] - t0, "first_s": marks["response"] - t0, "ok": ok,
            "fetch_s": fetch / 1e3 if fetch is not None else None}


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
    ap.add_argument("--out", help="default: BENCHMARKS.md; with --only-s3, target/bench/BENCHMARKS-s3.md")
    ap.add_argument("--png", default="bench/benchmarks.png")
    ap.add_argument("--skip-s3", action="store_true", help="leave out the simulated-S3 part")
    ap.add_argument("--only-s3", action="store_true", help="run only the simulated-S3 part")
    ap.add_argument("--s3-mbps", type=float, default=90.0,
                    help="simulated S3: cap per connection, MB/s server to client (0 = none; default 90)")
    ap.add_argument("--s3-first-byte-ms", type=int, default=20,
                    help="simulated S3: each response's first byte this long after its request (default 20)")
    ap.add_argument("--s3s-fs", default=shutil.which("s3s-fs") or os.path.expanduser("~/.cargo/bin/s3s-fs"),
                    help="the s3s-fs binary (scripts/setup.sh --test-tools installs it)")
    ap.add_argument("--lambda-bootstrap", default=None,
                    help="the bootstrap `sam build` made (with its libonnxruntime beside it), measured as Lambda too")
    ap.add_argument("--s3-throttle", default=os.path.join(HERE, "..", "target", "debug", "s3_throttle"),
                    help="the proxy binary (tests/src/bin/s3_throttle.rs; bench/run.sh builds it)")
    args = ap.parse_args()
    if args.only_s3 and args.skip_s3:
        ap.error("--only-s3 and --skip-s3 contradict each other")
    if not args.skip_s3:
        for b in (args.s3s_fs, args.s3_throttle):
            if not os.access(b, os.X_OK):
                ap.error(f"{b} not found: scripts/setup.sh --test-tools installs s3s-fs, "
                         "`cargo build -p catdog-tests --bin s3_throttle` builds the proxy (or pass --skip-s3)")
    if args.lambda_bootstrap and not os.access(args.lambda_bootstrap, os.X_OK):
        ap.error(f"{args.lambda_bootstrap} not found: run `sam build --build-dir target/sam-build` first")
    args.out = args.out or ("target/bench/BENCHMARKS-s3.md" if args.only_s3 else "BENCHMARKS.md")

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
    if args.only_s3:
        s3 = s3_section(args, fp32, photos[0])
        text = "\n".join(s3_report(s3)) + "\n"
        print("\n" + text)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(f"# Simulated-S3 benchmark ({time.strftime('%Y-%m-%d')}, {cpu_model()}, {threads} cores)\n"
                    + text)
        print(f"written: {args.out}")
        return

    results = []
    raw = {}
    for label, model in (("fp32", fp32), ("int8", int8)):
        r = json.loads(subprocess.run([sys.executable, os.path.join(HERE, "peers/raw_ort.py"), model, "60"],
                                      capture_output=True, text=True, check=True).stdout)
        raw[label] = r
        print(f"== raw session.run {label}: p50 {r['p50_ms']:.1f} ms", flush=True)
        # The same photo must get the same answer from catdog and the Python peer.
        p = free_port()
        ours = run_contender(f"catdog serve ({label})", [args.catdog, "serve", "--port", str(p), "--model", model],
                             {"RUST_LOG": "warn"}, p, photos, listfile.name, args.seconds)
        results.append(ours)
        if label == "fp32":
            # The weights packed at load (the server's default until issue
            # 32) and never packed: what `later` takes from each.
            p = free_port()
            results.append(run_contender(f"catdog serve ({label}, packed at load)",
                                         [args.catdog, "serve", "--port", str(p), "--model", model],
                                         {"RUST_LOG": "warn", "CATDOG_PREPACK": "true"}, p, photos, listfile.name,
                                         args.seconds))
            p = free_port()
            results.append(run_contender(f"catdog serve ({label}, no pre-packing)",
                                         [args.catdog, "serve", "--port", str(p), "--model", model],
                                         {"RUST_LOG": "warn", "CATDOG_PREPACK": "false"}, p, photos, listfile.name,
                                         args.seconds))
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
    runs = [("fp32", fp32, None), ("int8", int8, None)]
    if args.lambda_bootstrap:
        runs += [("fp32, sam build artifact", fp32, args.lambda_bootstrap),
                 ("int8, sam build artifact", int8, args.lambda_bootstrap)]
    for label, model, binary in runs:
        lam[label] = lambda_cold_start(args, model, None, binary)
        print(f"== Lambda bootstrap ({label}): init {lam[label]['init_s']:.2f} s, first answer "
              f"{lam[label]['first_s']:.2f} s, ok {lam[label]['ok']}", flush=True)
    s3 = {} if args.skip_s3 else s3_section(args, fp32, photos[0])
    report(args, results, raw, s3, threads, len(photos), lam)


def report(args, results, raw, s3, threads, nphotos, lam):
    by = {r["name"]: r for r in results}
    lines = [
        "# Benchmarks",
        "",
        "## Side by side (`make bench`)",
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
        lines.append(f"| raw session.run ({label}), ready tensor, one after another | — | {raw[label]['p50_ms']:.1f} | "
                     f"{raw[label]['p99_ms']:.1f} | {raw[label]['ips']:.2f} | — | — |")
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
            f"| {label}: catdog p99 / raw session.run p99 (1 client) | {ratio(c['p99_ms'], raw[label]['p99_ms']):.2f}× | ≤ 1.15× |",
            f"| {label}: catdog img/s at 4 clients ÷ raw session.run img/s (one after another) | "
            f"{ratio(c['rps4'], raw[label]['ips']):.2f}× | ≥ 0.97× |",
            f"| {label}: catdog img/s ÷ Flask+onnxruntime img/s (4 clients) | {ratio(c['rps4'], f['rps4']):.2f}× | ≥ 1.3× |",
            f"| {label}: catdog cold start ÷ Flask+onnxruntime | {ratio(c['cold_s'], f['cold_s']):.2f}× | ≤ 0.3× |",
            f"| {label}: catdog peak RSS ÷ Flask+onnxruntime | {ratio(c['rss_mb'], f['rss_mb']):.2f}× | ≤ 0.7× |",
        ]
    k = by.get("Flask + Keras (tutorial, fp32)")
    if k:
        c = by["catdog serve (fp32)"]
        lines.append(f"| fp32: catdog img/s ÷ Flask+Keras img/s (4 clients) | {ratio(c['rps4'], k['rps4']):.2f}× | ≥ 2× |")
    npk = by.get("catdog serve (fp32, no pre-packing)")
    now = by.get("catdog serve (fp32, packed at load)")
    if npk and now:
        c, f = by["catdog serve (fp32)"], by["Flask + onnxruntime (fp32)"]
        lines += [
            f"| fp32: packed later (the default) ÷ packed at load: cold start / img/s at 4 clients / peak RSS | "
            f"{ratio(c['cold_s'], now['cold_s']):.2f}× / {ratio(c['rps4'], now['rps4']):.2f}× / "
            f"{ratio(c['rss_mb'], now['rss_mb']):.2f}× | cold ≤ 0.3× Flask+onnxruntime's and img/s ≥ 0.97× |",
            f"| fp32: packed later ÷ never packed: cold start / img/s at 4 clients / peak RSS | "
            f"{ratio(c['cold_s'], npk['cold_s']):.2f}× / {ratio(c['rps4'], npk['rps4']):.2f}× / "
            f"{ratio(c['rss_mb'], npk['rss_mb']):.2f}× | (trade) |",
        ]
        if c.get("packed_s") is not None:
            lines += ["", f"With `CATDOG_PREPACK=later` the fp32 server answered after {c['cold_s']:.2f} s "
                          f"({ratio(c['cold_s'], f['cold_s']):.2f}× Flask + onnxruntime's "
                          f"{f['cold_s']:.2f} s) and had swapped in packed weights after {c['packed_s']:.2f} s; "
                          f"packed at load it answered after {now['cold_s']:.2f} s. Throughput is measured "
                          f"once packed: {c['rps4']:.2f} img/s at 4 clients against {now['rps4']:.2f} packed "
                          f"at load and {npk['rps4']:.2f} never packed. The cost is memory: for those "
                          f"{c['packed_s'] - c['cold_s']:.2f} s the plain session and the packed one being built "
                          f"are both in memory, a peak RSS of {c['rss_mb']:.0f} MB against {now['rss_mb']:.0f} "
                          f"packed at load ({ratio(c['rss_mb'], now['rss_mb']):.2f}×) and {npk['rss_mb']:.0f} "
                          f"never packed.", ""]
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
              "The release binary, and the package `sam build` makes (bootstrap + its libonnxruntime, built by "
              "cargo-lambda for Amazon Linux's glibc) when bench/run.sh could build it.", "",
              f"Package: bootstrap {os.path.getsize(args.catdog) / 1e6:.1f} MB + libonnxruntime "
              f"{(pkg - os.path.getsize(args.catdog)) / 1e6:.1f} MB = {pkg / 1e6:.1f} MB unzipped (the model is not in it: S3).",
              "", "| model | init (start → first /next) s | first answer s | answer ok |", "| --- | ---: | ---: | --- |"]
    for label, r in lam.items():
        lines.append(f"| {label} | {r['init_s']:.2f} | {r['first_s']:.2f} | {r['ok']} |")
    if s3:
        lines += [""] + s3_report(s3)
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    text = with_kept_sections(text, args.out)
    with open(args.out, "w") as f:
        f.write(text)
    chart(args.png, results)


def with_kept_sections(text, path):
    """`text` with the marked sections (`<!-- NAME -->` … `<!-- /NAME -->`) of
    the file at `path` kept: the summary written by hand (SUMMARY, right after
    the title) and the sections other commands write (make bench-objects,
    bench-memory, soak, bench-cpus) or written by hand (BUILD), after this
    command's own part, in their order."""
    if not os.path.exists(path):
        return text
    with open(path) as f:
        old = f.read()
    sections = [m.group(0) for m in re.finditer(r"<!-- ([A-Z0-9_]+) -->\n.*?<!-- /\1 -->\n", old, re.S)]
    summary = [s for s in sections if s.startswith("<!-- SUMMARY -->")]
    others = [s for s in sections if not s.startswith("<!-- SUMMARY -->")]
    title, rest = text.split("\n", 1)
    text = "\n".join([title, ""] + summary) + rest if summary else text
    for s in others:
        text = text.rstrip("\n") + "\n\n" + s
    return text


def s3_report(s3):
    """The simulated-S3 section of BENCHMARKS.md (also the whole of --only-s3's)."""
    rows = {r["name"]: r for r in s3["rows"]}

    def row(prefix):
        return next((r for n, r in rows.items() if n.startswith(prefix)), None)

    def ratio(a, b):
        return a / b if a and b else float("nan")

    lines = [f"## From S3: s3s-fs on loopback behind s3_throttle ({s3['mbps']:g} MB/s per connection, "
             f"{s3['first_byte_ms']} ms to first byte), fp32 model {s3['size_mb']:.0f} MB", "",
             "Cold start is process start → first correct answer to a POST of a test photo; catdog's fetch "
             "time is its own (`fetch_ms` of the \"model ready\" log line). See bench/README.md for what this "
             "simulation can and cannot show.", "",
             "| contender | cold start (s) | fetch (s) | fetch MB/s | digest wait after the last byte (ms) | peak RSS (MB) | CPU of s3s-fs + proxy (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in s3["rows"]:
        f = r["fetch_s"]
        fetch, rate = (f"{f:.2f}", f"{s3['size_mb'] / f:.0f}") if f else ("—", "—")
        dw = r.get("digest_wait_ms")
        lines.append(f"| {r['name']} | {r['cold_s']:.2f} | {fetch} | {rate} | "
                     f"{'—' if dw is None else f'{dw:.1f}'} | {r['rss_mb']:.0f} | {r['sim_cpu_s']:.1f} |")
    one, par = row("catdog serve, one GET"), row("catdog serve, 16 parallel ranged GETs (")
    local = row("catdog serve, the same model from a local file")
    py_file, py_bytes = row("Python: boto3 download_file"), row("Python: get_object")
    lines += ["", "| figure | value | target |", "| --- | ---: | --- |"]
    if one and par:
        lines.append(f"| catdog fetch: one GET ÷ 16 parallel ranged GETs (speed-up) | "
                     f"{ratio(one['fetch_s'], par['fetch_s']):.2f}× | ≥ 8× |")
    if par and py_file:
        lines.append(f"| cold start: catdog (16 ranges) ÷ Python boto3 download_file | "
                     f"{ratio(par['cold_s'], py_file['cold_s']):.2f}× | ≤ 0.4× |")
    if par and py_bytes:
        lines.append(f"| cold start: catdog (16 ranges) ÷ Python get_object().read() | "
                     f"{ratio(par['cold_s'], py_bytes['cold_s']):.2f}× | ≤ 0.2× |")
    if par and local:
        lines.append(f"| peak RSS: catdog serving from S3 (16 ranges) ÷ from the local file | "
                     f"{ratio(par['rss_mb'], local['rss_mb']):.2f}× | ≤ 1.15× |")
    rs = s3.get("ranges")
    if rs:
        lines.append(f"| the simulation (boto3): {rs['mb']:.0f} MB in one GET ÷ in {rs['parts']} parallel ranged "
                     f"GETs ({rs['one_s']:.2f} s ÷ {rs['parallel_s']:.2f} s) | "
                     f"{ratio(rs['one_s'], rs['parallel_s']):.2f}× | > 1× (the cap is per connection) |")
    ceiling = row("catdog serve, 16 parallel ranged GETs, no cap")
    if par and ceiling and one:
        mb = s3["size_mb"]
        lines += ["", f"Why the fetch and cold-start targets miss here: 16 capped ranges fetched at "
                      f"{mb / par['fetch_s']:.0f} MB/s and with no cap and no delay at all at "
                      f"{mb / ceiling['fetch_s']:.0f} MB/s, so the 90 MB/s cap is not what limits them; the "
                      f"simulation itself (s3s-fs reads in 4 KiB pieces, plus the proxy) used "
                      f"{par['sim_cpu_s']:.1f} CPU-seconds of the same 2 cores catdog receives, hashes and "
                      f"writes on. The 8× target needs {8 * mb / one['fetch_s']:.0f} MB/s. On Lambda, S3's side "
                      f"costs the function nothing (bench/README.md, \"The simulated S3\")."]
    lam = s3.get("lambda")
    if lam:
        fetch = f", of which fetch {lam['fetch_s']:.2f} s" if lam.get("fetch_s") else ""
        lines += ["", f"Lambda bootstrap ({lam.get('binary', 'release binary')}; stand-in Runtime API, MODEL_URI on "
                      f"the simulated S3, catdog's default concurrency): init {lam['init_s']:.2f} s{fetch}; first answer {lam['first_s']:.2f} s; "
                      f"answer ok: {lam['ok']}."]
    return lines


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
