"""Parses a Prometheus text exposition (stdin) with prometheus_client's own
parser and prints every sample as JSON: [{"name", "labels", "value"}, ...],
plus each family's name and type. A text the parser refuses fails here."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families.append({
        "name": family.name,
        "type": family.type,
        "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples],
    })
print(json.dumps(families))
