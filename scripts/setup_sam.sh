#!/usr/bin/env bash
# Installs the AWS SAM CLI (PyPI `aws-sam-cli`, locked with its dependencies in
# tools/python/sam.txt), for `sam build` and its test (tests/it/deploy.rs), only
# when missing: in its own virtualenv, $CACHE/venv-sam (its pinned dependencies
# would clash with the test tools'), ~45 s the first time. Only `sam` is linked
# into $CACHE/sam-bin for PATH, so that virtualenv's python3 hides no other
# (cargo-lambda runs zig with one).
#
# Prints nothing to stdout but `export` lines, so `eval "$(scripts/setup_sam.sh)"` works.
set -euo pipefail

source "$(dirname "$0")/tools.sh"
CACHE="${CATDOG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/catdog}"
SVENV="$CACHE/venv-sam"
SBIN="$CACHE/sam-bin"

mkdir -p "$CACHE"
venv_from_lock "$SVENV" sam
mkdir -p "$SBIN"
ln -sfn "$SVENV/bin/sam" "$SBIN/sam"

echo "export CATDOG_SAM='$SBIN/sam'"
echo "export PATH='$SBIN':\"\$PATH\""
