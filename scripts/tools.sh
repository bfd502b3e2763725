# Installing the locked tools (sourced by scripts/setup*.sh; `make lock` writes
# the locks). Every tool comes from a registry at the exact version a lock file
# in tools/ names, so two fresh machines a month apart run the same suite:
#   venv_from_lock VENV NAME   tools/python/NAME.txt into the virtualenv VENV
#   cargo_tool CRATE           the version tools/cargo-tools.txt names
#   npm_from_lock DIR          tools/npm/ into DIR/node_modules
#   apt_from_lock PKG...       the Debian packages at the versions tools/apt.txt names
# Logs go to stderr: the scripts that source this print only `export` lines.

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)"

tools_log() { printf 'tools: %s\n' "$*" >&2; }

# The stamp is the lock's own hash: a changed lock means a new virtualenv, made
# from nothing, so no package from an earlier lock stays behind.
venv_from_lock() {
  local venv=$1 lock="$TOOLS_DIR/python/$2.txt" want
  [[ -f $lock ]] || { tools_log "no lock file $lock"; return 2; }
  want="$(sha256sum "$lock" | cut -d' ' -f1)"
  if [[ -x "$venv/bin/python" && "$(cat "$venv/.catdog-lock" 2> /dev/null)" == "$want" ]]; then
    return 0
  fi
  tools_log "installing $(basename "$lock") (exact versions, hashes checked) into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  # --no-deps: the lock holds every package; anything missing from it fails
  # below (pip check) instead of being fetched at whatever version is newest.
  "$venv/bin/pip" install --quiet --require-hashes --no-deps -r "$lock" >&2
  "$venv/bin/pip" check >&2 || { tools_log "$lock is inconsistent: regenerate it with make lock"; return 2; }
  echo "$want" > "$venv/.catdog-lock"
}

# The version tools/cargo-tools.txt gives CRATE, then its flags.
cargo_tool_line() {
  awk -v c="$1" '$1 == c { $1 = ""; print substr($0, 2); found = 1 } END { exit !found }' \
    "$TOOLS_DIR/cargo-tools.txt"
}

cargo_tool() {
  local crate=$1 line version flags
  line=$(cargo_tool_line "$crate") || { tools_log "$crate is not in tools/cargo-tools.txt"; return 2; }
  read -r version flags <<< "$line"
  if cargo install --list 2> /dev/null | grep -qx "$crate v$version:"; then
    return 0
  fi
  # A cargo subcommand put there by other means (the machine image's
  # cargo-nextest) counts when it reports the locked version.
  if [[ $crate == cargo-* ]] && cargo "${crate#cargo-}" --version 2> /dev/null | grep -q "^$crate $version\b"; then
    return 0
  fi
  tools_log "installing $crate $version with cargo install --locked (compiles; once)"
  # shellcheck disable=SC2086 # the flags column is words
  cargo install --quiet --locked "$crate" --version "$version" $flags >&2
}

npm_from_lock() {
  local dir=$1 want
  want="$(cat "$TOOLS_DIR/npm/package.json" "$TOOLS_DIR/npm/package-lock.json" | sha256sum | cut -d' ' -f1)"
  [[ -d "$dir/node_modules" && "$(cat "$dir/.catdog-lock" 2> /dev/null)" == "$want" ]] && return 0
  command -v npm > /dev/null || { tools_log "npm is missing (apt-get install npm)"; return 2; }
  tools_log "installing tools/npm (npm ci: the lock's versions and integrity hashes) into $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$TOOLS_DIR/npm/package.json" "$TOOLS_DIR/npm/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --ignore-scripts --silent) >&2
  echo "$want" > "$dir/.catdog-lock"
}

# Debian packages at the versions locked in tools/apt.txt, from the machine's
# apt sources (needs root or sudo); a package already at its version is left.
# Debian's archive keeps no superseded version (a stable update replaces it
# within days: qemu-user's +b2 was gone the day it was locked), so where the
# locked version can no longer be had, apt's own is installed and the log
# says so, with the lock's and the installed version, rather than failing.
apt_from_lock() {
  local sudo pkg want have wanted=()
  sudo=$([[ $(id -u) == 0 ]] && echo "" || echo sudo)
  for pkg in "$@"; do
    want=$(sed -n "s/^$pkg=//p" "$TOOLS_DIR/apt.txt")
    [[ -n $want ]] || { tools_log "$pkg has no version in tools/apt.txt"; return 2; }
    have=$(dpkg-query -W -f='${Version}' "$pkg" 2> /dev/null || true)
    [[ $have == "$want" ]] || wanted+=("$pkg=$want")
  done
  ((${#wanted[@]})) || return 0
  tools_log "installing ${wanted[*]} (tools/apt.txt) with apt-get"
  $sudo apt-get install -y -q --allow-downgrades "${wanted[@]}" > /dev/null 2>&1 \
    || { $sudo apt-get update -q > /dev/null \
      && $sudo apt-get install -y -q --allow-downgrades "${wanted[@]}" > /dev/null 2>&1; } \
    || {
      $sudo apt-get install -y -q "${wanted[@]%%=*}" > /dev/null || return
      for pkg in "${wanted[@]}"; do
        have=$(dpkg-query -W -f='${Version}' "${pkg%%=*}")
        [[ $have == "${pkg#*=}" ]] \
          || tools_log "${pkg%%=*} ${pkg#*=} (tools/apt.txt) is no longer in Debian's archive: installed $have; \`make lock\` records it"
      done
    }
}
