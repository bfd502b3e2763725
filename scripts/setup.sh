#!/usr/bin/env bash
# Installs what catdog needs at run time and for its tests, from the package
# registries only (crates.io, PyPI): the ONNX Runtime shared library (taken from
# PyPI's onnxruntime wheel, since `ort` must not download at build time) and a
# Python virtualenv with the fixture/reference tools. Idempotent: reuses what is
# already there, so a second run takes a second.
#
# Prints nothing to stdout but `export` lines, so `eval "$(scripts/setup.sh)"` works.
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.31.1}"
CACHE="${CATDOG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/catdog}"
VENV="$CACHE/venv"
ORT_DIR="$CACHE/onnxruntime-$ORT_VERSION"
ORT_LIB="$ORT_DIR/libonnxruntime.so.$ORT_VERSION"
PY_TOOLS=(numpy pillow "onnx>=1.16" "onnxruntime==$ORT_VERSION" "moto[server]" boto3 "cfn-lint" selenium schemathesis)

log() { printf 'setup: %s\n' "$*" >&2; }
mkdir -p "$CACHE"

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV" >&2
fi
stamp="$VENV/.catdog-tools"
want="${PY_TOOLS[*]}"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  log "installing Python tools: $want"
  "$VENV/bin/pip" install --quiet "${PY_TOOLS[@]}" >&2
  echo "$want" > "$stamp"
fi

if [[ ! -f "$ORT_LIB" ]]; then
  # The wheel carries a standalone libonnxruntime.so (needs only glibc/libstdc++).
  site=$("$VENV/bin/python" -c 'import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))')
  src=$(ls "$site"/capi/libonnxruntime.so.* 2>/dev/null | head -1 || true)
  if [[ -z "$src" ]]; then
    log "downloading onnxruntime==$ORT_VERSION wheel from PyPI"
    tmp=$(mktemp -d)
    "$VENV/bin/pip" download --quiet --no-deps "onnxruntime==$ORT_VERSION" -d "$tmp" >&2
    (cd "$tmp" && python3 -m zipfile -e onnxruntime-*.whl x >&2)
    src=$(ls "$tmp"/x/onnxruntime/capi/libonnxruntime.so.* | head -1)
  fi
  mkdir -p "$ORT_DIR"
  cp "$src" "$ORT_LIB.part" && mv "$ORT_LIB.part" "$ORT_LIB"
  log "ONNX Runtime library: $ORT_LIB"
fi

# `setup.sh --lambda-lib DIR`: put the library for ORT_ARCH (x86_64 | arm64)
# into DIR, next to the Lambda bootstrap (catdog looks beside its executable).
if [[ "${1:-}" == "--lambda-lib" ]]; then
  dest="${2:?--lambda-lib needs a folder}"
  case "${ORT_ARCH:-x86_64}" in
    x86_64) cp "$ORT_LIB" "$dest/" ;;
    arm64)
      arm="$CACHE/onnxruntime-$ORT_VERSION-aarch64/libonnxruntime.so.$ORT_VERSION"
      if [[ ! -f "$arm" ]]; then
        tmp=$(mktemp -d)
        "$VENV/bin/pip" download --quiet --no-deps --only-binary=:all: --platform manylinux_2_27_aarch64 \
          --python-version 3.11 "onnxruntime==$ORT_VERSION" -d "$tmp" >&2
        (cd "$tmp" && python3 -m zipfile -e onnxruntime-*.whl x >&2)
        mkdir -p "$(dirname "$arm")"
        cp "$tmp"/x/onnxruntime/capi/libonnxruntime.so.* "$arm"
      fi
      cp "$arm" "$dest/" ;;
    *) log "unknown ORT_ARCH ${ORT_ARCH}"; exit 2 ;;
  esac
  log "ONNX Runtime library copied to $dest"
  exit 0
fi

# With CATDOG_WITH_KERAS=1 (the test command sets it): a second virtualenv
# with TensorFlow 2.15 (the last with Keras 2, which tf2onnx 1.16 supports),
# for models/keras_to_onnx.py and its test. Kept apart: its pinned protobuf
# and numpy would clash with the tools above.
if [[ "${CATDOG_WITH_KERAS:-0}" == 1 ]]; then
  KVENV="$CACHE/venv-keras"
  KTOOLS=("tensorflow-cpu==2.15.1" "tf2onnx==1.16.1" "numpy<2" "onnx==1.16.2" "protobuf==3.20.3" pillow)
  if [[ ! -x "$KVENV/bin/python" ]]; then
    python3 -m venv "$KVENV" >&2
  fi
  if [[ ! -f "$KVENV/.catdog-tools" || "$(cat "$KVENV/.catdog-tools")" != "${KTOOLS[*]}" ]]; then
    log "installing TensorFlow + tf2onnx (about a minute)"
    "$KVENV/bin/pip" install --quiet "${KTOOLS[@]}" >&2
    echo "${KTOOLS[*]}" > "$KVENV/.catdog-tools"
  fi
  echo "export CATDOG_KERAS_PYTHON='$KVENV/bin/python'"
fi

echo "export ORT_DYLIB_PATH='$ORT_LIB'"
echo "export CATDOG_PYTHON='$VENV/bin/python'"
echo "export PATH='$VENV/bin':\"\$PATH\""
