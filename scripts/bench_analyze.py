"""Benchmark `perfctl analyze` against `nsys stats -r nvtxkernsum` on the same large export.

Builds exports of >= N kernels by tiling a real one in time (scripts/tile_export.py), then times,
in this run and on this machine, for each size:
  * perfctl analyze EXPORT --format json          (wall time, peak RSS)
  * nsys stats -r nvtxkernsum EXPORT              (wall time, peak RSS)
  * a floor: one SQLite scan of the columns the analysis needs (kernels, launches, NVTX)
and checks that both tools give every NVTX range the same kernel count and kernel time.

    python scripts/bench_analyze.py                       # 2 M kernels from the tiny H200 fixture
    python scripts/bench_analyze.py --kernels 2e6,5e6,1e7,2e7 --no-nsys-above 2e6   # linearity
    python scripts/bench_analyze.py --base my-capture.sqlite --work /scratch

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

# Runs a command and reports its wall time and the peak RSS of its largest process.
_MEASURE = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
wall = time.perf_counter() - t
sys.stderr.write(proc.stderr.decode(errors="replace")[-2000:] if proc.returncode else "")
print(json.dumps({"rc": proc.returncode, "wall_s": wall,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def measure(cmd: list[str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True, check=False)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return result


def scan_floor(export: Path) -> float:
    """Seconds for SQLite alone to read the needed columns once (no output): the physical floor."""
    conn = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    t = time.perf_counter()
    conn.execute(
        "SELECT total(start), total(end), total(correlationId), total(globalPid), total(shortName), "
        "total(demangledName) FROM CUPTI_ACTIVITY_KIND_KERNEL"
    ).fetchone()
    conn.execute(
        "SELECT total(start), total(end), total(correlationId), total(globalTid) "
        "FROM CUPTI_ACTIVITY_KIND_RUNTIME"
    ).fetchone()
    conn.execute(
        "SELECT total(start), total(end), total(globalTid), total(textId) FROM NVTX_EVENTS"
    ).fetchone()
    conn.close()
    return time.perf_counter() - t


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
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="perfctl-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    base = base_export(args.base, work)
    perfctl = [sys.executable, "-m", "perfctl", "analyze", "--format", "json"]
    print(f"base export: {args.base}; cpu cores: {os.cpu_count()}; nsys: {args.nsys}")
    header = (
        f"{'kernels':>11} {'perfctl s':>10} {'RSS MB':>7} {'nsys s':>8} {'RSS MB':>7} "
        f"{'speed-up':>9} {'floor s':>8} {'perfctl/floor':>13} {'ns/kernel':>10}  equal"
    )
    print(header)
    for size in (int(float(x)) for x in args.kernels.split(",")):
        export = work / f"tiled-{size}.sqlite"
        if not export.exists():
            tile(base, export, copies_for(base, size))
        with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
            kernels = conn.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0]
        floor = scan_floor(export)
        ours = measure([*perfctl, "--out-dir", str(work / f"out-{size}"), str(export)])
        ours_json = json.loads((work / f"out-{size}" / "analysis.json").read_text())
        ref, equal = None, "-"
        if args.nsys and kernels <= args.no_nsys_above:
            prefix = work / f"ref-{size}"
            ref = measure(nvtxkernsum_command(args.nsys, export, prefix))
            expected = nvtxkernsum_totals(Path(f"{prefix}_nvtxkernsum.csv").read_text())
            equal = "yes" if perfctl_totals(ours_json) == expected else "NO"
        print(
            f"{kernels:>11,} {ours['wall_s']:>10.2f} {ours['peak_rss_mb']:>7.0f} "
            + (
                f"{ref['wall_s']:>8.2f} {ref['peak_rss_mb']:>7.0f} {ref['wall_s'] / ours['wall_s']:>8.1f}x "
                if ref
                else f"{'-':>8} {'-':>7} {'-':>9} "
            )
            + f"{floor:>8.2f} {ours['wall_s'] / floor:>12.1f}x "
            + f"{1e9 * ours['wall_s'] / kernels:>10.0f}  {equal}",
            flush=True,
        )


if __name__ == "__main__":
    main()
