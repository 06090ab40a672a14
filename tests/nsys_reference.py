"""Reading nsys's NVTX kernel summary (`nsys stats -r nvtxkernsum` / `nvtx_kern_sum`) and NVTX range
summary (`nvtxsum` / `nvtx_sum`) into per-range totals, for comparisons with perfctl.

The reports were renamed in the 2023 generation of nsys: 2022.x names them `nvtxkernsum` and `nvtxsum`,
2023.x and later `nvtx_kern_sum` and `nvtx_sum`. 2023.4 keeps the old names as deprecated aliases;
2024.2 no longer knows them ("Report 'nvtxkernsum' could not be found"). `nsys stats -o PREFIX` writes
`PREFIX_{report}.csv`, so the report name also decides the CSV's name. The columns are the same.

`nsys stats` exits 0 even when a report fails or is skipped: the message on its stdout says which.
"""

from __future__ import annotations

import csv
import re
import subprocess
from collections import defaultdict
from functools import cache
from pathlib import Path

OLD_REPORT = "nvtxkernsum"  # nsys 2022.x and older
NEW_REPORT = "nvtx_kern_sum"  # nsys 2023.x and newer
OLD_NVTX_SUM = "nvtxsum"  # nsys 2022.x and older
NEW_NVTX_SUM = "nvtx_sum"  # nsys 2023.x and newer
NO_KERNELS = "does not contain CUDA kernel data"  # what nvtx_kern_sum says, skipping, on a CPU export


@cache
def nsys_version(nsys: str) -> tuple[int, ...]:
    """`nsys --version` as numbers: "... version 2023.4.4.54-2344..." -> (2023, 4, 4, 54)."""
    out = subprocess.run([nsys, "--version"], check=True, capture_output=True, text=True, timeout=120).stdout
    match = re.search(r"(\d{4})\.(\d+)(?:\.(\d+))?(?:\.(\d+))?", out)
    if not match:
        raise ValueError(f"cannot read a version from `{nsys} --version`: {out!r}")
    return tuple(int(g) for g in match.groups() if g is not None)


def kern_sum_report(nsys: str) -> str:
    """The NVTX kernel summary's report name in this nsys."""
    return OLD_REPORT if nsys_version(nsys)[0] <= 2022 else NEW_REPORT


def nvtx_sum_report(nsys: str) -> str:
    """The NVTX range summary's report name in this nsys."""
    return OLD_NVTX_SUM if nsys_version(nsys)[0] <= 2022 else NEW_NVTX_SUM


def kern_sum_csv(prefix: Path, report: str) -> Path:
    """Where `nsys stats -r {report} -f csv -o {prefix}` writes its CSV."""
    return Path(f"{prefix}_{report}.csv")


def nvtxkernsum_totals(csv_text: str) -> dict[str, tuple[int, int]]:
    """{range name as nsys prints it ("domain:name"): (kernel instances, total kernel time ns)}.

    Reads the CSV of either report name. nsys prints one row per (range, thread, style, kernel name);
    a range's totals are the row sums. Kernels outside every range are dropped: 2022.4 names them
    "None", 2023.4 leaves the name empty.
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


def nvtx_sum_totals(csv_text: str) -> dict[str, tuple[int, int]]:
    """{range name as nsys prints it ("domain:name"): (instances, summed duration ns)} from the CSV of
    `nvtxsum` / `nvtx_sum`. nsys prints one row per (style, range); a range's totals are the row sums."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in csv.DictReader(csv_text.splitlines()):
        totals[row["Range"]][0] += int(row["Instances"])
        totals[row["Range"]][1] += int(row["Total Time (ns)"])
    return {k: (v[0], v[1]) for k, v in totals.items()}


def kern_sum_command(nsys: str, export: Path, prefix: Path, report: str | None = None) -> list[str]:
    """`nsys stats` of one report (by default this nsys's NVTX kernel summary, `kern_sum_report`)
    writing CSV to `kern_sum_csv(prefix, report)`."""
    return [
        nsys,
        "stats",
        "-r",
        report or kern_sum_report(nsys),
        "-f",
        "csv",
        "-o",
        str(prefix),
        "--force-overwrite=true",
        str(export),
    ]


def nvtxkernsum_command(nsys: str, export: Path, prefix: Path) -> list[str]:
    """`nsys stats -r nvtxkernsum` writing CSV to `{prefix}_nvtxkernsum.csv`, under that name (2023.4 still
    accepts it as a deprecated alias, 2024.2 does not); `kern_sum_command` uses the nsys's own name."""
    return kern_sum_command(nsys, export, prefix, OLD_REPORT)


def run_stats(nsys: str, export: Path, workdir: Path, report: str) -> tuple[str, str]:
    """Run one `nsys stats` report on `export` to CSV: (the CSV's text, nsys's message). A report nsys
    cannot run raises (nsys itself exits 0 then); a skipped one gives an empty CSV and says why."""
    prefix = workdir / f"{export.stem}-ref"
    proc = subprocess.run(
        kern_sum_command(nsys, export, prefix, report),
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    message = (proc.stdout + proc.stderr).strip()
    if "ERROR" in message:
        raise RuntimeError(f"nsys stats -r {report} failed: {message}")
    return kern_sum_csv(prefix, report).read_text(), message


def run_kern_sum(nsys: str, export: Path, workdir: Path) -> dict[str, tuple[int, int]]:
    """Run this nsys's NVTX kernel summary (under its own report name) on `export`, return its totals."""
    return nvtxkernsum_totals(run_stats(nsys, export, workdir, kern_sum_report(nsys))[0])


def run_nvtx_sum(nsys: str, export: Path, workdir: Path) -> dict[str, tuple[int, int]]:
    """Run this nsys's NVTX range summary (under its own report name) on `export`, return its totals."""
    return nvtx_sum_totals(run_stats(nsys, export, workdir, nvtx_sum_report(nsys))[0])


def perfctl_totals(analysis: dict) -> dict[str, tuple[int, int]]:  # type: ignore[type-arg]
    """perfctl's ranges in nsys's naming, keeping only ranges with kernels (nsys lists no others)."""
    return {
        (f"{r['domain']}:{r['name']}" if r["domain"] else r["name"]): (r["kernel_count"], r["kernel_time_ns"])
        for r in analysis["ranges"]
        if r["kernel_count"]
    }


def perfctl_nvtx_totals(analysis: dict) -> dict[str, tuple[int, int]]:  # type: ignore[type-arg]
    """perfctl's ranges in nsys's naming: (instances, summed wall time ns), as `nvtx_sum` counts them."""
    return {
        (f"{r['domain']}:{r['name']}" if r["domain"] else r["name"]): (r["instances"], r["wall_ns"])
        for r in analysis["ranges"]
    }
