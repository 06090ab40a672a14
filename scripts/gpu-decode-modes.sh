#!/usr/bin/env bash
# The three decode loops of `perfctl capture --decode` on a GPU host, one after the other: the
# full-size DeepSeek-OCR-2 (random weights), 2 pages, 32 new tokens, every pass (--tool all), with
# --decode eager, static and compiled; then `perfctl analyze --format json` of each and, per mode, one
# summary: the capture's status, the clean pass's decode time per step (timing.statistics), what
# torch._dynamo compiled (compile seconds, graph breaks, recompiled pages), the decode NVTX ranges and
# their kernels as perfctl attributes them, and from the export the kernels of those ranges that ran
# inside CUDA graphs (replayed nodes: graphNodeId set, under --cuda-graph-trace=node) and those
# launched one by one.
#
# usage: scripts/gpu-decode-modes.sh PROFILES_DIR   (from the repository root)
#   results: PROFILES_DIR/decode-{eager,static,compiled} (run folders), PROFILES_DIR/decode-X.json
#   (analysis), PROFILES_DIR/decode-modes.txt (the summary, also printed)
#   needs: PYTHONPATH=src (or perfctl installed) for $PYTHON (default python3) with torch + CUDA and
#   nvtx 0.2.11; nsys as $NSYS (default: on PATH). MODES="static compiled" runs only those.
set -uo pipefail
usage="usage: $0 PROFILES_DIR"
out=$(realpath -m "${1:?$usage}")
py=${PYTHON:-python3}
nsys=${NSYS:-$(command -v nsys)}
modes=${MODES:-eager static compiled}
mkdir -p "$out"
summary="$out/decode-modes.txt"
: >"$summary"
log() { echo "== $*" | tee -a "$summary"; }

log "host: $(hostname)  gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
log "nsys: $("$nsys" --version 2>&1)"
log "python: $("$py" -c 'import torch, transformers; print(torch.__version__, torch.version.cuda, transformers.__version__)' 2>&1)"
for mode in $modes; do
  run="decode-$mode"
  cmd=("$py" -m perfctl capture --model deepseek-ocr2 --device cuda --num-pages 2 --max-new-tokens 32
       --tool all --decode "$mode" --nsys "$nsys" --profiles "$out" --run-id "$run" --force --quiet)
  log "capture ($mode): ${cmd[*]}"
  SECONDS=0
  "${cmd[@]}" 2>&1 | tee -a "$summary"
  log "capture ($mode) took ${SECONDS} s"
  "$py" -m perfctl analyze "$out/$run" --profiles "$out" --format json >"$out/$run.json" 2>>"$summary" \
    || log "analyze ($mode) failed"
done

"$py" - "$out" $modes <<'EOF' 2>&1 | tee -a "$summary"
import json, sqlite3, statistics, sys
from pathlib import Path

out, modes = Path(sys.argv[1]), sys.argv[2:]


def graph_split(export: Path) -> str:
    """Per decode range: kernels replayed from CUDA graphs vs launched one by one (by the launch call
    on the range's thread inside it, as nsys stats attributes them)."""
    if not export.is_file():
        return "no export"
    db = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    columns = {row[1] for row in db.execute("PRAGMA table_info(CUPTI_ACTIVITY_KIND_KERNEL)")}
    if "graphNodeId" not in columns:
        return "export has no graphNodeId column: graph kernels unknown"
    domain = db.execute("SELECT domainId FROM NVTX_EVENTS WHERE eventType = 75 AND text = 'perfctl'").fetchone()
    ranges = db.execute(
        "SELECT n.start, n.end, n.globalTid FROM NVTX_EVENTS n LEFT JOIN StringIds s ON s.id = n.textId "
        "WHERE n.eventType = 59 AND n.domainId = ? AND COALESCE(n.text, s.value) = 'decode' ORDER BY n.start",
        (domain[0] if domain else 0,),
    ).fetchall()
    launches = db.execute(
        "SELECT r.start, r.globalTid, k.graphNodeId IS NOT NULL FROM CUPTI_ACTIVITY_KIND_KERNEL k "
        "JOIN CUPTI_ACTIVITY_KIND_RUNTIME r ON r.correlationId = k.correlationId"
    ).fetchall()
    in_graph, one_by_one = [], []
    for start, end, tid in ranges:
        inside = [g for t, thread, g in launches if thread == tid and start <= t <= end]
        in_graph.append(sum(inside))
        one_by_one.append(len(inside) - sum(inside))
    if not ranges:
        return "no decode ranges in the export"
    med = statistics.median
    return (f"{len(ranges)} decode ranges; per step: {med(in_graph):g} kernels inside CUDA graphs, "
            f"{med(one_by_one):g} launched one by one (median; totals {sum(in_graph)} / {sum(one_by_one)})")


for mode in modes:
    run = out / f"decode-{mode}"
    print(f"\n--- --decode {mode}")
    manifest = json.loads((run / "manifest.json").read_text()) if (run / "manifest.json").is_file() else {}
    print(f"status: {manifest.get('status')} {manifest.get('reason') or ''}")
    driver = manifest.get("driver") or {}
    print(f"driver: decode {driver.get('decode', 'eager')}, kv_cache {driver.get('kv_cache')}, "
          f"compiled_forward {driver.get('compiled_forward')}")
    path = out / f"decode-{mode}.json"
    a = json.loads(path.read_text()) if path.is_file() and path.stat().st_size else {}
    stats = (a.get("timing") or {}).get("statistics") or {}
    step = stats.get("decode_step_latency") or {}
    if step:
        print(f"clean pass decode per step: mean {step['mean'] / 1e6:.2f} ms, p50 {step['p50'] / 1e6:.2f} ms, "
              f"p90 {step['p90'] / 1e6:.2f} ms over {step['count']} steps; decode CV "
              f"{(stats.get('stages') or {}).get('decode', {}).get('cv')}")
    for name, c in ((a.get("decode_loop") or {}).get("passes") or {}).items():
        print(f"{name} pass: compile {c['compile_seconds']} s (warm-up {c['warmup_compile_seconds']} s; warm-up "
              f"{c['warmup_seconds_beyond_pages']} s beyond a page), {c['graphs_compiled']} graph(s), "
              f"{c['graph_breaks']} graph break(s) {c['graph_break_reasons'] or ''}, recompiled pages "
              f"{c['recompiled_pages']}, run without CUDA graphs {c.get('cudagraph_skips')}")
    stages = {s["stage"]: s for s in a.get("stages") or []}
    dec = stages.get("decode")
    if dec:
        print(f"nsys pass decode: {dec['instances']} NVTX ranges, {dec['kernel_count']} kernels "
              f"({dec['kernel_count'] / max(dec['instances'], 1):.1f} per step), kernel time "
              f"{dec['kernel_time_ns'] / 1e6:.2f} ms, wall {dec['wall_ns'] / 1e6:.2f} ms; "
              f"graph launches in the export {(a.get('totals') or {}).get('graph_launches')}")
    print(graph_split(run / "run.sqlite"))
    for log in (run / "driver.log", run / "timing" / "driver.log"):
        said = [ln for ln in log.read_text(errors="replace").splitlines() if "skipping cudagraphs" in ln] if log.is_file() else []
        if said:
            print(f"{log.relative_to(out)}: {len(said)} 'skipping cudagraphs' line(s), first: {said[0].strip()[:300]}")
    for f in a.get("findings", []):
        print(f"finding {f['id']} {f['stage']}: {f['title']}")
EOF
log "done"
