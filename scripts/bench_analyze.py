"""Benchmark `perfctl analyze` against `nsys stats -r nvtxkernsum` on the same large export.

Builds exports of >= N kernels by tiling a real one in time (scripts/tile_export.py), then times,
in this run and on this machine, for each size:
  * perfctl analyze EXPORT --format json          (wall time, CPU time, peak RSS)
  * nsys stats -r nvtxkernsum EXPORT              (the same)
  * with --baseline-src DIR, perfctl from another source tree (an older commit) on the same file
  * two floors, each reading the tables the analysis needs (kernels, memory operations, API calls):
    "read", their pages read once from the page cache, nothing decoded (the physical floor), and
    "scan", SQLite's own single-threaded scan of the needed columns
and checks that both tools give every NVTX range the same kernel count and kernel time.

    python scripts/bench_analyze.py                       # 2 M kernels from the tiny H200 fixture
    python scripts/bench_analyze.py --kernels 2e6,5e6,1e7,2e7 --no-nsys-above 2e6   # linearity
    python scripts/bench_analyze.py --base my-capture.sqlite --work /scratch
    git archive OLD src templates models | tar -x -C /tmp/old   # then: --baseline-src /tmp/old/src

On a shared machine, wall times move with the load; CPU seconds (user + system) move less, and the
ratio of two tools timed in one run stays comparable.

Goal (issue 3): >= 10x faster than nsys stats and <= 0.5 GB peak RSS at >= 2 M kernels on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from nsys_reference import nvtxkernsum_command, nvtxkernsum_totals, perfctl_totals
from tile_export import copies_for, tile

DEFAULT_BASE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "h200-tiny-ocr2.sqlite.xz"

# Runs a command and reports its wall time, CPU time and the peak RSS of its largest process.
_MEASURE = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
wall = time.perf_counter() - t
sys.stderr.write(proc.stderr.decode(errors="replace")[-2000:] if proc.returncode else "")
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": proc.returncode, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "peak_rss_mb": usage.ru_maxrss / 1024}))
"""


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True, check=False, env=env
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return result


# The columns perfctl analyze reads from each big table (kernels, memory operations, API calls).
NEEDED = {
    "CUPTI_ACTIVITY_KIND_KERNEL": [
        *("start", "end", "correlationId", "globalPid", "shortName", "demangledName")
    ],
    "CUPTI_ACTIVITY_KIND_MEMCPY": ["start", "end", "correlationId", "globalPid", "bytes"],
    "CUPTI_ACTIVITY_KIND_MEMSET": ["start", "end", "correlationId", "globalPid", "bytes"],
    "CUPTI_ACTIVITY_KIND_RUNTIME": ["start", "end", "globalTid", "correlationId", "nameId"],
}


def read_floor(export: Path) -> float:
    """Seconds to read the needed tables' pages once, in order, nothing decoded: the physical floor."""
    from perfctl.nsys_export import pages

    conn = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    layouts = [pages.table_layout(conn, t, c) for t, c in NEEDED.items() if _has(conn, t)]
    conn.close()
    t = time.perf_counter()
    file = pages.open_file(export)
    for layout in layouts:
        for group in pages.leaf_groups(file, layout):
            pages.read_pages(file, group)
    return time.perf_counter() - t


def scan_floor(export: Path) -> float:
    """Seconds for SQLite alone to scan the needed columns once (no output), on one core."""
    conn = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    t = time.perf_counter()
    for table, columns in NEEDED.items():
        if _has(conn, table):
            totals = ", ".join(f'total("{c}")' for c in columns)
            conn.execute(f"SELECT {totals} FROM {table}").fetchone()
    conn.close()
    return time.perf_counter() - t


def _has(conn: sqlite3.Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None


def base_export(path: Path, work: Path) -> Path:
    if path.suffix != ".xz":
        return path
    target = work / path.name.removesuffix(".xz")
    if not target.exists():
        with lzma.open(path) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base", type=Path, default=DEFAULT_BASE, help="a real export (.sqlite or .sqlite.xz)"
    )
    parser.add_argument("--kernels", default="2e6", help="comma-separated sizes (kernels), e.g. 2e6,5e6")
    parser.add_argument("--work", type=Path, default=None, help="folder for the tiled exports [a temp dir]")
    parser.add_argument("--nsys", default=os.environ.get("NSYS") or shutil.which("nsys"))
    parser.add_argument(
        "--no-nsys-above",
        type=float,
        default=float("inf"),
        help="skip nsys stats for sizes above this many kernels (it is slow)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="time perfctl (and the baseline, alternating) this many times; report the fastest run",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also time perfctl from this source tree (the src/ of an older commit) on each export",
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="perfctl-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    base = base_export(args.base, work)
    perfctl = [sys.executable, "-m", "perfctl", "analyze", "--format", "json"]
    print(f"base export: {args.base}; cpu cores: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}")
    print(f"nsys: {args.nsys}; baseline perfctl: {args.baseline_src or '-'}; runs per tree: {args.repeat}")
    print(
        "per tool: wall s / CPU s / peak RSS MB; speed-up = nsys wall / perfctl wall; floors: 'read' the"
        " needed tables' pages once, 'scan' SQLite's one-core scan of the needed columns"
    )
    header = (
        f"{'kernels':>11} {'perfctl':>20} {'baseline':>20} {'nsys stats':>20} {'speed-up':>8} "
        f"{'vs base':>7} {'read s':>6} {'scan s':>6} {'/read':>6} {'/scan':>6} {'ns/kern':>7}  equal"
    )
    print(header)
    for size in (int(float(x)) for x in args.kernels.split(",")):
        export = work / f"tiled-{size}.sqlite"
        if not export.exists():
            tile(base, export, copies_for(base, size))
        with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
            kernels = conn.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0]
        read, scan = read_floor(export), scan_floor(export)
        env = {**os.environ, "PYTHONPATH": str(args.baseline_src.resolve())} if args.baseline_src else None
        runs: list[dict[str, float]] = []
        baseline_runs: list[dict[str, float]] = []
        for _ in range(max(args.repeat, 1)):  # alternating, so that both see the same load
            runs.append(measure([*perfctl, "--out-dir", str(work / f"out-{size}"), str(export)]))
            if env:
                baseline_runs.append(
                    measure([*perfctl, "--out-dir", str(work / f"base-{size}"), str(export)], env)
                )
        ours = _fastest(runs)
        ours_json = json.loads((work / f"out-{size}" / "analysis.json").read_text())
        baseline, same = None, ""
        if env:
            baseline = _fastest(baseline_runs)
            theirs = json.loads((work / f"base-{size}" / "analysis.json").read_text())
            same = ", baseline JSON " + ("identical" if theirs == ours_json else "DIFFERS")
        ref, equal = None, "-"
        if args.nsys and kernels <= args.no_nsys_above:
            prefix = work / f"ref-{size}"
            ref = measure(nvtxkernsum_command(args.nsys, export, prefix))
            expected = nvtxkernsum_totals(Path(f"{prefix}_nvtxkernsum.csv").read_text())
            equal = "yes" if perfctl_totals(ours_json) == expected else "NO"
        wall = ours["wall_s"]
        print(
            f"{kernels:>11,} {_tool(ours)} {_tool(baseline)} {_tool(ref)} "
            f"{_ratio(ref, ours):>8} {_ratio(baseline, ours):>7} {read:>6.2f} {scan:>6.2f} "
            f"{wall / read:>5.1f}x {wall / scan:>5.1f}x {1e9 * wall / kernels:>7.0f}  {equal}{same}",
            flush=True,
        )


def _fastest(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the least wall time, with the largest peak RSS of all runs."""
    best = dict(min(runs, key=lambda m: m["wall_s"]))
    best["peak_rss_mb"] = max(m["peak_rss_mb"] for m in runs)
    return best


def _tool(m: dict[str, float] | None) -> str:
    if m is None:
        return f"{'-':>20}"
    return f"{m['wall_s']:>7.2f} {m['cpu_s']:>6.2f} {m['peak_rss_mb']:>5.0f}"


def _ratio(slow: dict[str, float] | None, fast: dict[str, float]) -> str:
    return f"{slow['wall_s'] / fast['wall_s']:.1f}x" if slow else "-"


if __name__ == "__main__":
    main()
