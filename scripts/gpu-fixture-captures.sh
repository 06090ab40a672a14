#!/usr/bin/env bash
# Capture the small GPU programs behind the attribution fixtures (worker-thread launches; CUDA graph
# replays traced per graph and per node) with plain `nsys profile`, one folder each under OUT_DIR.
#   usage: scripts/gpu-fixture-captures.sh OUT_DIR      (needs a CUDA GPU, torch, nvtx; nsys or $NSYS)
set -uo pipefail
out=$(realpath -m "${1:?usage: $0 OUT_DIR}")
py=${PYTHON:-python3}
nsys=${NSYS:-$(command -v nsys)}
prog="$(cd "$(dirname "$0")" && pwd)/fixture_programs/threads_and_graphs.py"
capture() {  # name, program part, extra nsys options...
  local name=$1 part=$2; shift 2
  mkdir -p "$out/$name"
  "$nsys" profile --trace=cuda,nvtx,osrt --sample=none --cpuctxsw=none "$@" --export=sqlite \
    --force-overwrite=true -o "$out/$name/run" "$py" "$prog" "$part" >"$out/$name/nsys.log" 2>&1
  echo "== $name ($part $*): exit $?, files: $(cd "$out/$name" && ls | tr '\n' ' ')"
  grep -a -E "FATAL|Error|error" "$out/$name/nsys.log" | head -n 3
}
capture threads threads
capture graphs-graph graphs --cuda-graph-trace=graph
capture graphs-node graphs --cuda-graph-trace=node
capture all-node all --cuda-graph-trace=node
capture streams streams
