"""The Python peer: Flask + onnxruntime doing what catdog serve does (decode
with Pillow, resize 224x224 bilinear, caffe preprocessing, session.run),
single process, as one would write it. Usage: flask_ort.py MODEL PORT"""
import io
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from flask import Flask, request
from PIL import Image

model_path, port = sys.argv[1], int(sys.argv[2])
opts = ort.SessionOptions()
opts.intra_op_num_threads = int(os.environ.get("THREADS", os.cpu_count()))
session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
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
