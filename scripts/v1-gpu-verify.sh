#!/usr/bin/env bash
# Capture DeepSeek-OCR v1 (its own remote code, seeded random weights) on a GPU host with all passes,
# its driver in a second environment with transformers 4.46.x, then analyze it.
#
# usage: scripts/v1-gpu-verify.sh OUT_DIR V1_ENV V1_MODEL [PAGES] [NEW_TOKENS] [MODE]
#   V1_ENV: a folder of packages for the driver (pip install --no-deps --target V1_ENV transformers==4.46.3
#           tokenizers==0.20.3 'huggingface-hub<1' addict easydict einops requests, plus a torchvision
#           matching the host's torch when it has none), or a .tar.xz of such a folder
#   V1_MODEL: a DeepSeek-OCR v1 folder with its remote code (config.json, modeling_deepseekocr.py,
#             deepencoder.py, modeling_deepseekv2.py, configuration_deepseek_v2.py, conversation.py)
#   needs: perfctl runnable as "$PYTHON -m perfctl" (default python3; PYTHONPATH=src is fine), torch
#   with CUDA and nvtx 0.2.11 in that Python, nsys on PATH or $NSYS. The driver runs as that same
#   Python with V1_ENV on its path, after perfctl's own entry, so V1_ENV's transformers 4.46.3 wins.
#   DRIVER_BASE: another interpreter for the driver instead; DEVICE: cpu to try it without a GPU.
set -uo pipefail
usage="usage: $0 OUT_DIR V1_ENV V1_MODEL [PAGES] [NEW_TOKENS] [MODE]"
out=$(realpath -m "${1:?$usage}")
env_src=${2:?$usage}
model=$(realpath "${3:?$usage}")
pages=${4:-3}
tokens=${5:-64}
mode=${6:-base}
py=${PYTHON:-python3}
base=${DRIVER_BASE:-$py}
device=${DEVICE:-cuda}
nsys=${NSYS:-$(command -v nsys)}
mkdir -p "$out"
if [ -f "$env_src" ]; then
  tar -C "$out" -xJf "$env_src" && env_dir="$out/$(tar -tJf "$env_src" | head -1 | cut -d/ -f1)"
else
  env_dir=$(realpath "$env_src")
fi
driver="$out/v1-python"
printf '#!/bin/sh\nPYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}%s" exec %s "$@"\n' "$env_dir" "$(command -v "$base")" >"$driver"
chmod +x "$driver"
echo "== driver: $("$driver" -c 'import torch, torchvision, transformers; print(torch.__version__, torchvision.__version__, transformers.__version__)')" || exit 1
"$py" -m perfctl capture --model "$model" --random-weights --driver-python "$driver" --mode "$mode" \
  --device "$device" --num-pages "$pages" --max-new-tokens "$tokens" --tool all --out "$out/v1-$mode" \
  --nsys "$nsys" --force || exit 1
"$py" -m perfctl analyze "$out/v1-$mode" --format json >"$out/v1-$mode.json" || exit 1
"$py" - "$out/v1-$mode.json" <<'EOF'
import json, sys
a = json.load(open(sys.argv[1]))
for s in a["stages"]:
    print(f"{s['stage']:8} instances {s['instances']:5}  wall {s['wall_ns'] / 1e6:10.1f} ms  kernels {s['kernel_count']:7}"
          f"  kernel time {s['kernel_time_ns'] / 1e6:9.1f} ms")
e = a["efficiency"]
print("efficiency:", "available" if e.get("available") else e.get("reason"))
for stage, v in (e.get("stages") or {}).items():
    print(f"{stage:8} GFLOP/page {v.get('flops_per_page', 0) / 1e9:9.1f}  clean s/page {v.get('clean_seconds_per_page')}"
          f"  MFU {v.get('mfu')}")
EOF
