"""S3 objects per second: `catdog predict s3://bucket/prefix/` — the worker
S3 events and Batch Operations run — against the same photos from local
files, with the full-size VGG16 (fp32 and int8), objects on the simulated S3
(s3s-fs behind s3_throttle: per-connection cap, delay to first byte). Then
the cost per object beyond inference (the GET, the record, the tags; tags on
moto, as s3s-fs has no tagging), and, on paper, a cost table for a million
pictures on Lambda beside Amazon Rekognition's DetectLabels, and a
10-million-object bucket through S3 Batch Operations.

Run through `make bench-objects` (bench/objects.sh builds everything first).
Writes its section of BENCHMARKS.md (between the OBJECTS markers).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import S3Sim, cpu_model, free_port, wait_port  # noqa: E402

# Published prices, US East (N. Virginia), as read for this table (see the
# notes under it): change them here if they change.
LAMBDA_GB_S = {"x86_64": 0.0000166667, "arm64": 0.0000133334}  # aws.amazon.com/lambda/pricing
LAMBDA_PER_REQUEST = 0.20 / 1e6
S3_GET = 0.0004 / 1000  # GET, HEAD and other reads (aws.amazon.com/s3/pricing, S3 Standard)
S3_PUT = 0.005 / 1000  # PUT, COPY, POST, LIST; PutObjectTagging is one
SQS_PER_REQUEST = 0.40 / 1e6  # standard queue (aws.amazon.com/sqs/pricing)
BATCH_PER_JOB, BATCH_PER_OBJECT = 0.25, 1.00 / 1e6  # S3 Batch Operations (aws.amazon.com/s3/pricing)
REKOGNITION_TIERS = [(1e6, 0.001), (4e6, 0.0008), (30e6, 0.0006), (float("inf"), 0.00025)]  # DetectLabels
LAMBDA_MB, FULL_VCPU_MB = 3008, 1769  # the template's MemorySize; Lambda gives 1 vCPU per 1769 MB


def rekognition(n):
    cost, left = 0.0, n
    for size, price in REKOGNITION_TIERS:
        take = min(left, size)
        cost += take * price
        left -= take
        if left <= 0:
            break
    return cost


def timed(cmd, env):
    start = time.perf_counter()
    out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    took = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return took, out.stdout


def records(client, bucket, prefix):
    rows = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            rows.append(json.loads(body))
    return rows


def medians(rows):
    keys = ["get", "decode", "preprocess", "inference", "write", "total"]
    return {k: statistics.median(r["timings_ms"][k] for r in rows) for k in keys}


def moto_server(python):
    port = free_port()
    proc = subprocess.Popen([python, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    wait_port(port, timeout=60)
    return proc, f"http://127.0.0.1:{port}"


def run_model(args, name, model, photos, sim, client):
    """One model: local files, then S3 reads only, then S3 with records."""
    env = {**sim.env, "RUST_LOG": "warn"}
    base = [args.catdog, "predict", "--model", model]
    one, _ = timed(base + [photos[0]], env)
    local_dir = tempfile.mkdtemp(prefix="objects-local-", dir=args.work)
    for i, p in enumerate(photos):
        shutil.copy(p, os.path.join(local_dir, f"{i:04d}.jpg"))
    local, _ = timed(base + [local_dir], env)
    prefix = f"{name}/"
    for i, p in enumerate(photos):
        client.upload_file(p, S3Sim.BUCKET, f"{prefix}{i:04d}.jpg")
    uri = f"s3://{S3Sim.BUCKET}/{prefix}"
    reads, out = timed(base + ["--json", uri], env)
    assert len(out.splitlines()) == len(photos), out[-500:]
    written, _ = timed(base + ["--write-results", "--results", "record", uri], env)
    rows = records(client, S3Sim.BUCKET, f"catdog-results/{prefix}")
    assert len(rows) == len(photos) and all("label" in r for r in rows), rows[:2]
    # One object at a time, as one Batch Operations task (one invoke each)
    # is handled: each object's own time, with no neighbour's wait in it.
    # Records under another prefix, or the first run's would be reused.
    seq, _ = timed(base + ["--write-results", "--results", "record", "--results-prefix", "seq-results/", uri],
                   {**env, "CATDOG_OBJECT_CONCURRENCY": "1"})
    seq_rows = records(client, S3Sim.BUCKET, f"seq-results/{prefix}")
    assert len(seq_rows) == len(photos), len(seq_rows)
    shutil.rmtree(local_dir, ignore_errors=True)
    n = len(photos)
    # Objects per second once the model is loaded: (n − 1) more objects in
    # (wall(n) − wall(1)) seconds, so the load is left out of every figure.
    rate = lambda wall: (n - 1) / max(wall - one, 1e-9)  # noqa: E731
    return {"model": name, "n": n, "one_s": one, "local_s": local, "reads_s": reads, "written_s": written,
            "seq_s": seq, "local_rate": rate(local), "reads_rate": rate(reads), "written_rate": rate(written),
            "seq_rate": rate(seq), "medians": medians(seq_rows)}


def tags_cost(args, model, photos):
    """The same worker writing records only, then tags and records, on moto,
    one object at a time: what the tags add per object (moto is a Python
    server on loopback, so its times are an upper bound here, not S3's).
    A record's `write` is the time from the tags to the record's PUT, which
    it cannot count itself: with tags on, it is the tags' time."""
    import boto3

    proc, endpoint = moto_server(args.python)
    try:
        env = {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "RUST_LOG": "warn"}
        c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                         region_name="us-east-1")
        out = {}
        for results in ["record", "tags,record"]:
            bucket = "tags" if "tags" in results else "records"
            c.create_bucket(Bucket=bucket)
            for i, p in enumerate(photos):
                c.upload_file(p, bucket, f"p/{i:04d}.jpg")
            wall, _ = timed([args.catdog, "predict", "--model", model, "--write-results", "--results", results,
                             f"s3://{bucket}/p/"], {**env, "CATDOG_OBJECT_CONCURRENCY": "1"})
            out[results] = {**medians(records(c, bucket, "catdog-results/p/")), "wall_per_object_ms":
                            wall / len(photos) * 1e3}
        return out
    finally:
        proc.terminate()
        proc.wait()


def record_cost(model, ms):
    """One bullet: what writing the record adds per object (answers + records against answers only)."""
    if ms < 0:
        # Two separate runs: at concurrency 4 the record's PUT overlaps other
        # objects' inference, so its cost can be smaller than their spread.
        return (f"- the record ({model}): none measurable at concurrency 4: answers + records ran "
                f"{-ms:.1f} ms per object faster than answers only, which is run-to-run noise (the PUT "
                "overlaps other objects' inference);")
    return (f"- the record ({model}): {ms:.1f} ms of wall time per object at concurrency 4 "
            "(answers only against answers + records);")


def report(args, runs, tags):
    lines = ["<!-- OBJECTS -->", "## S3 objects: the worker of S3 events and Batch Operations", "",
             f"Measured by `make bench-objects` on {time.strftime('%Y-%m-%d')}: {cpu_model()}, "
             f"{os.cpu_count()} cores. `catdog predict s3://bench/<model>/` (the worker S3 events, SQS "
             "and Batch Operations run; `CATDOG_OBJECT_CONCURRENCY` 4, one model run per micro-batch) "
             f"over the {runs[0]['n']} JPEG photos of the shared set (train and test), objects on s3s-fs "
             f"behind s3_throttle ({args.s3_mbps:g} MB/s per connection, {args.s3_first_byte_ms} ms to "
             "first byte); the same photos as local files for reference. Objects/s leave the model "
             "load out: (n − 1) / (wall(n) − wall(1)).", "",
             "| model | local files (obj/s) | from S3, answers only (obj/s) | from S3, + a record each (obj/s) "
             "| S3 + record ÷ local | one at a time (obj/s) | one at a time, median ms: get / decode / preprocess / "
             "inference / total before the record's PUT |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in runs:
        m = r["medians"]
        lines.append(f"| {r['model']} | {r['local_rate']:.2f} | {r['reads_rate']:.2f} | {r['written_rate']:.2f} "
                     f"| {r['written_rate'] / r['local_rate']:.2f}× | {r['seq_rate']:.2f} | {m['get']:.1f} / "
                     f"{m['decode']:.1f} / {m['preprocess']:.1f} / {m['inference']:.1f} / {m['total']:.1f} |")
    rec, both = tags["record"], tags["tags,record"]
    per = lambda rate: 1e3 / rate  # noqa: E731
    lines += ["", "The cost per object beyond inference:", "",
              f"- the GET: the `get` median above (20 ms of it is the simulation's delay to first byte);",
              *[record_cost(r['model'], per(r['written_rate']) - per(r['reads_rate'])) for r in runs],
              f"- the tags, on moto (int8, one at a time; a Python server on loopback, so an upper bound here, "
              f"not S3's latency): GetObjectTagging then PutObjectTagging of the merged set take "
              f"{both['write']:.1f} ms (median); wall per object {both['wall_per_object_ms']:.1f} ms with tags "
              f"and record against {rec['wall_per_object_ms']:.1f} ms with the record alone.", ""]
    # On paper: Lambda at the template's memory, duration scaled from this
    # machine's cores to the vCPU share Lambda gives that memory.
    vcpu = LAMBDA_MB / FULL_VCPU_MB
    gb = LAMBDA_MB / 1024
    cores = os.cpu_count()
    lines += ["### A million pictures: Lambda beside Amazon Rekognition (on paper)", "",
              f"Lambda at the template's {LAMBDA_MB} MB ({vcpu:.2f} vCPU: 1 vCPU per {FULL_VCPU_MB} MB). "
              f"Duration per picture: the wall time per object one at a time above (GET, inference and the "
              f"record's PUT, as one Batch Operations task is), plus the tags' median on moto, scaled by "
              f"{cores} cores here ÷ {vcpu:.2f} vCPU there "
              "(inference is compute-bound and ONNX Runtime uses every core it is given). arm64 is priced "
              "with the x86 duration: no arm64 speed was measured here (issue 19), so its row is the "
              "price difference alone. Per picture also: one invoke (Batch Operations: one task each), "
              "a GET, a HEAD-class read of its record (the idempotency check), GetObjectTagging, "
              "PutObjectTagging, the record's PUT, and S3 Batch Operations' per-object fee.", "",
              "| model | Lambda arch | duration per picture (ms) | Lambda compute | invokes | S3 requests | Batch Operations | total per 1M pictures | Rekognition DetectLabels per 1M | catdog ÷ Rekognition |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    s3_per = 3 * S3_GET + 2 * S3_PUT  # GET object, GET record, GetObjectTagging; PutObjectTagging, PUT record
    rek = rekognition(1e6)
    costs = {}
    for r in runs:
        dur_s = (1 / r["seq_rate"] + both["write"] / 1e3) * cores / vcpu
        for arch in ["x86_64", "arm64"]:
            compute = 1e6 * dur_s * gb * LAMBDA_GB_S[arch]
            total = compute + 1e6 * (LAMBDA_PER_REQUEST + s3_per + BATCH_PER_OBJECT)
            costs[(r["model"], arch)] = (dur_s, total)
            lines.append(f"| {r['model']} | {arch} | {dur_s * 1e3:.0f} | ${compute:,.2f} | "
                         f"${1e6 * LAMBDA_PER_REQUEST:,.2f} | ${1e6 * s3_per:,.2f} | ${1e6 * BATCH_PER_OBJECT:,.2f} "
                         f"| **${total:,.2f}** | ${rek:,.2f} | {total / rek:.2f}× |")
    lines += ["", "Through the uploads queue instead of Batch Operations, a Lambda invoke carries up to 10 "
              f"messages (${0.1e6 * LAMBDA_PER_REQUEST:,.2f} of invokes per 1M) and SQS adds its requests "
              f"(send, receive, delete: ${3e6 * SQS_PER_REQUEST:,.2f} per 1M); there is no per-object Batch fee.",
              "", "### A 10-million-object bucket through S3 Batch Operations (on paper)", "",
              "One job, one task per object, one object per invoke; Lambda's default account concurrency "
              "is 1,000 (a raise is a quota request), and the job's rate follows the function's. Time = "
              "10M × duration ÷ concurrency.", "",
              "| model | concurrency | time | cost (x86_64) | cost (arm64) | Rekognition DetectLabels |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        for conc in [100, 1000]:
            dur_s, x86 = costs[(r["model"], "x86_64")]
            _, arm = costs[(r["model"], "arm64")]
            hours = 10e6 * dur_s / conc / 3600
            lines.append(f"| {r['model']} | {conc} | {hours:.1f} h | ${10 * x86 + BATCH_PER_JOB:,.0f} | "
                         f"${10 * arm + BATCH_PER_JOB:,.0f} | ${rekognition(10e6):,.0f} |")
    lines += ["", "Prices: US East (N. Virginia) as published by AWS on its pricing pages "
              "(aws.amazon.com/lambda/pricing: $0.0000166667 per GB-second x86, $0.0000133334 arm64, "
              "$0.20 per million requests; aws.amazon.com/s3/pricing: S3 Standard GET $0.0004 and PUT "
              "$0.005 per 1,000 requests, Batch Operations $0.25 per job and $1.00 per million objects; "
              "aws.amazon.com/sqs/pricing: $0.40 per million standard requests; "
              "aws.amazon.com/rekognition/pricing: DetectLabels (group 2) $0.001 per image for the first "
              "million a month, then $0.0008 to 5M, $0.0006 to 35M, $0.00025 beyond). This machine has no "
              "internet: the figures were not fetched live; they are set at the top of bench/objects.py. "
              "Free tiers are left out. Rekognition answers thousands of labels, not a fine-tuned cat-or-dog; "
              "it is the managed alternative, not the same product.", "<!-- /OBJECTS -->"]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--catdog", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--photos", required=True, help="a folder; every image under it is one object")
    ap.add_argument("--python", default=sys.executable, help="the Python with moto")
    ap.add_argument("--work", default=os.path.join("target", "bench", "objects"))
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--s3-mbps", type=float, default=90.0)
    ap.add_argument("--s3-first-byte-ms", type=int, default=20)
    ap.add_argument("--s3s-fs", default=shutil.which("s3s-fs") or os.path.expanduser("~/.cargo/bin/s3s-fs"))
    ap.add_argument("--s3-throttle", default=os.path.join("target", "debug", "s3_throttle"))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    args.work = os.path.abspath(args.work)
    photos = sorted(os.path.join(d, f) for d, _, fs in os.walk(args.photos) for f in fs
                    if f.lower().endswith((".jpg", ".jpeg")))
    import boto3

    seed = os.path.join(args.work, "seed", "seed.jpg")
    os.makedirs(os.path.dirname(seed), exist_ok=True)
    shutil.copy(photos[0], seed)
    sim = S3Sim(args, seed)
    runs = []
    try:
        client = boto3.client("s3", endpoint_url=sim.direct, aws_access_key_id="bench",
                              aws_secret_access_key="bench", region_name="us-east-1")
        for name, file in [("fp32", "vgg16.onnx"), ("int8", "vgg16.int8.onnx")]:
            print(f"== {name}: {len(photos)} objects", flush=True)
            r = run_model(args, name, os.path.join(args.models, file), photos, sim, client)
            print(json.dumps(r), flush=True)
            runs.append(r)
    finally:
        sim.close()
    print("== tags, on moto", flush=True)
    tags = tags_cost(args, os.path.join(args.models, "vgg16.int8.onnx"), photos)
    section = report(args, runs, tags)
    print(section)
    text = open(args.out).read() if os.path.exists(args.out) else "# Benchmarks\n"
    start, end = text.find("<!-- OBJECTS -->"), text.find("<!-- /OBJECTS -->")
    if start >= 0 and end >= 0:
        text = text[:start] + section + text[end + len("<!-- /OBJECTS -->\n"):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
