#!/usr/bin/env bash
# Install a second, newer Nsight Systems (2023.4) beside the primary nsys, as a reference for the tests.
#
# Why a second nsys: perfctl's kernel attribution is checked against NVIDIA's own `nsys stats` on
# real exports. The primary nsys (scripts/install-nsys.sh: Debian bookworm's 2022.4) writes and reads
# the 3.0.x export schema (table EXPORT_META_DATA) and names the report `nvtxkernsum`. nsys 2023.4
# belongs to the other generation: it writes schema 3.7.x (table META_DATA_EXPORT), records worker-
# thread CUDA launches that 2022.4 loses, and names the report `nvtx_kern_sum` (the old name is only a
# deprecated alias there). Checking parity against both catches a perfctl that only fits one of them.
#
# How: Debian trixie's non-free packages nsight-systems and nsight-systems-target are downloaded with
# a private apt state (the system's own sources and package lists are not touched) and unpacked with
# `dpkg -x` into PREFIX. Nothing is apt-installed, so this bookworm system stays bookworm. The unpacked
# tree needs two repairs that the installed packages would get from their normal /usr location:
#   * nsys looks for ../host-linux-x64 beside its real path (.../x86_64-linux-gnu/nsight-systems/
#     target-linux-x64), but the packaging puts the host side under usr/lib/nsight-systems: a link;
#   * `nsys stats` imports nsysstats and gpustats from its python/lib folder, but the package puts them
#     in /usr/lib/python3/dist-packages (on sys.path only when installed there): links beside the rest.
# The links are relative, so a PREFIX may be moved. libpfm4 (needed by nsys) comes from install-nsys.sh.
#
# Idempotent: a working 2023.4 already in PREFIX is kept (its repairs re-checked). The install is
# staged beside PREFIX and renamed into place at the end, so an interrupted run leaves no half tree.
# Messages go to stderr; the one line on stdout is the nsys path, for scripts:
#   PERFCTL_NSYS_2023=$(bash scripts/install-nsys-reference.sh)
#
# usage: scripts/install-nsys-reference.sh [PREFIX]      (default /opt/nsight-systems-2023.4)
# Exit 0 with the nsys path printed, 1 when it cannot be installed (the message says why).
set -euo pipefail

say() { printf 'install-nsys-reference: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

prefix=${1:-/opt/nsight-systems-2023.4}
prefix=${prefix%/}
want=2023.4    # the nsys generation this installs; the trixie suite carries 2023.4.4
suite=trixie
mirror=${PERFCTL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
rel_target=usr/lib/x86_64-linux-gnu/nsight-systems/target-linux-x64

sudo=""
parent=$(dirname "$prefix")
if [ "$(id -u)" != 0 ] && ! { mkdir -p "$parent" 2>/dev/null && [ -w "$parent" ]; }; then sudo="sudo"; fi

version_of() { "$1/$rel_target/nsys" --version 2>/dev/null | head -n1 || true; }

repair() {  # $1: an unpacked tree
  local root=$1 host_link="$1/usr/lib/x86_64-linux-gnu/nsight-systems/host-linux-x64" m lib
  if [ ! -e "$host_link" ]; then
    $sudo ln -sfn ../../nsight-systems/host-linux-x64 "$host_link"
    say "linked $host_link -> ../../nsight-systems/host-linux-x64 (nsys looks for its host side there)"
  fi
  lib="$root/usr/lib/nsight-systems/host-linux-x64/python/lib"
  for m in nsysstats gpustats; do
    if [ ! -e "$lib/$m.py" ]; then
      $sudo ln -sf "../../../../python3/dist-packages/$m.py" "$lib/$m.py"
      say "linked $m.py into $lib (else nsys stats fails: No module named '$m')"
    fi
  done
  [ -e "$host_link/QdstrmImporter" ] && [ -e "$lib/nsysstats.py" ] && [ -e "$lib/gpustats.py" ] \
    || fail "the tree in $root is incomplete (no host-linux-x64 or python modules): remove it and run again"
}

if [ -d "$prefix" ] && [ -z "$(ls -A "$prefix")" ]; then
  $sudo rmdir "$prefix"    # an empty folder made ready for the install
elif [ -e "$prefix" ]; then
  have=$(version_of "$prefix")
  case "$have" in
    *" $want."*)
      repair "$prefix"
      say "keeping the nsys $want already in $prefix ($have)"
      echo "$prefix/$rel_target/nsys"
      exit 0 ;;
    *) fail "$prefix exists but holds no working nsys $want (${have:-no nsys}): remove it or name another prefix" ;;
  esac
fi

[ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] || fail "only amd64 is supported (Debian's nsight-systems is x86-64)"
for tool in apt-get dpkg; do command -v "$tool" >/dev/null 2>&1 || fail "$tool not found: this installer needs Debian's apt and dpkg"; done
[ -r "$keyring" ] || fail "$keyring not found (package debian-archive-keyring): cannot verify Debian's archive"

work=$(mktemp -d "${TMPDIR:-/tmp}/nsys-reference.XXXXXX")
stage=""
cleanup() { rm -rf "$work"; if [ -n "$stage" ]; then $sudo rm -rf "$stage"; fi; }
trap cleanup EXIT
mkdir -p "$work/sources" "$work/state/lists/partial" "$work/cache/archives/partial" "$work/debs"
# apt run as root fetches as the unprivileged _apt user: it must be able to reach and write these
chmod 755 "$work"
if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$work/debs"; fi
cat >"$work/sources/$suite-non-free.sources" <<SRC
Types: deb
URIs: $mirror
Suites: $suite
Components: non-free
Signed-By: $keyring
SRC
# Only this one source, no pins, and an empty dpkg status: the system's sources, lists and installed
# packages (bookworm's nsight-systems 2022.4 among them) neither leak in nor change.
apt_private=(-o Dir::Etc::sourcelist=/dev/null -o "Dir::Etc::sourceparts=$work/sources"
  -o "Dir::State=$work/state" -o Dir::State::status=/dev/null -o "Dir::Cache=$work/cache"
  -o Dir::Etc::preferences=/dev/null -o "Dir::Etc::preferencesparts=$work/sources"
  -o Acquire::Languages=none)

say "reading Debian $suite non-free package lists ($mirror), with a private apt state in $work"
# apt-get update only warns (exit 0) when a source cannot be reached: look for the list itself
apt-get -qq "${apt_private[@]}" update >&2 || true
compgen -G "$work/state/lists/*_dists_${suite}_non-free_binary-amd64_Packages*" >/dev/null \
  || fail "could not read Debian $suite's non-free package list from $mirror (offline? proxy?): nothing installed"
candidate=$(apt-cache "${apt_private[@]}" policy nsight-systems-target 2>/dev/null | sed -n 's/^ *Candidate: //p')
case "$candidate" in
  "$want".*) ;;
  "" | "(none)") fail "Debian $suite non-free has no nsight-systems-target: nothing installed" ;;
  *) fail "Debian $suite now carries nsight-systems $candidate, not $want.x: update this script (want=)" ;;
esac

say "downloading nsight-systems and nsight-systems-target $candidate (about 190 MB)"
(cd "$work/debs" && apt-get -qq "${apt_private[@]}" download \
  "nsight-systems=$candidate" "nsight-systems-target=$candidate" >&2) \
  || fail "downloading nsight-systems $candidate from $mirror failed: nothing installed"

stage=$(dirname "$prefix")/.$(basename "$prefix").partial.$$
$sudo rm -rf "$stage"
$sudo mkdir -p "$stage"
for deb in "$work"/debs/*.deb; do
  say "unpacking $(basename "$deb")"
  $sudo dpkg -x "$deb" "$stage"
done
repair "$stage"
have=$(version_of "$stage")
case "$have" in *" $want."*) ;; *) fail "the unpacked nsys does not run (${have:-no output}): nothing installed" ;; esac
$sudo mv -T "$stage" "$prefix"
stage=""
say "installed $have in $prefix"
echo "$prefix/$rel_target/nsys"
