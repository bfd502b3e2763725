#!/usr/bin/env python3
"""Regenerates function/assets/imagenet_classes.txt (one ImageNet-1k class name per
line, line i = class i) from torchvision's own list (`torchvision.models._meta`),
taken from the torchvision wheel on PyPI without installing torch:

    pip download --no-deps torchvision -d /tmp/tv
    python3 scripts/imagenet_classes.py /tmp/tv/torchvision-*.whl
"""
import ast
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as whl:
    tree = ast.parse(whl.read("torchvision/models/_meta.py"))
names = next(
    ast.literal_eval(node.value)
    for node in tree.body
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_IMAGENET_CATEGORIES"
)
assert len(names) == 1000
with open("function/assets/imagenet_classes.txt", "w") as out:
    out.write("\n".join(names) + "\n")
