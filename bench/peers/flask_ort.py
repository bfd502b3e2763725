"""The Python peer: Flask + onnxruntime doing what catdog serve does (decode
with Pillow, resize 224x224 bilinear, caffe preprocessing, session.run),
single process, as one would write it. Usage: flask_ort.py MODEL PORT

MODEL may be s3://BUCKET/KEY (endpoint and credentials from the standard AWS_*
variables), loaded the way PEER_S3_LOAD says, as one would write it:
  download_file (default)  boto3's managed transfer (default TransferConfig: parallel
                           ranged GETs) to a temporary file, then InferenceSession(path)
  read                     get_object()['Body'].read(): one GET into memory, then
                           InferenceSession(bytes)"""
import io
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from flask import Flask, request
from PIL import Image

model_path, port = sys.argv[1], int(sys.argv[2])
if model_path.startswith("s3://"):
    import tempfile

    import boto3

    started = time.perf_counter()
    bucket, key = model_path[len("s3://"):].split("/", 1)
    s3 = boto3.client("s3")
    if os.environ.get("PEER_S3_LOAD", "download_file") == "read":
        model_path = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    else:
        fd, local = tempfile.mkstemp(suffix=".onnx")
        os.close(fd)
        s3.download_file(bucket, key, local)
        model_path = local
    # bench/run.py reads this line.
    print(f"peer: fetched {sys.argv[1]} in {time.perf_counter() - started:.3f} s", file=sys.stderr, flush=True)
opts = ort.SessionOptions()
opts.intra_op_num_threads = int(os.environ.get("THREADS", os.cpu_count()))
session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
if isinstance(model_path, str) and sys.argv[1].startswith("s3://"):
    os.unlink(model_path)  # the session holds the weights; the download goes
meta = session.get_modelmeta().custom_metadata_map
labels = json.loads(meta.get("labels", '["cat", "dog"]'))
name = session.get_inputs()[0].name
MEAN = np.array([103.939, 116.779, 123.68], np.float32)
app = Flask(__name__)


@app.post("/predict")
def predict():
    img = Image.open(io.BytesIO(request.get_data())).convert("RGB").resize((224, 224), Image.BILINEAR)
    x = (np.asarray(img, np.float32)[:, :, ::-1] - MEAN).transpose(2, 0, 1)[None].copy()
    probs = session.run(None, {name: x})[0][0]
    i = int(np.argmax(probs))
    return {"label": labels[i], "confidence": float(probs[i])}


app.run(host="127.0.0.1", port=port, threaded=True)
