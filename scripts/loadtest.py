#!/usr/bin/env python3
"""Bounded load test of a running `catdog serve` (loopback only).

Sends N mixed requests (real photos, and invalid bodies each with its
documented 4xx) from C concurrent clients, then prints a table and a JSON
summary. Before the load, each photo is classified once on its own: under
load every answer must be that one (same label, confidence within 1e-3:
batched float math may differ in the last bits; no mixed-up batch rows). A 503
is accepted only as load shedding (`overloaded` + Retry-After); the client
then sends the request again after a pause, as a well-behaved client would,
so every valid request must end with its right answer. Exit 1 on any wrong
answer, unexpected status or request still shed after the retries.

Usage: loadtest.py --url http://127.0.0.1:8080 --photos DIR [--requests 2000]
                   [--concurrency 32] [--invalid-share 0.3] [--pid PID] [--json OUT]
"""
import argparse
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

INVALID = [
    ("empty body", "image/jpeg", b"", 400, "empty_body"),
    ("random bytes", "image/jpeg", bytes((i * 7919) % 251 for i in range(3000)), 400, "invalid_image"),
    ("text/plain", "text/plain", b"hello", 415, "unsupported_media_type"),
    ("bad JSON", "application/json", b'{"image": ', 400, "invalid_json"),
    ("base64 garbage", "application/json", b'{"image": "@@@"}', 400, "invalid_base64"),
]


def post(url, body, ctype, timeout=120):
    req = urllib.request.Request(url + "/predict", data=body, method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def peak_rss_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--invalid-share", type=float, default=0.3)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--json")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--retries", type=int, default=30, help="times a shed request is sent again")
    ap.add_argument("--retry-pause", type=float, default=0.05,
                    help="first pause (s) before sending a shed request again; doubles, capped at 1 s")
    args = ap.parse_args()
    url = args.url.rstrip("/")

    photos = []
    for root, _, names in os.walk(args.photos):
        photos += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith((".jpg", ".jpeg", ".png"))]
    if not photos:
        sys.exit(f"no photos under {args.photos}")
    bodies = {p: open(p, "rb").read() for p in photos}

    # The answer for each photo, asked alone.
    expected = {}
    for p in photos:
        status, _, body = post(url, bodies[p], "image/jpeg")
        if status != 200:
            sys.exit(f"baseline: {p} answered {status}: {body[:200]!r}")
        v = json.loads(body)
        expected[p] = (v["label"], v["confidence"])

    rng = random.Random(args.seed)
    plan = []
    for _ in range(args.requests):
        if rng.random() < args.invalid_share:
            plan.append(("invalid", rng.choice(INVALID)))
        else:
            plan.append(("photo", rng.choice(photos)))

    sheds = []

    def one(item):
        kind, what = item
        t0 = time.perf_counter()
        for attempt in range(args.retries + 1):
            if kind == "photo":
                status, headers, body = post(url, bodies[what], "image/jpeg")
            else:
                status, headers, body = post(url, what[2], what[1])
            try:
                v = json.loads(body)
            except ValueError:
                v = None
            shed = status == 503 and v and v.get("error", {}).get("code") == "overloaded"
            if not shed:
                break
            if not any(k.lower() == "retry-after" for k in headers):
                return ("unexpected", 0.0, "503 overloaded without Retry-After")
            sheds.append(1)
            # A well-behaved client comes back later, backing off with jitter
            # (capped at the Retry-After second); short first pauses keep the
            # test brief while the server still has to shed.
            time.sleep(min(1.0, args.retry_pause * 2 ** attempt) * random.uniform(0.5, 1.5))
        else:
            return ("lost", (time.perf_counter() - t0) * 1e3, f"still shed after {args.retries} retries")
        ms = (time.perf_counter() - t0) * 1e3
        if kind == "photo":
            if status != 200 or v is None:
                return ("unexpected", ms, f"{what}: {status} {body[:200]!r}")
            got = (v.get("label"), v.get("confidence"))
            # A photo run inside a micro-batch may differ from its solo run in
            # the last bits of the float math, never more.
            if got[0] != expected[what][0] or abs((got[1] or 0) - expected[what][1]) > 1e-3:
                return ("wrong", ms, f"{what}: {got} instead of {expected[what]}")
            return ("ok", ms, "")
        name, _, _, want_status, want_code = what
        code = (v or {}).get("error", {}).get("code")
        if status != want_status or code != want_code:
            return ("unexpected", ms, f"{name}: {status} {code} instead of {want_status} {want_code}")
        return ("rejected", ms, "")

    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        results = list(pool.map(one, plan))
    seconds = time.perf_counter() - started

    counts = {}
    for outcome, _, _ in results:
        counts[outcome] = counts.get(outcome, 0) + 1
    lat = sorted(ms for outcome, ms, _ in results if outcome == "ok")
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan"))
    summary = {
        "requests": len(results), "concurrency": args.concurrency, "seconds": round(seconds, 2),
        "answered_right": counts.get("ok", 0), "rejected_as_documented": counts.get("rejected", 0),
        "shed_503_retry_after": len(sheds), "lost": counts.get("lost", 0), "wrong": counts.get("wrong", 0),
        "unexpected": counts.get("unexpected", 0), "p50_ms": round(pct(0.5), 1), "p99_ms": round(pct(0.99), 1),
        "peak_rss_mb": round(peak_rss_mb(args.pid), 1) if args.pid and peak_rss_mb(args.pid) else None,
    }
    print("| figure | value |\n| --- | ---: |")
    for k, v in summary.items():
        print(f"| {k} | {v} |")
    problems = [d for outcome, _, d in results if outcome in ("wrong", "unexpected", "lost")]
    for d in problems[:20]:
        print("problem:", d)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    print("SUMMARY " + json.dumps(summary))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
