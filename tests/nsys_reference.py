"""Reading `nsys stats -r nvtxkernsum` output into per-range totals, for comparisons with perfctl."""

from __future__ import annotations

import csv
import subprocess
from collections import defaultdict
from pathlib import Path


def nvtxkernsum_totals(csv_text: str) -> dict[str, tuple[int, int]]:
    """{range name as nsys prints it ("domain:name"): (kernel instances, total kernel time ns)}.

    nsys prints one row per (range, thread, style, kernel name); a range's totals are the row sums.
    Kernels outside every range come as the name "None" and are dropped.
    """
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    lines = [
        ln for ln in csv_text.splitlines() if ln and not ln.startswith(("Processing", "NOTICE", "SKIPPED"))
    ]
    for row in csv.DictReader(lines):
        name = row["NVTX Range"]
        if name in ("None", ""):
            continue
        totals[name][0] += int(row["Kern Inst"])
        totals[name][1] += int(row["Total Time (ns)"])
    return {k: (v[0], v[1]) for k, v in totals.items()}


def nvtxkernsum_command(nsys: str, export: Path, prefix: Path) -> list[str]:
    """`nsys stats -r nvtxkernsum` writing CSV to `{prefix}_nvtxkernsum.csv`."""
    return [
        nsys,
        "stats",
        "-r",
        "nvtxkernsum",
        "-f",
        "csv",
        "-o",
        str(prefix),
        "--force-overwrite=true",
        str(export),
    ]


def run_nvtxkernsum(nsys: str, export: Path, workdir: Path) -> dict[str, tuple[int, int]]:
    out = workdir / f"{export.stem}-ref"
    subprocess.run(
        nvtxkernsum_command(nsys, export, out), check=True, capture_output=True, text=True, timeout=600
    )
    return nvtxkernsum_totals(Path(f"{out}_nvtxkernsum.csv").read_text())


def perfctl_totals(analysis: dict) -> dict[str, tuple[int, int]]:  # type: ignore[type-arg]
    """perfctl's ranges in nsys's naming, keeping only ranges with kernels (nsys lists no others)."""
    return {
        (f"{r['domain']}:{r['name']}" if r["domain"] else r["name"]): (r["kernel_count"], r["kernel_time_ns"])
        for r in analysis["ranges"]
        if r["kernel_count"]
    }
