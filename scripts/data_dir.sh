#!/usr/bin/env bash
# The shared data folder (photos, models): $CATDOG_DATA, else `shared/data`
# beside the checkout (../shared/data from its root). The one place that
# default is written: the test and benchmark scripts source this file, and
# the Rust tests (tests/it/support/mod.rs, data_dir) and the Python scripts
# run it.
#   source scripts/data_dir.sh    sets and exports CATDOG_DATA
#   scripts/data_dir.sh           prints it
CATDOG_DATA="${CATDOG_DATA:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/data}"
export CATDOG_DATA
# Run rather than sourced: print it.
[[ ${BASH_SOURCE[0]} != "$0" ]] || printf '%s\n' "$CATDOG_DATA"
