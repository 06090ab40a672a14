#!/usr/bin/env bash
# Install a newer Nsight Systems (2023.4 or 2024.2) beside the primary nsys, as a reference for the tests.
#
# Why more nsys: perfctl's kernel attribution is checked against NVIDIA's own `nsys stats` on real
# exports. The primary nsys (scripts/install-nsys.sh: Debian bookworm's 2022.4) writes and reads the
# 3.0.x export schema (table EXPORT_META_DATA) and names the report `nvtxkernsum`. The later
# generations write META_DATA_EXPORT and name the report `nvtx_kern_sum` (the old name is only a
# deprecated alias there): 2023.4 writes schema 3.7.x and records worker-thread CUDA launches that
# 2022.4 loses; 2024.2 writes schema 3.11.x. Checking parity against each catches a perfctl that only
# fits one of them.
#
# How: Debian's non-free packages nsight-systems and nsight-systems-target of the suite that carries
# the wanted generation (2023.4: trixie; 2024.2: experimental, which also needs its libarrow500 and
# libparquet500) are downloaded with a private apt state (the system's own sources and package lists
# are not touched) and unpacked with `dpkg -x` into PREFIX. Nothing is apt-installed, so this bookworm
# system stays bookworm. The unpacked tree needs repairs that the installed packages would get from
# their normal /usr location:
#   * nsys looks for ../host-linux-x64 beside its real path (.../x86_64-linux-gnu/nsight-systems/
#     target-linux-x64), but the packaging puts the host side under usr/lib/nsight-systems: a link;
#   * `nsys stats` imports nsysstats and gpustats from its python/lib folder, but the package puts them
#     in /usr/lib/python3/dist-packages (on sys.path only when installed there): links beside the rest;
#   * host-linux-x64/libssh.so.4 links to ../../x86_64-linux-gnu/libssh.so.4, a file of Debian's
#     libssh-4, absent from the unpacked tree: without it the importer does not load and a capture
#     leaves only a .qdstrm. The tree's link points to this system's libssh-4 (install-nsys.sh pulls
#     it in with bookworm's nsight-systems);
#   * 2024.2: the importer needs libarrow.so.500 and libparquet.so.500, which that release moved out of
#     host-linux-x64 into the packages libarrow500/libparquet500 (usr/lib/x86_64-linux-gnu): links
#     back into host-linux-x64, where the importer's RPATH ($ORIGIN) finds them.
# The links inside the tree are relative, so a PREFIX may be moved. libpfm4 comes from install-nsys.sh.
#
# Idempotent: a working nsys of that generation already in PREFIX is kept (its repairs re-checked). The
# install is staged beside PREFIX and renamed into place at the end, so an interrupted run leaves no half
# tree. Messages go to stderr; the one line on stdout is the nsys path, for scripts:
#   PERFCTL_NSYS_2023=$(bash scripts/install-nsys-reference.sh 2023.4)
#   PERFCTL_NSYS_2024=$(bash scripts/install-nsys-reference.sh 2024.2)
#
# usage: scripts/install-nsys-reference.sh [GENERATION [PREFIX]]
#   GENERATION: 2023.4 (default) or 2024.2; PREFIX: default /opt/nsight-systems-GENERATION
# Exit 0 with the nsys path printed, 1 when it cannot be installed (the message says why).
set -euo pipefail

say() { printf 'install-nsys-reference: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

want=${1:-2023.4}    # the nsys generation this installs
case "$want" in
  2023.4) suite=trixie; extra_packages=() ;;    # trixie carries 2023.4.4
  2024.2) suite=experimental; extra_packages=(libarrow500 libparquet500) ;;    # 2024.2.3
  *) fail "unknown nsys generation '$want': this installer knows 2023.4 and 2024.2" ;;
esac
prefix=${2:-/opt/nsight-systems-$want}
prefix=${prefix%/}
mirror=${PERFCTL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
rel_target=usr/lib/x86_64-linux-gnu/nsight-systems/target-linux-x64
system_libssh=/usr/lib/x86_64-linux-gnu/libssh.so.4

sudo=""
parent=$(dirname "$prefix")
if [ "$(id -u)" != 0 ] && ! { mkdir -p "$parent" 2>/dev/null && [ -w "$parent" ]; }; then sudo="sudo"; fi

version_of() { "$1/$rel_target/nsys" --version 2>/dev/null | head -n1 || true; }

repair() {  # $1: an unpacked tree
  local root=$1 host_link="$1/usr/lib/x86_64-linux-gnu/nsight-systems/host-linux-x64" m lib so missing
  local host="$1/usr/lib/nsight-systems/host-linux-x64"
  if [ ! -e "$host_link" ]; then
    $sudo ln -sfn ../../nsight-systems/host-linux-x64 "$host_link"
    say "linked $host_link -> ../../nsight-systems/host-linux-x64 (nsys looks for its host side there)"
  fi
  lib="$host/python/lib"
  for m in nsysstats gpustats; do
    if [ ! -e "$lib/$m.py" ]; then
      $sudo ln -sf "../../../../python3/dist-packages/$m.py" "$lib/$m.py"
      say "linked $m.py into $lib (else nsys stats fails: No module named '$m')"
    fi
  done
  if [ -L "$host/libssh.so.4" ] && [ ! -e "$host/libssh.so.4" ]; then
    [ -e "$system_libssh" ] || fail "$system_libssh not found: install libssh-4 (scripts/install-nsys.sh does)"
    $sudo ln -sf "$system_libssh" "$root/usr/lib/x86_64-linux-gnu/libssh.so.4"
    say "linked the tree's libssh.so.4 to $system_libssh (else the importer does not load)"
  fi
  for so in libarrow.so.500 libparquet.so.500; do
    if [ ! -e "$host/$so" ] && [ -e "$root/usr/lib/x86_64-linux-gnu/$so" ]; then
      $sudo ln -sf "../../x86_64-linux-gnu/$so" "$host/$so"
      say "linked $so into $host (the importer finds its libraries there)"
    fi
  done
  [ -e "$host_link/QdstrmImporter" ] && [ -e "$lib/nsysstats.py" ] && [ -e "$lib/gpustats.py" ] \
    || fail "the tree in $root is incomplete (no host-linux-x64 or python modules): remove it and run again"
  missing=$(ldd "$host/QdstrmImporter" 2>/dev/null | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
  [ -z "$missing" ] || fail "the importer in $root cannot load ${missing}: captures would leave only a .qdstrm"
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
for tool in apt-get dpkg ldd; do command -v "$tool" >/dev/null 2>&1 || fail "$tool not found: this installer needs Debian's apt and dpkg"; done
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
# packages (bookworm's nsight-systems 2022.4 among them) neither leak in nor change. (experimental is
# NotAutomatic, priority 1, but as the only source its version is still the candidate.)
apt_private=(-o Dir::Etc::sourcelist=/dev/null -o "Dir::Etc::sourceparts=$work/sources"
  -o "Dir::State=$work/state" -o Dir::State::status=/dev/null -o "Dir::Cache=$work/cache"
  -o Dir::Etc::preferences=/dev/null -o "Dir::Etc::preferencesparts=$work/sources"
  -o Acquire::Languages=none)

say "reading Debian $suite non-free package lists ($mirror), with a private apt state in $work"
# apt-get update only warns (exit 0) when a source cannot be reached: look for the list itself
apt-get -qq "${apt_private[@]}" update >&2 || true
compgen -G "$work/state/lists/*_dists_${suite}_non-free_binary-amd64_Packages*" >/dev/null \
  || fail "could not read Debian $suite's non-free package list from $mirror (offline? proxy?): nothing installed"
candidate_of() { apt-cache "${apt_private[@]}" policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p'; }
candidate=$(candidate_of nsight-systems-target)
case "$candidate" in
  "$want".*) ;;
  "" | "(none)") fail "Debian $suite non-free has no nsight-systems-target: nothing installed" ;;
  *) fail "Debian $suite now carries nsight-systems $candidate, not $want.x: update this script (its generation table)" ;;
esac
packages=("nsight-systems=$candidate" "nsight-systems-target=$candidate")
for p in "${extra_packages[@]}"; do
  v=$(candidate_of "$p")
  case "$v" in "" | "(none)") fail "Debian $suite non-free has no $p (nsys $want needs it): nothing installed" ;; esac
  packages+=("$p=$v")
done

say "downloading ${packages[*]} (about 200 MB)"
(cd "$work/debs" && apt-get -qq "${apt_private[@]}" download "${packages[@]}" >&2) \
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
