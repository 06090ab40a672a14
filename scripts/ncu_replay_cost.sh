#!/usr/bin/env bash
# Measure what Nsight Compute's replay costs per profiled kernel instance, on a GPU host: the figures
# behind capture/ncu.py's PASSES, SECONDS_PER_INSTANCE and SECONDS_PER_RUN (the estimate printed
# before an ncu pass). scripts/ncu_known_work.py runs under ncu with no kernel profiled, then with 3
# and 9 instances under perfctl's collection and 9 under ncu's full set; one line each: wall time,
# instances profiled, replay passes. Per instance = (wall(9) - wall(3)) / 6; per run = wall(3) -
# wall(none) - 3 x per instance.
#
#   usage: scripts/ncu_replay_cost.sh [NCU]      (default: $NCU, else /usr/local/cuda/bin/ncu)
# Needs a CUDA GPU, torch and nvtx 0.2.11 in python3, and perfctl's src on PYTHONPATH.
set -uo pipefail
ncu=${1:-${NCU:-/usr/local/cuda/bin/ncu}}
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$here/../src${PYTHONPATH:+:$PYTHONPATH}"
work=$(mktemp -d "${TMPDIR:-/tmp}/ncu-cost.XXXXXX")
trap 'rm -rf "$work"' EXIT
collect() { python3 -c "from perfctl.capture.ncu import collection_args, NcuSettings; print(' '.join(collection_args(NcuSettings(section_set='$1'))))"; }
include='--nvtx --nvtx-include perfctl@page/gemm/ --nvtx-include perfctl@page/elementwise/ --nvtx-include perfctl@page/graph/ --graph-profiling=node --filter-mode=per-launch-config'
run() {  # name, then ncu's arguments
  local name=$1; shift
  local t0 t1
  t0=$(date +%s%N)
  # shellcheck disable=SC2086
  "$ncu" "$@" -f -o "$work/$name" python3 "$here/ncu_known_work.py" --repeats 3 >"$work/$name.log" 2>&1
  local rc=$?
  t1=$(date +%s%N)
  printf '%-6s rc %s wall %6d ms, %s instances profiled, passes: %s\n' "$name" "$rc" $(((t1 - t0) / 1000000)) \
    "$(grep -c '==PROF== Profiling' "$work/$name.log")" "$(grep -o '[0-9]* passes' "$work/$name.log" | sort -u | tr '\n' ' ')"
}
# shellcheck disable=SC2046,SC2086
{
  run none $(collect perfctl) --nvtx --nvtx-include perfctl@nothing/
  run c3 $(collect perfctl) $include --launch-count=1
  run c9 $(collect perfctl) $include --launch-count=3
  run full9 $(collect full) $include --launch-count=3
}
