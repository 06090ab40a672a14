#!/usr/bin/env bash
# Install the Nsight Systems CLI (nsys) when it is not already usable.
#
# On Debian/Ubuntu it installs Debian's non-free packages nsight-systems-target (the collector, `nsys`)
# and nsight-systems (the importer and exporter that turn a capture into .nsys-rep / .sqlite), then
# repairs what that packaging leaves broken (see ../shared/docs/nsys-facts.md and docs/nsys.md):
#   * nsys looks for ../host-linux-x64/QdstrmImporter beside its own real path, but Debian puts the
#     host side under /usr/lib/nsight-systems: without a link only a .qdstrm is written;
#   * QdstrmImporter needs libpfm.so.4 (libpfm4);
#   * nsys 2022.4 ships CUPTI only up to 11.8: against a CUDA 12/13 program it records NVTX but no
#     kernels, so the newest CUPTI found on the host (toolkit or pip wheel) is linked in.
#
# Idempotent: a second run changes nothing and says so. A usable nsys already on PATH (or $NSYS) is
# kept, whatever its version (a kept 2022.4 still gets the host's newer CUPTI linked in).
# Exit 0 when a working nsys is available afterwards, 1 otherwise.
#
# usage: scripts/install-nsys.sh [--check]     (--check: report only, install nothing)
set -euo pipefail

say() { printf 'install-nsys: %s\n' "$*"; }
check_only=0
[ "${1:-}" = "--check" ] && check_only=1
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

existing=""
if [ -n "${NSYS:-}" ] && [ -x "${NSYS}" ]; then existing=$NSYS
elif command -v nsys >/dev/null 2>&1; then existing=$(command -v nsys); fi

# The importer must sit at ../host-linux-x64/QdstrmImporter relative to nsys's real directory.
importer_for() { local real; real=$(dirname "$(readlink -f "$1")"); echo "$real/../host-linux-x64/QdstrmImporter"; }

link_cupti() {  # $1: nsys target directory
  local target=$1 c v linked=0
  local candidates=(/usr/local/cuda/targets/x86_64-linux/lib/libcupti.so.* /usr/local/cuda/extras/CUPTI/lib64/libcupti.so.*)
  local wheel_dir
  wheel_dir=$(python3 -c 'import nvidia.cuda_cupti, os; print(os.path.dirname(nvidia.cuda_cupti.__file__) + "/lib")' 2>/dev/null || true)
  [ -n "$wheel_dir" ] && candidates+=("$wheel_dir"/libcupti.so.*)
  for c in "${candidates[@]}"; do
    [ -e "$c" ] || continue
    v=$(basename "$c" | sed -n 's/^libcupti\.so\.\([0-9][0-9]*\).*/\1/p')
    [ -n "$v" ] && [ "$v" -ge 12 ] || continue
    if [ ! -e "$target/libcupti.so.$v" ]; then
      $sudo ln -sf "$(readlink -f "$c")" "$target/libcupti.so.$v"
      $sudo ln -sf "$(readlink -f "$c")" "$target/libcupti.so.$v.0"
      say "linked CUDA $v CUPTI ($c) into $target so kernels of CUDA $v programs are traced"
      linked=1
    fi
  done
  [ $linked = 1 ] || say "no CUPTI newer than nsys's own needed linking (none found, or already linked)"
}

if [ -n "$existing" ]; then
  imp=$(importer_for "$existing")
  if [ -x "$imp" ] || "$existing" --version 2>/dev/null | grep -qv '2022\.4'; then
    say "keeping the nsys already installed: $existing ($("$existing" --version 2>&1 | head -n1))"
    [ -x "$imp" ] || say "warning: no importer at $imp; captures may leave only a .qdstrm"
    # a kept 2022.4 still needs the host's newer CUPTI to trace CUDA 12/13 programs' kernels
    if [ $check_only = 0 ] && "$existing" --version 2>/dev/null | grep -q '2022\.4'; then
      link_cupti "$(dirname "$(readlink -f "$existing")")"
    fi
    exit 0
  fi
  say "found $existing but its importer is missing ($imp): repairing"
fi

if [ $check_only = 1 ]; then say "nsys is not installed"; exit 1; fi

if ! command -v apt-get >/dev/null 2>&1; then
  say "no apt-get here: install Nsight Systems from https://developer.nvidia.com/nsight-systems and put nsys on PATH"
  exit 1
fi
if ! apt-cache policy nsight-systems-target 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  . /etc/os-release
  codename=${VERSION_CODENAME:-bookworm}
  if [ "${ID:-}" = debian ]; then
    src=/etc/apt/sources.list.d/perfctl-debian-nonfree.sources
    say "enabling Debian contrib/non-free for $codename in $src"
    $sudo tee "$src" >/dev/null <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  else
    say "enabling the multiverse component (Ubuntu)"
    $sudo add-apt-repository -y multiverse >/dev/null
  fi
  $sudo apt-get update -qq
fi

say "installing nsight-systems-target nsight-systems libpfm4 (about 170 MB download)"
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  nsight-systems-target nsight-systems libpfm4 >/dev/null

nsys_bin=$(command -v nsys || true)
if [ -z "$nsys_bin" ]; then say "apt installed the packages but no nsys is on PATH"; exit 1; fi
target_dir=$(dirname "$(readlink -f "$nsys_bin")")
host_link="$target_dir/../host-linux-x64"
if [ ! -e "$host_link/QdstrmImporter" ]; then
  host_dir=""
  for d in /usr/lib/nsight-systems/host-linux-x64 /usr/lib/x86_64-linux-gnu/nsight-systems/host-linux-x64; do
    [ -x "$d/QdstrmImporter" ] && host_dir=$d && break
  done
  if [ -z "$host_dir" ]; then say "QdstrmImporter not found after install"; exit 1; fi
  $sudo ln -sfn "$host_dir" "$host_link"
  say "linked the importer: $host_link -> $host_dir (Debian packaging bug)"
else
  say "importer already reachable at $host_link"
fi
link_cupti "$target_dir"
say "ready: $nsys_bin ($("$nsys_bin" --version 2>&1 | head -n1))"
