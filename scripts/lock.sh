#!/usr/bin/env bash
# Regenerates every lock file of the tools the test command installs
# (`make lock`). Run it on purpose, to move to newer tools; then run `make test`
# and commit the locks with what the move needed.
#
#   tools/python/NAME.in  -> tools/python/NAME.txt   exact versions + sha256 hashes
#                                                    (uv pip compile --generate-hashes),
#                                                    installed with pip --require-hashes
#   tools/npm/package.json -> tools/npm/package-lock.json (npm, integrity hashes)
#   tools/apt.txt           each Debian package at apt's candidate version now
#   tools/cargo-tools.txt   edited by hand: crate, exact version, install flags
#                           (cargo install --locked uses each crate's own Cargo.lock)
#
# Each .in file is a virtualenv of its own, because their requirements clash
# (TensorFlow 2.15's numpy<2 and protobuf 3; the SAM CLI's exact pins).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
# The Python the virtualenvs are made with (CPython 3.11 on this project's machines).
PY_VERSION="${LOCK_PYTHON_VERSION:-3.11}"
CACHE="${CATDOG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/catdog}"
UVENV="$CACHE/venv-uv"

log() { printf 'lock: %s\n' "$*" >&2; }

if [[ ! -x "$UVENV/bin/uv" || "$("$UVENV/bin/uv" --version)" != "uv $UV_VERSION"* ]]; then
  log "installing uv $UV_VERSION (PyPI) into $UVENV"
  rm -rf "$UVENV"
  python3 -m venv "$UVENV"
  "$UVENV/bin/pip" install --quiet "uv==$UV_VERSION"
fi
export SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"

for in in tools/python/*.in; do
  out="${in%.in}.txt"
  extra=()
  # Only the wheel itself is wanted from the onnxruntime lock (see its .in).
  [[ $(basename "$in") == onnxruntime.in ]] && extra+=(--no-deps)
  log "$in -> $out"
  "$UVENV/bin/uv" pip compile --quiet --generate-hashes --upgrade \
    --python-version "$PY_VERSION" --python-platform x86_64-manylinux_2_28 \
    --custom-compile-command "make lock" "${extra[@]}" "$in" -o "$out"
done

log "tools/npm/package-lock.json"
(cd tools/npm && rm -f package-lock.json && npm install --package-lock-only --ignore-scripts --silent)
log "done: review with git diff tools/, then make test"

log "tools/apt.txt (apt's candidate versions)"
apt-get update -q > /dev/null 2>&1 || log "apt-get update failed: using the package lists as they are"
tmp=$(mktemp)
while IFS= read -r line; do
  case "$line" in
    "#"* | "") echo "$line" ;;
    *)
      pkg=${line%%=*}
      ver=$(apt-cache policy "$pkg" | sed -n 's/ *Candidate: //p')
      [[ -n $ver && $ver != "(none)" ]] || { log "apt offers no $pkg"; exit 2; }
      echo "$pkg=$ver"
      ;;
  esac
done < tools/apt.txt > "$tmp"
mv "$tmp" tools/apt.txt

