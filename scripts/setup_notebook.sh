#!/usr/bin/env bash
# Installs what the notebook (notebook/catdog.ipynb) needs, only what is
# missing: the evcxr Rust kernel (`cargo install evcxr_jupyter`, ~17 min the
# first time, then reused) and Jupyter in its own virtualenv, and registers the
# kernel as "rust" in a Jupyter data folder of ours.
#
# Prints nothing to stdout but `export` lines, so `eval "$(scripts/setup_notebook.sh)"` works.
set -euo pipefail

EVCXR_VERSION="${EVCXR_VERSION:-0.22.0}"
CACHE="${CATDOG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/catdog}"
JVENV="$CACHE/venv-jupyter"
KERNELS="$CACHE/jupyter"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
JTOOLS=(jupyter nbclient nbconvert ipykernel)

log() { printf 'setup-notebook: %s\n' "$*" >&2; }
mkdir -p "$CACHE"
export PATH="$CARGO_BIN:$PATH"

# evcxr_jupyter has no --version; any installed one is used as it is.
if ! command -v evcxr_jupyter > /dev/null; then
  log "building evcxr_jupyter $EVCXR_VERSION (cargo install, ~17 min on 2 cores; once)"
  cargo install evcxr_jupyter --version "$EVCXR_VERSION" --locked --quiet >&2
fi

if [[ ! -x "$JVENV/bin/jupyter-nbconvert" || "$(cat "$JVENV/.catdog-tools" 2>/dev/null)" != "${JTOOLS[*]}" ]]; then
  log "installing Jupyter into $JVENV"
  [[ -x "$JVENV/bin/python" ]] || python3 -m venv "$JVENV" >&2
  "$JVENV/bin/pip" install --quiet "${JTOOLS[@]}" >&2
  echo "${JTOOLS[*]}" > "$JVENV/.catdog-tools"
fi

# The kernel spec, the same one `evcxr_jupyter --install` writes, but in our
# folder (found through JUPYTER_PATH) so a user's own Jupyter set-up is untouched.
spec="$KERNELS/kernels/rust"
evcxr=$(command -v evcxr_jupyter)
mkdir -p "$spec"
cat > "$spec/kernel.json" <<JSON
{
  "argv": ["$evcxr", "--control_file", "{connection_file}"],
  "display_name": "Rust",
  "language": "rust",
  "interrupt_mode": "message"
}
JSON

echo "export CATDOG_JUPYTER='$JVENV/bin/jupyter'"
echo "export JUPYTER_PATH='$KERNELS'\${JUPYTER_PATH:+:\$JUPYTER_PATH}"
echo "export PATH='$JVENV/bin:$CARGO_BIN':\"\$PATH\""
