#!/usr/bin/env python3
"""Writes events/*.json, the Lambda test events for `sam local invoke` and for
the test suite: a Function URL (payload 2.0) and an API Gateway REST (1.0)
POST /predict carrying a real cat photo, base64-encoded.

    make_events.py PHOTO   (default: catsdogs/test/cat/cat.002.jpg in the shared data
                            folder, scripts/data_dir.sh: ../shared/data beside the checkout)

The photo is shrunk to 224 px on its longer side (JPEG q85) to keep the
events small; see events/README.md for its source.
"""
import base64
import io
import json
import os
import subprocess
import sys

from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
if len(sys.argv) > 1:
    photo = sys.argv[1]
else:
    # The shared data folder as scripts/data_dir.sh (the one place its default is written) says.
    data = subprocess.run([os.path.join(here, "data_dir.sh")], check=True, capture_output=True, text=True).stdout.strip()
    photo = os.path.join(data, "catsdogs/test/cat/cat.002.jpg")
img = Image.open(photo).convert("RGB")
img.thumbnail((224, 224), Image.BICUBIC)
buf = io.BytesIO()
img.save(buf, "JPEG", quality=85)
body = base64.b64encode(buf.getvalue()).decode()

function_url = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/predict",
    "rawQueryString": "",
    "headers": {
        "content-type": "image/jpeg",
        "host": "abcdefghij.lambda-url.us-east-1.on.aws",
        "user-agent": "curl/8.5.0",
        "x-forwarded-proto": "https",
    },
    "requestContext": {
        "accountId": "anonymous",
        "apiId": "abcdefghij",
        "domainName": "abcdefghij.lambda-url.us-east-1.on.aws",
        "domainPrefix": "abcdefghij",
        "http": {"method": "POST", "path": "/predict", "protocol": "HTTP/1.1",
                 "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
        "requestId": "6f2a1c8e-1b7d-4a8e-9a51-0c1f3a6b2d11",
        "routeKey": "$default",
        "stage": "$default",
        "time": "25/Nov/2026:09:00:00 +0000",
        "timeEpoch": 1795597200000,
    },
    "body": body,
    "isBase64Encoded": True,
}

api_gateway = {
    "resource": "/{proxy+}",
    "path": "/predict",
    "httpMethod": "POST",
    "headers": {"Content-Type": "image/jpeg", "Host": "abcdefghij.execute-api.us-east-1.amazonaws.com"},
    "multiValueHeaders": {"Content-Type": ["image/jpeg"], "Host": ["abcdefghij.execute-api.us-east-1.amazonaws.com"]},
    "queryStringParameters": None,
    "multiValueQueryStringParameters": None,
    "pathParameters": {"proxy": "predict"},
    "stageVariables": None,
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "abcdefghij",
        "domainName": "abcdefghij.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "abcdefghij",
        "httpMethod": "POST",
        "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
        "path": "/prod/predict",
        "protocol": "HTTP/1.1",
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "requestTime": "25/Nov/2026:09:00:00 +0000",
        "requestTimeEpoch": 1795597200000,
        "resourceId": "123456",
        "resourcePath": "/{proxy+}",
        "stage": "prod",
    },
    "body": body,
    "isBase64Encoded": True,
}

out = os.path.join(here, "..", "events")
os.makedirs(out, exist_ok=True)
for name, event in (("function-url.json", function_url), ("api-gateway-rest.json", api_gateway)):
    with open(os.path.join(out, name), "w") as f:
        json.dump(event, f, indent=2)
        f.write("\n")
print(f"events: {len(buf.getvalue())} byte JPEG from {photo}")
