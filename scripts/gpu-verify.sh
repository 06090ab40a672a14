#!/usr/bin/env bash
# Verify perfctl end to end on a GPU host: capture the full-size DeepSeek-OCR-2 architecture (random
# weights) under nsys, analyze it, and put NVIDIA's own `nsys stats -r nvtxkernsum` beside it. Also
# captures the small GPU exports used as test fixtures (tiny model; worker thread + CUDA graph).
#
# usage: scripts/gpu-verify.sh OUT_DIR [PAGES] [NEW_TOKENS]
#   needs: a CUDA GPU, torch with CUDA, perfctl importable (pip install -e . or PYTHONPATH=src), nsys
#   (on PATH or $NSYS). Results: OUT_DIR/<run>/... and OUT_DIR/summary.txt
set -uo pipefail
out=$(realpath -m "${1:?usage: $0 OUT_DIR [PAGES] [NEW_TOKENS]}")
pages=${2:-3}
tokens=${3:-64}
py=${PYTHON:-python3}
nsys=${NSYS:-$(command -v nsys)}
mkdir -p "$out"
summary="$out/summary.txt"
log() { echo "== $*" | tee -a "$summary"; }

log "host: $(hostname)  gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
log "nsys: $("$nsys" --version 2>&1)"
log "torch: $("$py" -c 'import torch, transformers; print(torch.__version__, torch.version.cuda, transformers.__version__)')"

log "capture: full-size DeepSeek-OCR-2, $pages pages x $tokens new tokens"
time "$py" -m perfctl capture --model deepseek-ocr2 --device cuda --num-pages "$pages" \
  --max-new-tokens "$tokens" --out "$out/full" --nsys "$nsys" 2>&1 | tee -a "$summary"
time "$py" -m perfctl analyze "$out/full" 2>&1 | tee -a "$summary"

log "capture: tiny model on the GPU (fixture)"
"$py" -m perfctl capture --model deepseek-ocr2-tiny --device cuda --num-pages 2 --max-new-tokens 8 \
  --out "$out/tiny" --nsys "$nsys" 2>&1 | tee -a "$summary"
"$py" -m perfctl analyze "$out/tiny" 2>&1 | tee -a "$summary"

bash "$(dirname "$0")/gpu-fixture-captures.sh" "$out" 2>&1 | tee -a "$summary"

for run in full tiny threads graphs-graph graphs-node; do
  [ -f "$out/$run/run.sqlite" ] || continue
  log "nsys stats -r nvtxkernsum: $run"
  ( cd "$out/$run" && time "$nsys" stats -r nvtxkernsum -f csv -o nvtxkernsum --force-overwrite=true run.sqlite ) \
    >>"$summary" 2>&1
done
log "done"
