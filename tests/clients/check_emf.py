"""Checks CloudWatch Embedded Metric Format lines (one JSON document per line
on stdin) against the EMF specification: its JSON schema for the `_aws`
metadata (no members beyond the specification's), and its rules on target
members (every dimension names a string member of the line, every metric a
number or an array of at most 100 numbers), and the 1 MB event limit.
Prints the documents as a JSON array; exits 1 naming the first violation."""
import json
import sys

import jsonschema

UNITS = ["Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
         "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
         "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
         "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
         "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"]

SCHEMA = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "additionalProperties": False,
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "LogGroupName": {"type": "string"},
                "CloudWatchMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "additionalProperties": False,
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024,
                                          "pattern": ".*[^\\s].*"},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "maxItems": 30,
                                    "uniqueItems": True,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 250},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "Name": {"type": "string", "minLength": 1, "maxLength": 1024},
                                        "Unit": {"type": "string", "enum": UNITS},
                                        "StorageResolution": {"type": "integer", "enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def fail(n, why):
    sys.exit(f"EMF line {n}: {why}")


docs = []
for n, line in enumerate(sys.stdin, 1):
    line = line.rstrip("\n")
    if not line.strip():
        continue
    if len(line.encode()) > 1024 * 1024:
        fail(n, "longer than CloudWatch's 1 MB event")
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as e:
        fail(n, f"not JSON: {e}")
    try:
        jsonschema.validate(doc, SCHEMA)
    except jsonschema.ValidationError as e:
        fail(n, f"against the specification's schema: {e.message} at {list(e.absolute_path)}")
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for d in dimension_set:
                if not isinstance(doc.get(d), str):
                    fail(n, f"dimension {d!r} is not a string member of the line")
        for metric in directive["Metrics"]:
            v = doc.get(metric["Name"])
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            ok = ok or (isinstance(v, list) and len(v) <= 100
                        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v))
            if not ok:
                fail(n, f"metric {metric['Name']!r} is not a number member of the line (got {v!r})")
    docs.append(doc)
print(json.dumps(docs))
