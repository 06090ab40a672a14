#!/usr/bin/env bash
# The main job on the built-in default: set up; capture the built-in tiny DeepSeek-OCR-2 model over the
# sample pages with every pass (nsys, a clean timing pass over 4 pages x 3 repeats for the statistics,
# torch.profiler) and this CPU's measured matmul rate and bandwidth (perfctl calibrate: a CPU has no
# datasheet peak), so every stage gets its MFU; analyze it. Then the real H200 run shipped with perfctl,
# analyzed the same way, so that a machine without a GPU shows a GPU report too. Prints both reports.
#   usage: scripts/demo.sh [extra perfctl capture options, e.g. --device cuda --model deepseek-ocr2]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
run_id="demo-$(date -u +%Y%m%d-%H%M%S)"
.venv/bin/perfctl capture --tool all --calibrate --num-pages 4 --repeats 3 --profile-pages 2 \
  --run-id "$run_id" "$@"
.venv/bin/perfctl analyze "profiles/$run_id"
echo
shipped=$(.venv/bin/perfctl shipped)
.venv/bin/perfctl analyze "$shipped"
echo
echo "report: $(pwd)/profiles/$run_id/report.html"
echo "Nsight Systems GUI: nsys-ui $(pwd)/profiles/$run_id/run.nsys-rep"
echo "report of the H200 run shipped with perfctl (not yours): $(pwd)/$shipped/report.html"
