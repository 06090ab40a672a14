"""The published benchmark (docs/benchmarks.md): perfctl on the full-size DeepSeek-OCR-2 on a GPU host.

One command, on a host with a CUDA GPU, torch with CUDA, perfctl importable and nsys:

    python scripts/gpu_benchmark.py OUT_DIR                      # 10 pages x 3 repeats, 64 and 256 tokens

For each number of new tokens it runs
  1. perfctl capture --tool all (random weights: the built-in full-size config) over the built-in
     pages x repeats; with --profile-pages K the nsys and torch.profiler passes run the first K pages once
     (a profile says where the time goes; the clean pass's pages x repeats give the statistics);
  2. perfctl analyze on the run, and `nsys stats` (its NVTX kernel summary) on the same export, each
     timed twice, alternately (wall, CPU seconds, peak RSS; the faster run is kept), and checks that both
     give every NVTX range the same kernel count and time;
then scripts/instrumentation_overhead.py (perfctl's NVTX + hooks vs the same generate with none), and
writes OUT_DIR/results.json and OUT_DIR/results.md (the tables docs/benchmarks.md publishes).

    python scripts/gpu_benchmark.py OUT_DIR --table-only        # tables again from what OUT_DIR holds

Every figure comes from the run's analysis.json; none is computed here except ratios of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_analyze import _fastest, measure  # noqa: E402
from instrumentation_overhead import table as overhead_table  # noqa: E402
from nsys_reference import (  # noqa: E402
    kern_sum_command,
    kern_sum_csv,
    kern_sum_report,
    nvtxkernsum_totals,
    perfctl_totals,
)

STAGES = ("vision", "prefill", "decode")
RESULTS_JSON, RESULTS_MD, OVERHEAD_JSON = "results.json", "results.md", "overhead.json"


def run_name(model: str, tokens: int) -> str:
    return f"{model}-{tokens}tok"


def capture_command(args: argparse.Namespace, tokens: int, run_dir: Path) -> list[str]:
    cmd = [
        sys.executable, "-m", "perfctl", "capture", "--tool", "all", "--model", args.model,
        "--device", args.device, "--num-pages", str(args.pages), "--repeats", str(args.repeats),
        "--warmup", str(args.warmup), "--max-new-tokens", str(tokens), "--out", str(run_dir), "--quiet",
    ]  # fmt: skip
    if args.profile_pages:
        cmd += ["--profile-pages", str(args.profile_pages)]
    return cmd + (["--nsys", args.nsys] if args.nsys else [])


def run_logged(cmd: list[str], log: Path) -> tuple[int, float]:
    """Run `cmd` with its output in `log`; (exit status, wall seconds)."""
    print(f"$ {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    return rc, time.perf_counter() - start


def time_analyze_and_stats(run_dir: Path, nsys: str, repeat: int = 2) -> dict[str, Any]:
    """perfctl analyze and nsys stats on the same export, alternately, `repeat` times each; and whether
    both give every NVTX range the same kernel count and kernel time."""
    export = run_dir / "run.sqlite"
    prefix = run_dir / "nsys-stats"
    analyze = [sys.executable, "-m", "perfctl", "analyze", str(run_dir), "--quiet"]
    stats = kern_sum_command(nsys, export, prefix)
    runs: dict[str, list[dict[str, float]]] = {"perfctl_analyze": [], "nsys_stats": []}
    for _ in range(repeat):
        runs["perfctl_analyze"].append(measure(analyze))
        runs["nsys_stats"].append(measure(stats))
    analysis = json.loads((run_dir / "analysis.json").read_text())
    csv_path = kern_sum_csv(prefix, kern_sum_report(nsys))
    # a CPU export has no kernels: nsys skips the report and writes no CSV, so nothing is compared
    theirs = nvtxkernsum_totals(csv_path.read_text()) if csv_path.is_file() else {}
    if not theirs:
        print(f"note: nsys stats found no kernels in {export}: no range compared", file=sys.stderr)
    ours = perfctl_totals(analysis)
    differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    return {
        "export_bytes": export.stat().st_size,
        "kernels": analysis["totals"]["kernels"],
        "commands": {"perfctl_analyze": shlex.join(analyze), "nsys_stats": shlex.join(stats)},
        "perfctl_analyze": _fastest(runs["perfctl_analyze"]),
        "nsys_stats": _fastest(runs["nsys_stats"]),
        "ranges_compared": len(set(theirs) | set(ours)),
        "ranges_that_differ": differ,
    }


def run_summary(run_dir: Path) -> dict[str, Any]:
    """The figures docs/benchmarks.md publishes for one run, read from its analysis.json."""
    analysis = json.loads((run_dir / "analysis.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stats = analysis["timing"]["statistics"]
    eff = analysis["efficiency"]
    under_nsys = {s["stage"]: s for s in analysis["stages"]}
    stages = {}
    for stage in STAGES:
        clean, nsys = stats["stages"][stage], under_nsys.get(stage, {})
        per = eff["stages"][stage] if eff.get("available") else {}
        instances = nsys.get("instances") or 0
        stages[stage] = {
            "clean_mean_ms": clean["mean"] / 1e6,
            "clean_std_ms": clean["std"] / 1e6,
            "cv": clean["cv"],
            "cv_without_outliers": clean.get("cv_without_outliers"),
            "ci95_ms": [clean["ci95_low"] / 1e6, clean["ci95_high"] / 1e6],
            "p95_ms": clean["p95"] / 1e6,
            "outliers": len(clean.get("outliers") or []),
            "stable": clean["verdict"]["stable"],
            "flops_per_page": per.get("flops_per_page"),
            "achieved_tflops": per.get("achieved_tflops"),
            "mfu": per.get("mfu"),
            "nsys_over_clean": per.get("nsys_over_clean"),
            "kernels_per_range": nsys["kernel_count"] / instances if instances else None,
            "gpu_busy_share_under_nsys": nsys["gpu_busy_ns"] / nsys["wall_ns"]
            if nsys.get("wall_ns")
            else None,
        }
    workload = manifest["workload"]
    return {
        "run": run_dir.name,
        "gpu": (manifest.get("driver") or {}).get("gpu_name"),
        "nsys": (manifest.get("nsys") or {}).get("version"),
        "workload": {
            k: workload.get(k) for k in ("pages", "repeats", "warmup", "max_new_tokens", "profile_pages")
        }
        | {"pages": len(workload.get("pages") or [])},
        "command": shlex.join(manifest.get("perfctl_command") or []),
        "clean_pages": stats["page"]["count"],
        "clean_time_source": (eff.get("inputs") or {}).get("clean_time_source"),
        "stages": stages,
        "page": {
            "clean_mean_ms": stats["page"]["mean"] / 1e6,
            "cv": stats["page"]["cv"],
            "mfu": (eff.get("page") or {}).get("mfu"),
        },
        "decode": {
            "tokens_per_second": stats["decode_tokens_per_second"]["mean"],
            "step_latency_ms_p50": stats["decode_step_latency"]["p50"] / 1e6,
            "step_latency_ms_p99": stats["decode_step_latency"]["p99"] / 1e6,
            "time_to_first_token_ms": stats["time_to_first_token"]["mean"] / 1e6,
            "mbu": (eff.get("decode_mbu") or {}).get("mbu"),
            "achieved_gbs": (eff.get("decode_mbu") or {}).get("achieved_gbs"),
        },
        "peak": {
            "tflops": (eff.get("inputs") or {}).get("peak_tflops"),
            "bandwidth_gbs": (eff.get("decode_mbu") or {}).get("peak_bandwidth_gbs"),
        },
    }


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f} %"


def _num(x: float | None, fmt: str = ".1f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _page_and_decode_line(s: dict[str, Any]) -> str:
    d, p, peak = s["decode"], s["page"], s["peak"]
    return (
        f"Page: {p['clean_mean_ms']:.1f} ms (CV {_pct(p['cv'])}), MFU {_pct(p['mfu'], 2)} of "
        f"{_num(peak['tflops'])} TFLOP/s. Decode: {d['tokens_per_second']:.1f} tokens/s, step "
        f"{d['step_latency_ms_p50']:.2f} ms p50 / {d['step_latency_ms_p99']:.2f} ms p99, first token "
        f"{d['time_to_first_token_ms']:.1f} ms, MBU {_pct(d['mbu'])} ({_num(d['achieved_gbs'], '.0f')} "
        f"of {_num(peak['bandwidth_gbs'], '.0f')} GB/s). Decode kernels per token: the decode row's "
        "kernels per range (one range per step)."
    )


def _analysis_time_line(t: dict[str, Any]) -> str:
    a, n = t["perfctl_analyze"], t["nsys_stats"]
    if not t["ranges_compared"]:
        same = "NOT COMPARED: neither tool found kernels in the export (a CPU run)"
    elif t["ranges_that_differ"]:
        same = f"DIFFER on {', '.join(t['ranges_that_differ'])}"
    else:
        same = f"equal on all {t['ranges_compared']} ranges"
    return (
        f"Analysis of this export ({t['kernels']:,} kernels, {t['export_bytes'] / 1e6:.0f} MB): "
        f"`perfctl analyze` {a['wall_s']:.2f} s wall / {a['cpu_s']:.2f} s CPU / "
        f"{a['peak_rss_mb']:.0f} MB peak RSS; `nsys stats` {n['wall_s']:.2f} s / {n['cpu_s']:.2f} s / "
        f"{n['peak_rss_mb']:.0f} MB ({n['wall_s'] / a['wall_s']:.1f}x perfctl's wall time). Kernel "
        f"count and time per NVTX range: {same}."
    )


def render_results(results: dict[str, Any]) -> str:
    """results.json as the Markdown tables of docs/benchmarks.md."""
    out = [f"# perfctl benchmark: {results.get('gpu')}", "", f"Command: `{results['command']}`", ""]
    for run in results["runs"]:
        s, w = run["summary"], run["summary"]["workload"]
        out += [
            f"## {w['max_new_tokens']} new tokens ({s['run']})",
            "",
            f"{w['pages']} pages x {w['repeats']} repeats in the clean pass ({s['clean_pages']} pages timed, "
            f"{w['warmup']} warm-up, times: {s['clean_time_source']}); nsys {s['nsys']} and torch.profiler "
            + (f"on the first {w['profile_pages']} pages once." if w["profile_pages"] else "on every page."),
            f"`{s['command']}`",
            "",
            "| stage | clean mean ms | std ms | CV (w/o outliers) | 95 % CI ms | MFU | kernels per range "
            "| GPU busy under nsys | nsys / clean |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for stage, st in s["stages"].items():
            out.append(
                f"| {stage} | {st['clean_mean_ms']:.2f} | {st['clean_std_ms']:.2f} | {_pct(st['cv'])} "
                f"({_pct(st['cv_without_outliers'])}) | {st['ci95_ms'][0]:.2f}-{st['ci95_ms'][1]:.2f} | "
                f"{_pct(st['mfu'], 2)} | {_num(st['kernels_per_range'], '.0f')} | "
                f"{_pct(st['gpu_busy_share_under_nsys'])} | {_num(st['nsys_over_clean'], '.2f')}x |"
            )
        out += ["", _page_and_decode_line(s)]
        if run.get("analyze_vs_nsys_stats"):
            out += ["", _analysis_time_line(run["analyze_vs_nsys_stats"])]
        out.append("")
    overhead = results.get("instrumentation_overhead")
    if overhead and overhead.get("measured"):
        out += ["## Instrumentation overhead", "", f"`{overhead['command']}`", "", "```"]
        out += [overhead_table(overhead["measured"]), "```", ""]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", default="deepseek-ocr2")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--new-tokens", default="64,256", help="comma-separated, one run each")
    ap.add_argument("--pages", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--profile-pages", type=int, default=3, help="0: the profilers run every page x repeat")
    ap.add_argument("--overhead-tokens", type=int, default=64, help="0: skip the instrumentation overhead")
    ap.add_argument("--overhead-rounds", type=int, default=3)
    ap.add_argument("--nsys", default=os.environ.get("NSYS"))
    ap.add_argument("--table-only", action="store_true", help="rebuild results.md from OUT's runs")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tokens = [int(t) for t in args.new_tokens.split(",") if t]
    results_path = args.out / RESULTS_JSON
    results: dict[str, Any] = (
        json.loads(results_path.read_text())
        if args.table_only
        else {"command": shlex.join([sys.executable, *sys.argv]), "runs": []}
    )
    failed = 0
    if not args.table_only:
        nsys = args.nsys or "nsys"
        for n in tokens:
            run_dir = args.out / run_name(args.model, n)
            rc, wall = run_logged(capture_command(args, n, run_dir), args.out / f"{run_dir.name}.capture.log")
            entry: dict[str, Any] = {"run": run_dir.name, "capture_exit": rc, "capture_seconds": wall}
            if rc == 0:
                entry["analyze_vs_nsys_stats"] = time_analyze_and_stats(run_dir, nsys)
            else:
                failed += 1
            results["runs"].append(entry)
            results_path.write_text(json.dumps(results, indent=1))
        if args.overhead_tokens:
            cmd = [
                sys.executable, str(HERE / "instrumentation_overhead.py"), "--model", args.model,
                "--device", args.device, "--pages", str(args.pages), "--rounds", str(args.overhead_rounds),
                "--new-tokens", str(args.overhead_tokens), "--warmup", str(args.warmup),
                "--out", str(args.out / OVERHEAD_JSON),
            ]  # fmt: skip
            rc, _ = run_logged(cmd, args.out / "overhead.log")
            results["instrumentation_overhead"] = {"command": shlex.join(cmd), "exit": rc}
            failed += rc != 0
    for entry in results["runs"]:
        if entry.get("capture_exit") == 0:
            entry["summary"] = run_summary(args.out / entry["run"])
            results.setdefault("gpu", entry["summary"]["gpu"])
    overhead = results.get("instrumentation_overhead") or {}
    if (args.out / OVERHEAD_JSON).is_file() and overhead.get("exit") == 0:
        overhead["measured"] = json.loads((args.out / OVERHEAD_JSON).read_text())
    results_path.write_text(json.dumps(results, indent=1))
    done = [e for e in results["runs"] if "summary" in e]
    (args.out / RESULTS_MD).write_text(render_results(results | {"runs": done}))
    print((args.out / RESULTS_MD).read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
