#!/usr/bin/env bash
# Issue 16's check on a GPU host: in one call, `perfctl capture --tool all` of the full-size built-in
# DeepSeek-OCR-2 (random weights), then scripts/independent_step_timing.py timing the same generate
# calls of that run with its own CUDA events (no perfctl code), then its comparison with the clean
# pass: median decode step and time to first token, perfctl vs independent, and whether they agree
# within TOLERANCE % (default 5). The profiled passes (nsys, torch.profiler) run one batch only.
#
# usage: scripts/gpu-step-timing-check.sh PROFILES_DIR   (from the repository root)
#   DECODE=eager|static|compiled (default eager), BATCH=1 (pages per generate call), NEW_TOKENS=128,
#   PAGES=4 at BATCH=1, else 2 x BATCH (pages in the clean pass), TOLERANCE=5, FORWARD_TIMES=1 (also
#   time each forward, a diagnostic; never with compiled), MODEL=deepseek-ocr2 and DEVICE=cuda
#   (MODEL=deepseek-ocr2-tiny DEVICE=cpu runs the whole script on a CPU box)
#   results: PROFILES_DIR/step-timing-<DECODE>-<BATCH> (the run folder), ....independent.json (the
#   independent timings), ....txt (everything printed)
#   exit: the comparison's (0 within TOLERANCE %, 1 not, or the capture failed, 2 bad input)
#   needs: PYTHONPATH=src (or perfctl installed) for $PYTHON (default python3) with torch + CUDA and
#   nvtx 0.2.11; nsys as $NSYS (default: on PATH).
set -uo pipefail
usage="usage: $0 PROFILES_DIR"
out=$(realpath -m "${1:?$usage}")
here=$(dirname "$(realpath "$0")")
py=${PYTHON:-python3}
nsys=${NSYS:-$(command -v nsys)}
decode=${DECODE:-eager}
batch=${BATCH:-1}
new_tokens=${NEW_TOKENS:-128}
pages_count=${PAGES:-$([ "$batch" -eq 1 ] && echo 4 || echo $((2 * batch)))}
tolerance=${TOLERANCE:-5}
forward_times=${FORWARD_TIMES:-1}
model=${MODEL:-deepseek-ocr2}
device=${DEVICE:-cuda}
run="step-timing-$decode-$batch"
mkdir -p "$out"
summary="$out/$run.txt"
: >"$summary"
log() { echo "== $*" | tee -a "$summary"; }

# the built-in sample pages copied under new names until there are enough (12 differ)
pages="$out/pages-$pages_count"
samples=$("$py" -c 'from perfctl.resources import SAMPLE_PAGES_DIR; print(SAMPLE_PAGES_DIR)')
mkdir -p "$pages"
mapfile -t sample_files < <(ls "$samples"/*.png)
for i in $(seq 0 $((pages_count - 1))); do
  cp "${sample_files[$((i % ${#sample_files[@]}))]}" "$pages/page-$(printf %04d "$i").png"
done

log "host: $(hostname)  gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
log "nsys: $("$nsys" --version 2>&1)"
log "python: $("$py" -c 'import torch, transformers; print(torch.__version__, torch.version.cuda, transformers.__version__)' 2>&1)"
cmd=("$py" -m perfctl capture --model "$model" --device "$device" --pages "$pages" --num-pages "$pages_count"
     --batch-size "$batch" --profile-pages "$batch" --max-new-tokens "$new_tokens" --decode "$decode"
     --tool all --nsys "$nsys" --profiles "$out" --run-id "$run" --force --quiet)
log "capture: ${cmd[*]}"
SECONDS=0
"${cmd[@]}" 2>&1 | tee -a "$summary"
status=${PIPESTATUS[0]}
log "capture took ${SECONDS} s, exit $status"
[ "$status" -eq 0 ] || exit 1

extra=()
[ "$forward_times" = 1 ] && [ "$decode" != compiled ] && extra=(--forward-times)
independent=("$py" "$here/independent_step_timing.py" --run "$out/$run" --out "$out/$run.independent.json" "${extra[@]}")
log "independent timing: ${independent[*]}"
SECONDS=0
"${independent[@]}" 2>&1 | tee -a "$summary"
status=${PIPESTATUS[0]}
log "independent timing took ${SECONDS} s, exit $status"
[ "$status" -eq 0 ] || exit "$status"

compare=("$py" "$here/independent_step_timing.py" --run "$out/$run" --compare "$out/$run.independent.json"
         --require-within "$tolerance")
log "compare: ${compare[*]}"
"${compare[@]}" 2>&1 | tee -a "$summary"
exit "${PIPESTATUS[0]}"
