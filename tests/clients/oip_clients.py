"""Asks catdog over the Open Inference Protocol (v2 REST) with the model-serving
world's own clients, tritonclient[http] and the kserve SDK's InferenceRESTClient,
and prints what each read as JSON (tests/it/oip.rs compares it with POST /predict).

Usage: oip_clients.py '{"base": "http://127.0.0.1:PORT", "model": "catdog",
  "images": [PATH, ...], "tensor": {"path": F32_FILE, "input": NAME, "shape": [...]} | null,
  "headers": {...}}'
"""
import asyncio
import base64
import json
import sys

import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException
from kserve import InferenceRESTClient, InferRequest, InferInput, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

args = json.loads(sys.argv[1])
base, name = args["base"], args["model"]
given_headers = args.get("headers") or {}


def hdrs():
    # tritonclient writes Inference-Header-Content-Length into the dict it is
    # given, so every call gets a fresh one
    return dict(given_headers)


pictures = [open(p, "rb").read() for p in args["images"]]
b64 = [base64.b64encode(p).decode() for p in pictures]
out = {"checks": {}, "results": {}, "errors": {}}


def rows(probabilities, labels):
    labels = [l.decode() if isinstance(l, bytes) else str(l) for l in np.asarray(labels).reshape(-1)]
    return {"probabilities": np.asarray(probabilities, dtype=np.float32).tolist(), "labels": labels}


# --- tritonclient (HTTP) ---
host = base.split("://", 1)[1]
client = triton.InferenceServerClient(url=host)
out["checks"]["triton_live"] = client.is_server_live(headers=hdrs())
out["checks"]["triton_ready"] = client.is_server_ready(headers=hdrs())
out["checks"]["triton_model_ready"] = client.is_model_ready(name, headers=hdrs())
out["checks"]["triton_server_metadata"] = client.get_server_metadata(headers=hdrs())
out["checks"]["triton_model_metadata"] = client.get_model_metadata(name, headers=hdrs())


def triton_bytes(binary):
    inp = triton.InferInput("image", [len(pictures)], "BYTES")
    data = pictures if binary else b64
    inp.set_data_from_numpy(np.array(data, dtype=np.object_), binary_data=binary)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary),
               triton.InferRequestedOutput("label", binary_data=binary)]
    r = client.infer(name, [inp], outputs=outputs, headers=hdrs(), request_id="req-1")
    got = rows(r.as_numpy("probabilities"), r.as_numpy("label"))
    got["id"] = r.get_response()["id"]
    got["model_version"] = r.get_response().get("model_version")
    return got


out["results"]["tritonclient_binary"] = triton_bytes(True)
out["results"]["tritonclient_json"] = triton_bytes(False)

# No outputs named: tritonclient then asks for every output in binary.
inp = triton.InferInput("image", [len(pictures)], "BYTES")
inp.set_data_from_numpy(np.array(pictures, dtype=np.object_), binary_data=True)
r = client.infer(name, [inp], headers=hdrs())
out["results"]["tritonclient_all_outputs"] = rows(r.as_numpy("probabilities"), r.as_numpy("label"))

# Triton's classification extension: the top 2 as "probability:index:label".
r = client.infer(name, [inp], outputs=[triton.InferRequestedOutput("probabilities", class_count=2)],
                 headers=hdrs())
out["results"]["tritonclient_classification"] = [
    [c.decode() for c in row] for row in r.as_numpy("probabilities").reshape(len(pictures), -1)]

if args.get("tensor"):
    t = args["tensor"]
    x = np.fromfile(t["path"], dtype="<f4").reshape(t["shape"])
    inp = triton.InferInput(t["input"], list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    r = client.infer(name, [inp], headers=hdrs())
    out["results"]["tritonclient_fp32"] = rows(r.as_numpy("probabilities"), r.as_numpy("label"))

for what, call in {
    "unknown_model": lambda: client.infer("no-such-model", [inp], headers=hdrs()),
    "unknown_output": lambda: client.infer(
        name, [inp], outputs=[triton.InferRequestedOutput("logits")], headers=hdrs()),
}.items():
    try:
        call()
        out["errors"][what] = None
    except InferenceServerException as e:
        out["errors"][what] = {"status": e.status(), "message": e.message()}


# --- kserve SDK, v2 REST ---
async def kserve_calls():
    kc = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    out["checks"]["kserve_live"] = await kc.is_server_live(base, headers=hdrs())
    out["checks"]["kserve_ready"] = await kc.is_server_ready(base, headers=hdrs())
    out["checks"]["kserve_model_ready"] = await kc.is_model_ready(base, name, headers=hdrs())

    async def ask(binary):
        if binary:
            i = InferInput(name="image", shape=[len(pictures)], datatype="BYTES")
            i.set_data_from_numpy(np.array(pictures, dtype=np.object_), binary_data=True)
        else:
            i = InferInput(name="image", shape=[len(pictures)], datatype="BYTES", data=b64)
        wanted = [RequestedOutput("probabilities", {"binary_data": binary}),
                  RequestedOutput("label", {"binary_data": binary})]
        req = InferRequest(model_name=name, infer_inputs=[i], request_outputs=wanted)
        res = await kc.infer(base, req, model_name=name, headers=hdrs())
        by_name = {o.name: o for o in res.outputs}
        p, l = by_name["probabilities"], by_name["label"]
        return rows(p.as_numpy() if binary else np.array(p.data).reshape(p.shape),
                    l.as_numpy() if binary else l.data)

    out["results"]["kserve_json"] = await ask(False)
    out["results"]["kserve_binary"] = await ask(True)
    await kc.close()


asyncio.run(kserve_calls())
print(json.dumps(out))
