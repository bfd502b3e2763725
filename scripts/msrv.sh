#!/usr/bin/env bash
# The real minimum Rust version: the highest `rust-version` declared by any
# crates.io package locked in Cargo.lock (read from the downloaded sources in
# ~/.cargo/registry/src; run `cargo fetch --locked` first on a fresh machine).
# Prints the top N (default 5) rust-versions with the packages declaring them,
# then the maximum on the last line. Compare with `rust-version` in Cargo.toml's [workspace.package].
#
#   scripts/msrv.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
top="${1:-5}"
src="${CARGO_HOME:-$HOME/.cargo}/registry/src"

# name version for every registry package in Cargo.lock
pkgs=$(awk '/^\[\[package\]\]/ { if (n != "" && reg) print n, v; n = ""; v = ""; reg = 0 }
            /^name = /    { gsub(/"/, "", $3); n = $3 }
            /^version = / { gsub(/"/, "", $3); v = $3 }
            /^source = "registry/ { reg = 1 }
            END { if (n != "" && reg) print n, v }' Cargo.lock)

rows="" missing=0 undeclared=0
while read -r name version; do
  toml=""
  for f in "$src"/*/"$name-$version"/Cargo.toml; do [[ -f "$f" ]] && { toml=$f; break; }; done
  if [[ -z "$toml" ]]; then
    echo "msrv: not downloaded: $name $version (run cargo fetch --locked)" >&2
    missing=$((missing + 1)); continue
  fi
  # rust-version of the [package] table (published manifests are normalised).
  rv=$(awk '/^\[/ { sect = $0 } sect == "[package]" && /^rust-version *=/ { gsub(/[" ]/, "", $0); sub(/^rust-version=/, "", $0); print; exit }' "$toml")
  if [[ -z "$rv" ]]; then undeclared=$((undeclared + 1)); continue; fi
  rows+="$rv $name $version"$'\n'
done <<< "$pkgs"

sorted=$(printf '%s' "$rows" | sort -k1,1Vr -k2,2)
total=$(printf '%s\n' "$pkgs" | wc -l)
echo "crates.io packages in Cargo.lock: $total ($undeclared declare no rust-version, $missing not downloaded)"
echo "highest declared rust-versions (top $top, packages grouped; 1.89 = 1.89.0):"
printf '%s\n' "$sorted" | awk -v top="$top" '
  { v = $1; if (split(v, p, ".") == 2) v = v ".0" }
  v != last { if (n) flush(); if (++groups > top) exit; last = v; n = 0; list = "" }
  { n++; if (n <= 4) list = list (n > 1 ? ", " : "") $2 " " $3 }
  END { if (n && groups <= top) flush() }
  function flush() { printf "  %-7s %3d package%s: %s%s\n", last, n, (n > 1 ? "s" : " "), list, (n > 4 ? ", ..." : "") }'
max=$(printf '%s\n' "$sorted" | head -1 | cut -d' ' -f1)
declared=$(awk '/^\[/ { sect = $0 } sect == "[workspace.package]" && /^rust-version *=/ { gsub(/[" ]/, "", $0); sub(/^rust-version=/, "", $0); print }' Cargo.toml)
echo "workspace rust-version (Cargo.toml): ${declared:-none}"
echo "minimum Rust version (highest declared by a dependency): $max"
[[ $missing == 0 ]] || exit 1
