#!/usr/bin/env bash
# make image: the Lambda package (bootstrap + its ONNX Runtime library) as an
# OCI image, built without a container engine (umoci), for `PackageType: Image`
# and SnapStart (docs/deploy.md, "A container image without Docker").
#
#   scripts/image.sh [--arch x86_64|arm64] [--package DIR] [--model FILE [--model-sha256 HEX]] [--out DIR]
#
# --package  a built package folder (bootstrap + libonnxruntime.so.*); default:
#            `make build-CatdogFunction` into OUT/package
# --model    put the model in the image (/opt/catdog/model.onnx, MODEL_URI and
#            MODEL_SHA256 name it): no S3 fetch at init, nothing of it in /tmp;
#            --model-sha256, when given, must be its digest
# --out      default target/image/ARCH; the image is OUT/oci, tag `catdog`, and
#            the package it holds is in OUT/package (what the Dockerfile copies)
# --where    print OUT and stop
#
# The root filesystem holds only what the bootstrap needs: its C and C++
# runtimes (this machine's, or Debian's aarch64 cross runtimes for arm64, as
# found through the ELF files' NEEDED entries), the CA bundle the AWS SDK's
# TLS reads, and the label that lets Lambda snapshot it.
set -euo pipefail
log() { printf 'image: %s\n' "$*" >&2; }
die() { log "$*"; exit 2; }
# Paths given on the command line are the caller's, read from where they
# ran it: the script works from the checkout's top.
caller=$PWD
from_caller() { [[ $1 == /* ]] && echo "$1" || echo "$caller/$1"; }
cd "$(dirname "$0")/.."

arch=${ARCH:-x86_64} package="" model="" model_sha="" out="" where=""
# A flag's value is the next word, never absent nor another flag.
value() { [[ -n $2 && $2 != --* ]] || die "$1 needs $3 (see the top of $0)"; }
while (($#)); do
  case $1 in
    --arch) value "$1" "${2-}" "x86_64 or arm64"; arch=$2; shift 2 ;;
    --package) value "$1" "${2-}" "a folder"; package=$(from_caller "$2"); shift 2 ;;
    --model) value "$1" "${2-}" "a file"; model=$(from_caller "$2"); shift 2 ;;
    --model-sha256) value "$1" "${2-}" "64 hex digits"; model_sha=$2; shift 2 ;;
    --out) value "$1" "${2-}" "a folder"; out=$(from_caller "$2"); shift 2 ;;
    --where) where=1; shift ;;
    *) die "unknown argument $1 (see the top of $0)" ;;
  esac
done

case $arch in
  x86_64) oci_arch=amd64 multiarch=x86_64-linux-gnu sysroot="" libdirs=(/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu) ;;
  arm64) oci_arch=arm64 multiarch=aarch64-linux-gnu sysroot=/usr/aarch64-linux-gnu libdirs=(/usr/aarch64-linux-gnu/lib) ;;
  *) die "--arch $arch: x86_64 or arm64" ;;
esac
out=${out:-target/image/$arch}
[[ -z $where ]] || { echo "$out"; exit 0; }
if [[ -n $model ]]; then
  [[ -f $model ]] || die "--model $model: no such file"
  digest=$(sha256sum "$model" | cut -c1-64)
  if [[ -n $model_sha && ${model_sha,,} != "$digest" ]]; then
    die "--model-sha256 $model_sha is not the digest of $model ($digest)"
  fi
  model_sha=$digest
fi
# A package holds the bootstrap and exactly one ONNX Runtime library.
check_package() {
  [[ -d $1 ]] || die "--package $1: no such folder"
  shopt -s nullglob
  libraries=("$1"/libonnxruntime.so*)
  shopt -u nullglob
  [[ -x $1/bootstrap && ${#libraries[@]} == 1 ]] \
    || die "$1 must hold an executable bootstrap and one libonnxruntime.so* (it holds ${#libraries[@]})"
}
# A given package is checked before anything is installed or replaced.
[[ -z $package ]] || check_package "$package"
# readelf's words, whatever the user's language.
export LC_ALL=C
command -v umoci > /dev/null || {
  if command -v apt-get > /dev/null; then
    source scripts/tools.sh
    apt_from_lock umoci
  else
    die "umoci is not installed (Debian: apt-get install umoci; https://github.com/opencontainers/umoci)"
  fi
}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [[ -z $package ]]; then
  package=$out/package
  rm -rf "$package" && mkdir -p "$package"
  log "building the $arch package into $package"
  make --no-print-directory build-CatdogFunction ARTIFACTS_DIR="$package" ARCH="$arch" >&2
  check_package "$package"
elif [[ $(cd "$package" && pwd) != "$out/package" ]]; then
  # Where the Dockerfile reads it, whichever package went in.
  rm -rf "$out/package" && cp -r "$package" "$out/package"
fi
bootstrap=$package/bootstrap
library=${libraries[0]}

# The root filesystem, staged: what Lambda's provided.al2023 image has where
# catdog looks (the bootstrap and its library in /var/runtime).
root=$out/rootfs
rm -rf "$root"
mkdir -p "$root"/{var/runtime,var/task,tmp,etc/ssl/certs,lib/$multiarch}
chmod 1777 "$root/tmp"
cp "$bootstrap" "$library" "$root/var/runtime/"

# The shared libraries the two ELF files need, and theirs, by name.
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
find_lib() {
  local dir
  for dir in "${libdirs[@]}"; do
    [[ -e $dir/$1 ]] && { echo "$dir/$1"; return 0; }
  done
  return 1
}
declare -A seen=()
queue=("$bootstrap" "$library")
while ((${#queue[@]})); do
  file=${queue[0]} queue=("${queue[@]:1}")
  names=$(needed "$file") || die "readelf cannot read $file"
  for name in $names; do
    [[ -n ${seen[$name]:-} || $name == libonnxruntime.so* ]] && continue
    seen[$name]=1
    lib=$(find_lib "$name") || die "$name (needed by $(basename "$file")) is in none of ${libdirs[*]}"
    cp -L "$lib" "$root/lib/$multiarch/$name"
    queue+=("$root/lib/$multiarch/$name")
  done
done
interp=$(readelf -l "$bootstrap" | sed -n 's/.*interpreter: \(.*\)]/\1/p') || die "readelf cannot read $bootstrap"
[[ -n $interp ]] || die "$bootstrap names no program interpreter"
mkdir -p "$root$(dirname "$interp")"
cp -L "$sysroot$interp" "$root$interp"
# The loader finds the multiarch folder through its cache, made here for the
# image's own files (Debian's loader also searches it by default; the
# x86_64 image is tested, the arm64 one is built, not run, here).
echo "/lib/$multiarch" > "$root/etc/ld.so.conf"
ldconfig=$(PATH=$PATH:/sbin:/usr/sbin command -v ldconfig) || die "no ldconfig (Debian: libc-bin)"
"$ldconfig" -r "$root" || die "ldconfig -r $root failed"
# Names resolve as glibc's default would, written down.
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt" \
  || die "no CA bundle at /etc/ssl/certs/ca-certificates.crt (Debian: apt-get install ca-certificates)"

# The image: one layer for the runtime, one for the model (when given), so
# a new model reuses the runtime layer and the other way round.
oci=$out/oci
rm -rf "$oci"
umoci init --layout "$oci"
umoci new --image "$oci:catdog"
umoci insert --image "$oci:catdog" "$root" / > /dev/null
env=(--config.env "PATH=/usr/local/bin:/usr/bin:/bin"
  --config.env "LAMBDA_TASK_ROOT=/var/task" --config.env "LAMBDA_RUNTIME_DIR=/var/runtime")
if [[ -n $model ]]; then
  umoci insert --image "$oci:catdog" "$model" /opt/catdog/model.onnx > /dev/null
  env+=(--config.env "MODEL_URI=/opt/catdog/model.onnx" --config.env "MODEL_SHA256=$model_sha")
fi
umoci config --image "$oci:catdog" --os linux --architecture "$oci_arch" \
  --config.entrypoint /var/runtime/bootstrap --config.workingdir /var/task "${env[@]}" \
  --config.label com.amazonaws.lambda.feature.snapstart=Allow \
  --config.label org.opencontainers.image.title=catdog
umoci gc --layout "$oci"
log "built $oci (tag catdog, $oci_arch$([[ -n $model ]] && echo ', model inside'))"
echo "$oci:catdog"
