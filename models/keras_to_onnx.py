#!/usr/bin/env python3
"""Convert a Keras classifier (e.g. the tutorial's fine-tuned VGG16 `.h5`) to
an ONNX model catdog serves as is: tf2onnx for the graph, plus catdog's
metadata (labels, preprocessing, output kind) so the file describes itself.

    python models/keras_to_onnx.py catdog.h5 catdog.onnx --labels '["cat","dog"]'

Keras VGG16 models are trained on `vgg16.preprocess_input` ("caffe": BGR,
ImageNet means subtracted, no scaling) after `load_img(target_size=(224,224))`
(nearest resize): that is the default preset. Needs tensorflow-cpu and tf2onnx
(`make test` installs tensorflow-cpu 2.15 + tf2onnx 1.16 in its own virtualenv).
"""
import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("keras_model", help=".h5 file or SavedModel folder")
    ap.add_argument("out", help="ONNX file to write")
    ap.add_argument("--labels", default='["cat","dog"]', help="JSON array of class names in output order")
    ap.add_argument("--preprocessing", default="caffe", help='"caffe", "torch" or a JSON object (docs/models.md)')
    ap.add_argument("--opset", type=int, default=13)
    args = ap.parse_args()

    import onnx
    import tensorflow as tf
    import tf2onnx

    labels = json.loads(args.labels)
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels)):
        sys.exit("--labels must be a JSON array of non-empty strings")
    model = tf.keras.models.load_model(args.keras_model, compile=False)
    classes = model.output_shape[-1]
    if classes != len(labels):
        sys.exit(f"the model has {classes} outputs but {len(labels)} labels were given")
    last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    output_kind = "probabilities" if activation == "softmax" else "logits"

    spec = (tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="input"),)
    onnx_model, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=args.opset)
    for key, value in (("labels", json.dumps(labels)), ("preprocessing", args.preprocessing), ("output", output_kind)):
        del_ = [p for p in onnx_model.metadata_props if p.key == key]
        for p in del_:
            onnx_model.metadata_props.remove(p)
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, args.out)
    print(f"wrote {args.out}: input {list(model.input_shape)}, {classes} classes {labels}, output {output_kind}, "
          f"preprocessing {args.preprocessing}")


if __name__ == "__main__":
    main()
