#!/usr/bin/env bash
# Installs what catdog needs, from the package registries only (PyPI, crates.io).
# Idempotent: reuses what is already there, so a second run takes a fraction of a second.
#
#   scripts/setup.sh                  what serving needs: the ONNX Runtime shared library
#                                     (`make setup`, `make serve`, `make install`)
#   scripts/setup.sh --test-tools     also the tests' Python virtualenv (tools/python/tests.in: numpy,
#                                     Pillow, onnx, onnxruntime, moto, cfn-lint, selenium, schemathesis,
#                                     tritonclient, kserve, …), s3s-fs (cargo install) and jQuery (npm)
#   scripts/setup.sh --lambda-lib DIR copy the library for ORT_ARCH (x86_64 | arm64) into DIR
#
# Every tool is installed at the exact version, and with the hashes, of a lock
# file in tools/ (scripts/tools.sh; `make lock` regenerates them).
#
# The library comes from PyPI's onnxruntime wheel (`ort` is built with
# `load-dynamic`, so nothing is downloaded at build time): `pip download` of the
# one wheel locked in tools/python/onnxruntime.txt (its hash checked) with the
# system python3, and only `onnxruntime/capi/libonnxruntime.so.*`
# taken out of it, into $CACHE/onnxruntime-$ORT_VERSION/ (where catdog finds it by
# itself). No virtualenv is created for that.
#
# CATDOG_WITH_KERAS=1 (the test command and `make bench` set it) adds a second
# virtualenv with TensorFlow + tf2onnx, and implies --test-tools.
#
# Prints nothing to stdout but `export` lines, so `eval "$(scripts/setup.sh)"` works:
# ORT_DYLIB_PATH always; CATDOG_PYTHON and PATH with the test tools;
# CATDOG_KERAS_PYTHON with CATDOG_WITH_KERAS=1.
set -euo pipefail

source "$(dirname "$0")/tools.sh"
ORT_LOCK="$TOOLS_DIR/python/onnxruntime.txt"
# The one pin of the ONNX Runtime version: its lock file.
ORT_VERSION=$(sed -n 's/^onnxruntime==\([0-9.]*\).*/\1/p' "$ORT_LOCK")
[[ -n $ORT_VERSION ]] || { printf 'setup: no onnxruntime==VERSION in %s\n' "$ORT_LOCK" >&2; exit 2; }
# Wheels are per Python version but carry the same libonnxruntime.so; this only
# picks which one to fetch, so the system python3's own version does not matter.
ORT_WHEEL_PYTHON="${ORT_WHEEL_PYTHON:-3.12}"
CACHE="${CATDOG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/catdog}"
VENV="$CACHE/venv"
ORT_DIR="$CACHE/onnxruntime-$ORT_VERSION"
ORT_LIB="$ORT_DIR/libonnxruntime.so.$ORT_VERSION"

log() { printf 'setup: %s\n' "$*" >&2; }
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; }

test_tools=0
lambda_dest=""
[[ "${CATDOG_WITH_KERAS:-0}" == 1 ]] && test_tools=1
while (($#)); do
  case "$1" in
    --test-tools) test_tools=1 ;;
    --lambda-lib) lambda_dest="${2:?--lambda-lib needs a folder}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) log "unknown argument: $1"; usage; exit 2 ;;
  esac
  shift
done

mkdir -p "$CACHE"
TMP=""
cleanup() { [[ -z "$TMP" ]] || rm -rf "$TMP"; }
trap cleanup EXIT
# Scratch space on the cache's file system, so the final `mv` is atomic and a
# half-written library never carries the name catdog looks for.
tmpdir() { [[ -n "$TMP" ]] || TMP=$(mktemp -d "$CACHE/.setup-tmp.XXXXXX"); }

# pip to download with: the system python3's (`pip download` installs nothing),
# else the test virtualenv's, else a bare throwaway virtualenv (ensurepip).
PIP=()
pip_cmd() {
  ((${#PIP[@]})) && return 0
  if python3 -m pip --version > /dev/null 2>&1; then
    PIP=(python3 -m pip)
  elif [[ -x "$VENV/bin/pip" ]]; then
    PIP=("$VENV/bin/pip")
  else
    tmpdir
    log "python3 has no pip: making a bare virtualenv for pip (or: apt-get install python3-pip)"
    python3 -m venv "$TMP/pip-venv" >&2 || { log "cannot get pip: apt-get install python3-pip (or python3-venv)"; exit 2; }
    PIP=("$TMP/pip-venv/bin/python" -m pip)
  fi
}

# fetch_lib ARCH DEST: libonnxruntime.so for ARCH (x86_64 | aarch64) from the
# manylinux wheel on PyPI, written to DEST.
fetch_lib() {
  local arch=$1 dest=$2 dl
  pip_cmd
  tmpdir
  dl=$(mktemp -d "$TMP/wheel.XXXXXX")
  log "downloading the onnxruntime==$ORT_VERSION wheel ($arch) from PyPI"
  "${PIP[@]}" download --quiet --no-deps --only-binary=:all: --require-hashes \
    --platform "manylinux_2_28_$arch" --python-version "$ORT_WHEEL_PYTHON" \
    -r "$ORT_LOCK" -d "$dl" >&2
  mkdir -p "$(dirname "$dest")"
  python3 - "$arch" "$dest" "$dl"/onnxruntime-*.whl <<'EOF'
import os, re, shutil, sys, zipfile
arch, dest, wheel = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if re.fullmatch(r"onnxruntime/capi/libonnxruntime\.so\.[0-9.]+", n)]
    if len(names) != 1:
        sys.exit(f"setup: {os.path.basename(wheel)} holds no single onnxruntime/capi/libonnxruntime.so.*: {names}")
    part = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.part{os.getpid()}")
    with z.open(names[0]) as src, open(part, "wb") as out:
        shutil.copyfileobj(src, out)
with open(part, "rb") as f:
    head = f.read(20)
machine = {"x86_64": 62, "aarch64": 183}[arch]
if head[:4] != b"\x7fELF" or int.from_bytes(head[18:20], "little") != machine:
    os.unlink(part)
    sys.exit(f"setup: the library in {os.path.basename(wheel)} is not an {arch} ELF file")
os.chmod(part, 0o755)
os.replace(part, dest)
EOF
}

host_arch=$(uname -m)
case "$host_arch" in
  x86_64 | aarch64) ;;
  arm64) host_arch=aarch64 ;;
  *) log "no onnxruntime wheel for this machine ($host_arch)"; exit 2 ;;
esac

if ((test_tools)); then
  venv_from_lock "$VENV" tests
  # s3s-fs: the S3 server of the simulated S3 (tests/it/s3_sim.rs, `make bench`), which
  # reads only the range asked for. A few minutes of compiling, once. The tests
  # also look in cargo's bin folder.
  cargo_tool s3s-fs
fi

if [[ ! -f "$ORT_LIB" ]]; then
  # The test virtualenv's onnxruntime carries the very same library: reuse it if there.
  src=""
  for f in "$VENV"/lib/python3*/site-packages/onnxruntime/capi/"libonnxruntime.so.$ORT_VERSION"; do
    [[ -f "$f" ]] && { src=$f; break; }
  done
  if [[ -n "$src" ]]; then
    mkdir -p "$ORT_DIR"
    cp "$src" "$ORT_DIR/.libonnxruntime.part$$" && mv "$ORT_DIR/.libonnxruntime.part$$" "$ORT_LIB"
  else
    fetch_lib "$host_arch" "$ORT_LIB"
  fi
  log "ONNX Runtime library: $ORT_LIB"
fi

# --lambda-lib DIR: the library for ORT_ARCH into DIR, next to the Lambda
# bootstrap (catdog looks beside its executable). Another architecture's
# library is cached in $CACHE/arch-ARCH/, out of the onnxruntime-*/ folders
# catdog searches for its own.
if [[ -n "$lambda_dest" ]]; then
  case "${ORT_ARCH:-x86_64}" in
    x86_64 | amd64) want_arch=x86_64 ;;
    arm64 | aarch64) want_arch=aarch64 ;;
    *) log "unknown ORT_ARCH ${ORT_ARCH} (x86_64 | arm64)"; exit 2 ;;
  esac
  lib="$ORT_LIB"
  if [[ "$want_arch" != "$host_arch" ]]; then
    lib="$CACHE/arch-$want_arch/onnxruntime-$ORT_VERSION/libonnxruntime.so.$ORT_VERSION"
    [[ -f "$lib" ]] || fetch_lib "$want_arch" "$lib"
  fi
  mkdir -p "$lambda_dest"
  cp "$lib" "$lambda_dest/"
  log "ONNX Runtime library ($want_arch) copied to $lambda_dest"
  exit 0
fi

# With CATDOG_WITH_KERAS=1: a second virtualenv with TensorFlow 2.15 (the last
# with Keras 2, which tf2onnx 1.16 supports), for models/keras_to_onnx.py and
# its test. Kept apart: its pinned protobuf and numpy would clash with the tools above.
if [[ "${CATDOG_WITH_KERAS:-0}" == 1 ]]; then
  KVENV="$CACHE/venv-keras"
  venv_from_lock "$KVENV" keras
  echo "export CATDOG_KERAS_PYTHON='$KVENV/bin/python'"
fi

# The tutorial's front end uses jQuery 3.3.1: from npm, for tests/it/browser.rs's
# page that makes the tutorial's exact call.
if ((test_tools)); then
  NPMDIR="$CACHE/npm-tools"
  npm_from_lock "$NPMDIR"
  echo "export CATDOG_JQUERY='$NPMDIR/node_modules/jquery/dist/jquery.min.js'"
fi

echo "export ORT_DYLIB_PATH='$ORT_LIB'"
if ((test_tools)); then
  echo "export CATDOG_PYTHON='$VENV/bin/python'"
  echo "export PATH='$VENV/bin':\"\$PATH\""
fi
