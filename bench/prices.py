"""What a picture costs on POST /predict, x86_64 beside arm64 (`make prices`):
docs/deploy.md's "What a picture costs" table, computed from the VGG16 p50
latencies `make bench` wrote into BENCHMARKS.md and the Lambda prices set at
the top of bench/objects.py (plus provisioned concurrency's, below).

Lambda gives 1 vCPU per 1769 MB; inference is compute-bound and ONNX
Runtime uses every core it is given, so the 2-core time scales by
2 / vCPUs (up to 2 vCPUs, the most measured here). arm64 is priced at the
x86 duration: no arm64 speed can be measured on this machine.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from objects import LAMBDA_GB_S, LAMBDA_PER_REQUEST  # noqa: E402

# aws.amazon.com/lambda/pricing, US East (N. Virginia): provisioned
# concurrency, per GB-second while it is configured.
PROVISIONED_GB_S = {"x86_64": 0.0000041667, "arm64": 0.0000033334}
MB_PER_VCPU = 1769
MEASURED_CORES = 2


def p50(benchmarks, contender):
    """The one-client p50 (ms) of `contender` in BENCHMARKS.md's first table."""
    for line in benchmarks.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == contender:
            return float(cells[2])
    sys.exit(f"prices: no row {contender!r} in BENCHMARKS.md (run make bench)")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    benchmarks = open(os.path.join(root, "BENCHMARKS.md")).read()
    date = re.search(r"Measured by `make bench` on (\S+):", benchmarks)
    print(f"VGG16 p50, one client, {MEASURED_CORES} cores (BENCHMARKS.md, {date.group(1) if date else '?'})\n")
    print("| model | memory | vCPUs | duration per picture (estimated) | x86_64 per 1M pictures "
          "| arm64 per 1M pictures (at the x86 duration) | arm64 ÷ x86 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model in ("fp32", "int8"):
        ms = p50(benchmarks, f"catdog serve ({model})")
        for memory in (2048, 3008):
            vcpus = memory / MB_PER_VCPU
            seconds = ms / 1000 * MEASURED_CORES / min(vcpus, MEASURED_CORES)
            cost = {arch: 1e6 * (seconds * memory / 1024 * price + LAMBDA_PER_REQUEST)
                    for arch, price in LAMBDA_GB_S.items()}
            print(f"| VGG16 {model} | {memory} MB | {vcpus:.2f} | {seconds * 1000:.0f} ms "
                  f"| ${cost['x86_64']:.2f} | ${cost['arm64']:.2f} | {cost['arm64'] / cost['x86_64']:.2f}× |")
    ratio = LAMBDA_GB_S["x86_64"] / LAMBDA_GB_S["arm64"]
    print(f"\narm64 is cheaper while its time per picture stays under {ratio:.2f}× the x86 one.")
    month = 30 * 86400
    warm = {arch: 3008 / 1024 * month * price for arch, price in PROVISIONED_GB_S.items()}
    print(f"One 3008 MB instance provisioned for 30 days: ${warm['x86_64']:.2f} (x86_64), "
          f"${warm['arm64']:.2f} (arm64), before the duration of what it serves.")


if __name__ == "__main__":
    main()
