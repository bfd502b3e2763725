"""The floor: onnxruntime's session.run on an already prepared tensor, no
HTTP, no decoding. Prints JSON {p50_ms, p99_ms, ips, n}. Usage: raw_ort.py MODEL N"""
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

opts = ort.SessionOptions()
opts.intra_op_num_threads = int(os.environ.get("THREADS", os.cpu_count()))
s = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32) * 50
name = s.get_inputs()[0].name
for _ in range(3):
    s.run(None, {name: x})
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    s.run(None, {name: x})
    times.append((time.perf_counter() - t) * 1e3)
# ips: images per second, one run after another (batch 1): the floor everyone shares.
print(json.dumps({"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
                  "ips": len(times) / (sum(times) / 1e3), "n": len(times)}))
