#!/usr/bin/env bash
# The main job on the built-in default: set up, capture the built-in tiny DeepSeek-OCR-2 model over the
# sample pages under nsys, analyze the capture, and say where the report is.
#   usage: scripts/demo.sh [extra perfctl capture options, e.g. --device cuda --model deepseek-ocr2]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
run_id="demo-$(date -u +%Y%m%d-%H%M%S)"
.venv/bin/perfctl capture --tool nsys --run-id "$run_id" "$@"
.venv/bin/perfctl analyze "profiles/$run_id"
echo
echo "report: $(pwd)/profiles/$run_id/report.html"
echo "Nsight Systems GUI: nsys-ui $(pwd)/profiles/$run_id/run.nsys-rep"
