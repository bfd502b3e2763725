#!/usr/bin/env bash
# Installs the AWS SAM CLI (PyPI `aws-sam-cli`), for `sam build` and its test
# (tests/deploy.rs), only when missing: in its own virtualenv,
# $CACHE/venv-sam (its pinned dependencies would clash with the test tools'),
# ~45 s the first time. Only `sam` is linked into $CACHE/sam-bin for PATH, so
# that virtualenv's python3 hides no other (cargo-lambda runs zig with one).
#
# Prints nothing to stdout but `export` lines, so `eval "$(scripts/setup_sam.sh)"` works.
set -euo pipefail

SAM_VERSION="${SAM_VERSION:-1.170.0}"
CACHE="${CATDOG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/catdog}"
SVENV="$CACHE/venv-sam"
SBIN="$CACHE/sam-bin"
want="aws-sam-cli==$SAM_VERSION"

log() { printf 'setup-sam: %s\n' "$*" >&2; }
mkdir -p "$CACHE"

if [[ ! -x "$SVENV/bin/sam" || "$(cat "$SVENV/.catdog-tools" 2> /dev/null)" != "$want" ]]; then
  log "installing the SAM CLI ($want) into $SVENV (~45 s, once)"
  [[ -x "$SVENV/bin/python" ]] || python3 -m venv "$SVENV" >&2
  "$SVENV/bin/pip" install --quiet "$want" >&2
  echo "$want" > "$SVENV/.catdog-tools"
fi
mkdir -p "$SBIN"
ln -sfn "$SVENV/bin/sam" "$SBIN/sam"

echo "export CATDOG_SAM='$SBIN/sam'"
echo "export PATH='$SBIN':\"\$PATH\""
