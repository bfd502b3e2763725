#!/usr/bin/env bash
# `make bench-cpus` (bench/cpus.py): the int8 recipes of models/quantize.py
# natively and under `qemu-x86_64 -cpu Haswell` (an AVX2 CPU without VNNI, as
# on x86 Lambda), side by side. Installs the test tools and qemu-user at the
# versions tools/ locks (when missing or other), builds the release binary,
# then runs (arguments are passed on, e.g. `bench/cpus.sh --fp32-photos 0`).
# About 15 minutes on 2 cores, most of it emulation.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/prepare.sh
bench_prepare
# qemu-user at the version tools/apt.txt locks, as the test command installs it.
source scripts/tools.sh
apt_from_lock qemu-user
cargo build --release --locked --bin catdog
"$CATDOG_PYTHON" bench/cpus.py --catdog target/release/catdog --data "$DATA" "$@"
