#!/usr/bin/env bash
# `perfctl capture --batch-size N` on a GPU host for several N, one after the other: the full-size
# DeepSeek-OCR-2 (random weights), every pass (--tool all), 2 batches of N pages per point in the
# clean pass (4 pages at N = 1), the profiled passes (nsys, torch.profiler) one batch; then
# `perfctl analyze --format json` of each and one summary line per point: the capture's status and
# time, the clean pass's throughput (pages/s, new tokens/s, decode tokens/s), time to first token
# and per output token (p50), decode's time per step (p50), MFU per stage and decode MBU.
#
# The pages: the built-in sample pages copied under new names until there are enough (12 differ;
# copies are the same images again, as a server sees the same kind of page again).
#
# usage: scripts/gpu-batch-sweep.sh PROFILES_DIR   (from the repository root)
#   (TTFT, TPOT: p50 of time to first token and per output token; step: decode step p50)
#   BATCHES="1 4 16 64" (default), DECODE=eager|static|compiled (default eager), NEW_TOKENS=32,
#   MODEL=deepseek-ocr2 and DEVICE=cuda (MODEL=deepseek-ocr2-tiny DEVICE=cpu tries the script anywhere)
#   results: PROFILES_DIR/batch-<DECODE>-<N> (run folders), PROFILES_DIR/batch-<DECODE>-<N>.json
#   (analysis), PROFILES_DIR/batch-sweep-<DECODE>.txt (the summary, also printed)
#   needs: PYTHONPATH=src (or perfctl installed) for $PYTHON (default python3) with torch + CUDA and
#   nvtx 0.2.11; nsys as $NSYS (default: on PATH).
set -uo pipefail
usage="usage: $0 PROFILES_DIR"
out=$(realpath -m "${1:?$usage}")
py=${PYTHON:-python3}
nsys=${NSYS:-$(command -v nsys)}
batches=${BATCHES:-1 4 16 64}
decode=${DECODE:-eager}
new_tokens=${NEW_TOKENS:-32}
model=${MODEL:-deepseek-ocr2}
device=${DEVICE:-cuda}
mkdir -p "$out"
summary="$out/batch-sweep-$decode.txt"
: >"$summary"
log() { echo "== $*" | tee -a "$summary"; }

most=4
for n in $batches; do [ $((2 * n)) -gt "$most" ] && most=$((2 * n)); done
pages="$out/pages-$most"
samples=$("$py" -c 'from perfctl.resources import SAMPLE_PAGES_DIR; print(SAMPLE_PAGES_DIR)')
mkdir -p "$pages"
mapfile -t sample_files < <(ls "$samples"/*.png)
for i in $(seq 0 $((most - 1))); do
  cp "${sample_files[$((i % ${#sample_files[@]}))]}" "$pages/page-$(printf %04d "$i").png"
done

log "host: $(hostname)  gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
log "nsys: $("$nsys" --version 2>&1)"
log "python: $("$py" -c 'import torch, transformers; print(torch.__version__, torch.version.cuda, transformers.__version__)' 2>&1)"
for n in $batches; do
  run="batch-$decode-$n"
  count=$((2 * n)); [ "$n" -eq 1 ] && count=4
  cmd=("$py" -m perfctl capture --model "$model" --device "$device" --pages "$pages" --num-pages "$count"
       --batch-size "$n" --profile-pages "$n" --max-new-tokens "$new_tokens" --decode "$decode" --tool all
       --nsys "$nsys" --profiles "$out" --run-id "$run" --force --quiet)
  log "capture (batch $n): ${cmd[*]}"
  SECONDS=0
  "${cmd[@]}" 2>&1 | tee -a "$summary"
  log "capture (batch $n) took ${SECONDS} s"
  "$py" -m perfctl analyze "$out/$run" --profiles "$out" --format json >"$out/$run.json" 2>>"$summary" \
    || log "analyze (batch $n) failed"
done

"$py" - "$out" "$decode" $batches <<'EOF' 2>&1 | tee -a "$summary"
import json, sys
from pathlib import Path

out, decode, batches = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]


def pct(value):
    return "-" if value is None else f"{100 * value:.2f} %"


print(f"{'batch':>5} {'status':>7} {'pages/s':>8} {'tok/s':>8} {'decode tok/s':>12} {'TTFT ms':>9} "
      f"{'TPOT ms':>9} {'step ms':>9} {'MFU vision':>10} {'MFU prefill':>11} {'MFU decode':>10} {'MBU':>8}")
for n in batches:
    path = out / f"batch-{decode}-{n}.json"
    manifest = json.loads((out / f"batch-{decode}-{n}" / "manifest.json").read_text())
    if not path.is_file() or not path.stat().st_size:
        print(f"{n:>5} {manifest.get('status')}: no analysis ({manifest.get('reason')})")
        continue
    a = json.loads(path.read_text())
    rate, eff = a.get("throughput") or {}, a.get("efficiency") or {}
    stages = eff.get("stages") or {}
    step = (((a.get("timing") or {}).get("statistics") or {}).get("decode_step_latency") or {}).get("p50")
    ttft, tpot = rate.get("time_to_first_token") or {}, rate.get("time_per_output_token") or {}
    print(f"{n:>5} {manifest.get('status'):>7} {rate.get('pages_per_s', 0):>8.2f} {rate.get('tokens_per_s', 0):>8.1f} "
          f"{rate.get('decode_tokens_per_s') or 0:>12.1f} {ttft.get('p50_ms', 0):>9.1f} {tpot.get('p50_ms', 0):>9.2f} "
          f"{(step or 0) / 1e6:>9.2f} {pct((stages.get('vision') or {}).get('mfu')):>10} "
          f"{pct((stages.get('prefill') or {}).get('mfu')):>11} {pct((stages.get('decode') or {}).get('mfu')):>10} "
          f"{pct((eff.get('decode_mbu') or {}).get('mbu')):>8}")
    mbu = eff.get("decode_mbu") or {}
    if mbu.get("mbu_most") is not None:
        print(f"      decode MBU between {pct(mbu.get('mbu_least'))} and {pct(mbu['mbu_most'])}: {mbu['reason']}")
    elif mbu.get("reason"):
        print(f"      decode MBU: {mbu['reason']}")
EOF
