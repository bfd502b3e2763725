#!/usr/bin/env bash
# Installs what the notebook (notebook/catdog.ipynb) needs, only what is
# missing: the evcxr Rust kernel (`cargo install evcxr_jupyter` at the version
# tools/cargo-tools.txt names, ~17 min the first time, then reused) and Jupyter
# in its own virtualenv (tools/python/notebook.txt), and registers the kernel as
# "rust" in a Jupyter data folder of ours.
#
# Prints nothing to stdout but `export` lines, so `eval "$(scripts/setup_notebook.sh)"` works.
set -euo pipefail

source "$(dirname "$0")/tools.sh"
CACHE="${CATDOG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/catdog}"
JVENV="$CACHE/venv-jupyter"
KERNELS="$CACHE/jupyter"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

mkdir -p "$CACHE"
export PATH="$CARGO_BIN:$PATH"

cargo_tool evcxr_jupyter
venv_from_lock "$JVENV" notebook

# The kernel spec, the same one `evcxr_jupyter --install` writes, but in our
# folder (found through JUPYTER_PATH) so a user's own Jupyter set-up is untouched.
spec="$KERNELS/kernels/rust"
evcxr="$CARGO_BIN/evcxr_jupyter"
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
