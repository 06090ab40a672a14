#!/usr/bin/env bash
# The warm-up fixtures on a GPU host: a Llama-3.2-1B-sized causal LM (random weights) over two sample
# prompts of different length (389 and 146 tokens: UTF-8 bytes, no tokenizer), `perfctl capture --tool
# all`, 2 repeats, once with --warmup 0 (the first page of each prompt length is its first use in the
# process) and once with the default warm-up (every input shape once); then `perfctl analyze` and
# nsys's own NVTX kernel summary of each export. Results: OUT_DIR/warmup0, OUT_DIR/default (run
# folders), OUT_DIR/<run>.analysis.json, OUT_DIR/<run>/nsys-stats_*.csv, OUT_DIR/summary.txt.
#
# usage: scripts/gpu-warmup-fixture.sh OUT_DIR [MODEL_FOLDER] [NEW_TOKENS]
#   MODEL_FOLDER: default tests/fixtures/models/llama-3.2-1b-sized; NEW_TOKENS: default 16
#   needs: perfctl runnable as "$PYTHON -m perfctl" (default python3; PYTHONPATH=src is fine), torch
#   with CUDA and nvtx 0.2.11 in that Python, nsys on PATH or $NSYS. DEVICE=cpu tries it without a GPU.
set -uo pipefail
usage="usage: $0 OUT_DIR [MODEL_FOLDER] [NEW_TOKENS]"
out=$(realpath -m "${1:?$usage}")
here=$(cd "$(dirname "$0")" && pwd)
model=$(realpath "${2:-$here/../tests/fixtures/models/llama-3.2-1b-sized}")
tokens=${3:-16}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
nsys=${NSYS:-$(command -v nsys)}
mkdir -p "$out"
summary="$out/summary.txt"
log() { echo "== $*" | tee -a "$summary"; }

log "host: $(hostname)  gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
log "nsys: $("$nsys" --version 2>&1)"
log "python: $("$py" -c 'import torch, transformers, nvtx; print(torch.__version__, torch.version.cuda, transformers.__version__)' 2>&1)"
for run in warmup0 default; do
  warmup=()
  [ "$run" = warmup0 ] && warmup=(--warmup 0)
  cmd=("$py" -m perfctl capture --model "$model" --random-weights --device "$device" --tool all --num-pages 2
       --repeats 2 --max-new-tokens "$tokens" --profile-pages 2 "${warmup[@]}" --out "$out/$run" --nsys "$nsys"
       --force --quiet)
  log "capture ($run): ${cmd[*]}"
  SECONDS=0
  "${cmd[@]}" 2>&1 | tee -a "$summary"
  log "capture ($run) took ${SECONDS} s"
  "$py" -m perfctl analyze "$out/$run" --format json >"$out/$run.analysis.json" 2>>"$summary" || log "analyze ($run) failed"
  [ -f "$out/$run/run.sqlite" ] && (cd "$out/$run" && "$nsys" stats -r nvtx_kern_sum -f csv -o nsys-stats \
    --force-overwrite=true run.sqlite >/dev/null 2>>"$summary") || log "nsys stats ($run) failed"
  "$py" - "$out/$run" "$out/$run.analysis.json" <<'EOF' 2>&1 | tee -a "$summary"
import json, sys
from pathlib import Path
run, analysis = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("pages.jsonl", "timing/pages.jsonl"):
    for line in (run / name).read_text().splitlines():
        r = json.loads(line)
        print(f"{name:18} seq {r['sequence']:3} page {r['page_index']} warmup {bool(r.get('warmup'))!s:5} "
              f"first-of-shape {r.get('shape_first_seen')!s:5} prompt {r['prompt_tokens']:4}  wall {r['wall_ns'] / 1e6:9.1f} ms  "
              + "  ".join(f"{k} {v / 1e6:8.1f}" for k, v in r["stage_wall_ns"].items()))
a = json.loads(analysis.read_text()) if analysis.stat().st_size else {}
stats = (a.get("timing") or {}).get("statistics") or {}
for stage, s in {**stats.get("stages", {}), "page": stats.get("page", {})}.items():
    print(f"verdict {stage}: CV {s.get('cv')}: {(s.get('verdict') or {}).get('why')}")
print("first use:", json.dumps(a.get("first_use"))[:3000])
for f in a.get("findings", []):
    print(f"finding {f['id']} {f['stage']}: {f['title']}")
EOF
done
log "done"
