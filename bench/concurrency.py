"""`make bench-concurrency`: one Lambda environment taking several invokes at
once (Lambda Managed Instances: `AWS_LAMBDA_MAX_CONCURRENCY=N`), driven by a
stand-in Runtime API on loopback that keeps N invokes in flight, beside
`catdog serve` under wrk with N clients. Images/s at 1, 4 and 8, fp32 and
int8 (the full-size VGG16 of `make bench`, random weights), each measured
once the weights are packed (`GET /model` says so: through the Runtime API
for the bootstrap). Writes BENCHMARKS.md's "Many invokes per environment"
section (between the CONCURRENCY markers). Not a test: speed is reported,
never asserted.
"""
import argparse
import base64
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memory import write_section  # noqa: E402
from run import cpu_model, free_port, packed_after, start_until_answer, stop, wrk  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WARM_S = 3


class RuntimeApi:
    """The Lambda Runtime API's invocation routes, handing events to any
    number of `/next` calls at once, and a closed loop of clients: each
    answer puts the next event in the queue while the loop runs."""

    def __init__(self, event_bodies):
        self.events = queue.Queue()
        self.bodies = event_bodies
        self.lock = threading.Lock()
        self.answers = {}  # request id -> (time, status)
        self.waiting = {}  # request id -> threading.Event
        self.looping = False
        self.next_id = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                # Headers and body go out in two writes: without this, Nagle's
                # algorithm holds the body for the client's delayed ACK.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self):
                rid, body = api.events.get()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", rid)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 600000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:0:function:catdog")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                parts = self.path.split("/")
                if "invocation" in parts and parts[-1] in ("response", "error"):
                    api.answered(parts[-2], parts[-1], body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    def send(self, body):
        with self.lock:
            self.next_id += 1
            rid = f"bench-{self.next_id}"
            self.waiting[rid] = threading.Event()
        self.events.put((rid, body))
        return rid

    def answered(self, rid, kind, body):
        status = None
        if kind == "response":
            try:
                status = json.loads(body).get("statusCode")
            except ValueError:
                pass
        with self.lock:
            self.answers[rid] = (time.perf_counter(), status, body)
            done = self.waiting.pop(rid, None)
            looping = self.looping
        if done:
            done.set()
        if looping:
            self.send(self.bodies[self.next_id % len(self.bodies)])

    def invoke(self, body, timeout=120):
        rid = self.send(body)
        with self.lock:
            done = self.waiting.get(rid)
        if done and not done.wait(timeout):
            raise RuntimeError(f"no answer to {rid} within {timeout} s")
        return self.answers[rid]

    def run_loop(self, clients, seconds):
        """`clients` invokes in flight for WARM_S + `seconds`; answers a
        second over the last `seconds`, and the failures among them."""
        with self.lock:
            self.answers.clear()
            self.looping = True
        start = time.perf_counter()
        for i in range(clients):
            self.send(self.bodies[i % len(self.bodies)])
        time.sleep(WARM_S + seconds)
        with self.lock:
            self.looping = False
            answers = list(self.answers.values())
        window = [a for a in answers if a[0] >= start + WARM_S]
        bad = sum(1 for a in window if a[1] != 200)
        return len(window) / seconds, bad

    def close(self):
        self.server.shutdown()


def function_url_event(path, method, body=None, content_type=None):
    event = json.load(open(os.path.join(HERE, "..", "events", "function-url.json")))
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    if body is None:
        event["body"] = None
        event["isBase64Encoded"] = False
    else:
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
        event["headers"]["content-type"] = content_type
    return json.dumps(event).encode()


def lambda_environment(catdog, model, clients, bodies, seconds):
    """Images/s of one bootstrap with AWS_LAMBDA_MAX_CONCURRENCY=clients."""
    api = RuntimeApi(bodies)
    env = {"AWS_LAMBDA_RUNTIME_API": api.address, "AWS_LAMBDA_FUNCTION_NAME": "catdog",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "10240", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
           "AWS_LAMBDA_MAX_CONCURRENCY": str(clients), "MODEL_URI": model, "RUST_LOG": "warn"}
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([catdog], env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log,
                            start_new_session=True)
    proc.log = log
    try:
        model_event = function_url_event("/model", "GET")
        until = time.perf_counter() + 300
        while True:
            _, status, body = api.invoke(model_event)
            weights = json.loads(json.loads(body)["body"]).get("weights") if status == 200 else None
            if weights not in (None, "packing"):
                break
            if time.perf_counter() > until:
                raise RuntimeError(f"the bootstrap's weights were not packed within 300 s ({weights})")
            time.sleep(0.1)
        return api.run_loop(clients, seconds)
    finally:
        stop(proc)
        api.close()


def serve(catdog, model, clients, photos, listfile, seconds):
    port = free_port()
    started = time.perf_counter()
    proc, _, _ = start_until_answer(f"catdog serve, {clients} clients", [catdog, "serve", "--port", str(port),
                                    "--model", model], {"RUST_LOG": "warn"}, port, photos[0])
    try:
        packed_after(port, started)
        wrk(port, clients, WARM_S, listfile)
        r = wrk(port, clients, seconds, listfile)
        return r["rps"], r["status_errors"] + r["socket_errors"]
    finally:
        stop(proc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--catdog", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--clients", default="1,4,8")
    ap.add_argument("--out", default="BENCHMARKS.md")
    args = ap.parse_args()
    photos = sorted(os.path.join(d, f) for d, _, fs in os.walk(args.photos) for f in fs
                    if f.lower().endswith((".jpg", ".jpeg")))
    bodies = [function_url_event("/predict", "POST", open(p, "rb").read(), "image/jpeg") for p in photos]
    listfile = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    listfile.write("\n".join(photos) + "\n")
    listfile.close()
    clients = [int(c) for c in args.clients.split(",")]
    rows = []
    for label, name in (("fp32", "vgg16.onnx"), ("int8", "vgg16.int8.onnx")):
        model = os.path.join(args.models, name)
        for n in clients:
            served, served_bad = serve(args.catdog, model, n, photos, listfile.name, args.seconds)
            env_rps, env_bad = lambda_environment(args.catdog, model, n, bodies, args.seconds)
            rows.append((label, n, served, env_rps, served_bad + env_bad))
            print(f"{label}, {n} at once: serve {served:.2f} img/s, Lambda environment {env_rps:.2f} img/s "
                  f"({env_rps / served:.2f}×), failures {served_bad + env_bad}", flush=True)
    os.unlink(listfile.name)
    lines = ["<!-- CONCURRENCY -->", "## Many invokes per environment (`make bench-concurrency`)", "",
             f"Measured {time.strftime('%Y-%m-%d')} on {cpu_model()} ({os.cpu_count()} cores): the full-size "
             "VGG16 of `make bench` (random weights), the shared test photos in turn. *Lambda environment*: "
             "the release bootstrap with `AWS_LAMBDA_MAX_CONCURRENCY=N` (as Lambda Managed Instances set it) "
             "against a stand-in Runtime API on loopback that keeps N Function URL invokes in flight. "
             "*serve*: `catdog serve` under wrk with N connections. Both measured once the weights are "
             f"packed, after {WARM_S} s of warm-up, over {args.seconds} s.", "",
             "| model | at once | serve img/s | Lambda environment img/s | environment ÷ serve | failures |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, n, served, env_rps, bad in rows:
        lines.append(f"| {label} | {n} | {served:.2f} | {env_rps:.2f} | {env_rps / served:.2f}× | {bad} |")
    ratios = [env_rps / served for _, _, served, env_rps, _ in rows]
    lines += ["", f"The environment's throughput over the server's: worst {min(ratios):.2f}×, best "
                  f"{max(ratios):.2f}×. It adds the Runtime API's HTTP round trips and base64 bodies to each "
                  "picture; the ONNX Runtime work and the micro-batching are the same code.",
              "<!-- /CONCURRENCY -->", ""]
    write_section(args.out, "CONCURRENCY", "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote the section of {args.out}")


if __name__ == "__main__":
    main()
