#!/usr/bin/env bash
# `make bench-cpus` (bench/cpus.py): the int8 recipes of models/quantize.py
# natively and under `qemu-x86_64 -cpu Haswell` (an AVX2 CPU without VNNI, as
# on x86 Lambda), side by side. Installs the test tools and qemu-user when
# missing, builds the release binary, then runs (arguments are passed on,
# e.g. `bench/cpus.sh --fp32-photos 0`). About 15 minutes on 2 cores, most
# of it emulation.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh --test-tools)"
DATA="${CATDOG_DATA:-$(cd .. && pwd)/shared/data}"
[[ -d "$DATA/catsdogs" ]] || { echo "bench: photos not found at $DATA/catsdogs (set CATDOG_DATA)"; exit 2; }
if ! command -v qemu-x86_64 > /dev/null; then
  SUDO=$([[ $(id -u) == 0 ]] && echo "" || echo sudo)
  $SUDO apt-get install -y -q qemu-user > /dev/null || { $SUDO apt-get update -q > /dev/null && $SUDO apt-get install -y -q qemu-user > /dev/null; }
fi
cargo build --release --locked --bin catdog
"$CATDOG_PYTHON" bench/cpus.py --catdog target/release/catdog --data "$DATA" "$@"
