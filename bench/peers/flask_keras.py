"""The tutorial's stack: Flask + Keras VGG16 (weights=None: random; speed does
not depend on the weights), last layer replaced by a 2-way softmax, the
tutorial's load_img / preprocess_input / model.predict per request.
Usage: flask_keras.py PORT"""
import io
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
from flask import Flask, request
from tensorflow.keras.applications.vgg16 import VGG16, preprocess_input
from tensorflow.keras.layers import Dense
from tensorflow.keras.models import Model
from tensorflow.keras.preprocessing.image import img_to_array, load_img

port = int(sys.argv[1])
base = VGG16(weights=None)
out = Dense(2, activation="softmax")(base.layers[-2].output)
model = Model(base.input, out)
for layer in model.layers[:-1]:
    layer.trainable = False
labels = ["cat", "dog"]
app = Flask(__name__)


@app.post("/predict")
def predict():
    img = load_img(io.BytesIO(request.get_data()), target_size=(224, 224))
    x = preprocess_input(np.expand_dims(img_to_array(img), 0))
    probs = model.predict(x, verbose=0)[0]
    i = int(np.argmax(probs))
    return {"label": labels[i], "confidence": float(probs[i])}


app.run(host="127.0.0.1", port=port, threaded=True)
