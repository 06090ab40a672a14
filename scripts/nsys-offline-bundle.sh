#!/usr/bin/env bash
# Build a relocatable Nsight Systems bundle of a reference generation (2023.4, 2024.2) for a GPU host
# without network: a .tar.xz holding nsys-GENERATION/target-linux-x64 (the collector, `nsys`) and the
# part of nsys-GENERATION/host-linux-x64 that `nsys profile --export=sqlite`, `nsys export` and
# `nsys stats` need (QdstrmImporter, libexporter.so and the libraries they load, libpfm and libssh from
# this system, 2024.2's libarrow/libparquet, the report scripts and their python modules).
#
# It packs the tree scripts/install-nsys-reference.sh unpacks (installing it first when missing), less
# what a CUDA 12/13 capture does not use: CUPTI for CUDA 10/11 and CollectX (InfiniBand metrics).
# On the GPU host: `source scripts/gpu-host-nsys.sh OUT.tar.xz` unpacks it to /opt/nsys-GENERATION and
# copies the host's own CUPTI (CUDA 12/13) in beside nsys's.
#
# usage: scripts/nsys-offline-bundle.sh GENERATION OUT.tar.xz [PREFIX]
#   PREFIX: the unpacked reference tree (default /opt/nsight-systems-GENERATION)
set -euo pipefail
say() { printf 'nsys-offline-bundle: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

generation=${1:?usage: $0 GENERATION OUT.tar.xz [PREFIX]}
out=$(realpath -m "${2:?usage: $0 GENERATION OUT.tar.xz [PREFIX]}")
prefix=${3:-/opt/nsight-systems-$generation}
here=$(cd "$(dirname "$0")" && pwd)
nsys=$(bash "$here/install-nsys-reference.sh" "$generation" "$prefix")
target=$(dirname "$nsys")
host=$(readlink -f "$target/../host-linux-x64")

work=$(mktemp -d "${TMPDIR:-/tmp}/nsys-bundle.XXXXXX")
trap 'rm -rf "$work"' EXIT
top="$work/nsys-$generation"
mkdir -p "$top/host-linux-x64"
cp -a "$target" "$top/"
rm -rf "$top/target-linux-x64/CollectX"
find "$top/target-linux-x64" -maxdepth 1 -name 'libcupti.so.1[01].*' -delete

# the importer and the exporter, with every library they load from nsys's own tree (links resolved:
# libssh, libarrow and libparquet are links out of host-linux-x64)
for f in QdstrmImporter libexporter.so; do
  cp -L "$host/$f" "$top/host-linux-x64/"
  LD_LIBRARY_PATH="$host" ldd "$host/$f" | awk -v h="$host/" 'index($3, h) == 1 {print $3}'
done | sort -u | xargs -r -I{} cp -L {} "$top/host-linux-x64/"
pfm=$(ldconfig -p | awk '/libpfm\.so\.4 / {print $NF; exit}')
[ -n "$pfm" ] || fail "libpfm.so.4 not found (install libpfm4: scripts/install-nsys.sh does)"
cp -L "$pfm" "$top/host-linux-x64/libpfm.so.4"
for so in libssh.so libpfm.so.4; do
  [ -e "$top/host-linux-x64/$so" ] || fail "$so is missing from the bundle"
done
# `nsys stats`: the report scripts, the rules, and the modules they import (links resolved)
mkdir -p "$top/host-linux-x64/python"
cp -rL "$host/reports" "$host/rules" "$top/host-linux-x64/"
cp -rL "$host/python/lib" "$top/host-linux-x64/python/"
find "$top" -name __pycache__ -prune -exec rm -rf {} +

missing=$(LD_LIBRARY_PATH= ldd "$top/host-linux-x64/QdstrmImporter" | awk '/not found/ {print $1}' | tr '\n' ' ')
[ -z "$missing" ] || fail "the bundled importer cannot load ${missing}"
"$top/target-linux-x64/nsys" --version >&2
tar -C "$work" -cf - "nsys-$generation" | xz -6 -T0 >"$out"
say "wrote $out ($(du -h "$out" | cut -f1))"
