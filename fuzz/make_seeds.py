"""Writes the committed seed corpus of the `request` fuzz target to
fuzz/seeds/: small pictures in every accepted format (and some refused ones),
each wrapped as a raw body, a multipart form and a JSON/base64 body. The
first byte of a seed selects the Content-Type (see fuzz_targets/request.rs:
0 image/jpeg, 1 octet-stream, 2 multipart, 3 JSON, 4 image/png).
scripts/fuzz.sh adds the real photos of ../shared/data at run time (they are
not copied into the repository). Usage: make_seeds.py OUT_DIR"""
import base64
import io
import json
import os
import sys

from PIL import Image

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def picture(fmt, mode="RGB", size=(24, 16), **kw):
    img = Image.new(mode, size)
    for x in range(size[0]):
        for y in range(size[1]):
            v = (x * 37 + y * 11) % 256
            img.putpixel((x, y), v * 200 if mode == "I;16" else v if mode in ("L", "P") else (v, 255 - v, (v * 3) % 256, 255)[: len(mode)])
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


pictures = {
    "jpeg": picture("JPEG", quality=80),
    "jpeg_progressive": picture("JPEG", progressive=True),
    "jpeg_gray": picture("JPEG", "L"),
    "jpeg_cmyk": picture("JPEG", "CMYK"),
    "png": picture("PNG"),
    "png_rgba": picture("PNG", "RGBA"),
    "png_palette": picture("PNG", "P"),
    "png_16bit": picture("PNG", "I;16"),
    "gif": picture("GIF", "P"),
    "webp": picture("WEBP", quality=80),
    "webp_lossless": picture("WEBP", lossless=True),
    "bmp": picture("BMP"),
    "tiff": picture("TIFF"),
    "png_1x1": picture("PNG", size=(1, 1)),
    "png_tall": picture("PNG", size=(2, 300)),
}
for name, data in pictures.items():
    with open(os.path.join(out, f"raw_{name}"), "wb") as f:
        f.write(bytes([0]) + data)
    form = (b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--XYZ--\r\n")
    with open(os.path.join(out, f"multipart_{name}"), "wb") as f:
        f.write(bytes([2]) + form)
    with open(os.path.join(out, f"json_{name}"), "wb") as f:
        f.write(bytes([3]) + json.dumps({"image": base64.b64encode(data).decode()}).encode())
with open(os.path.join(out, "json_batch"), "wb") as f:
    f.write(bytes([3]) + json.dumps({"images": [base64.b64encode(pictures["png"]).decode(),
                                                "data:image/jpeg;base64," + base64.b64encode(pictures["jpeg"]).decode()]}).encode())
print(f"{len(os.listdir(out))} seeds in {out}")
