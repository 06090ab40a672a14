"""`perfctl analyze FILE.ncu-rep`: an Nsight Compute report on its own, one record per profiled
kernel instance (docs/ncu.md). With no nsys pass beside it nothing weighs the kernels by how often
they ran; a run folder's ncu/ report is analyzed with its run (commands.analyze)."""

from __future__ import annotations

from pathlib import Path

from perfctl.analysis.result_ncu import NcuReport
from perfctl.ncu_rep.reader import read_ncu_report
from perfctl.run_folder import NCU_REPORT_SUFFIX


def is_ncu_report(path: Path) -> bool:
    return path.suffix == NCU_REPORT_SUFFIX


def analyze_ncu_report(path: Path) -> NcuReport:
    """The report's kernels (BadInput, one line, for a file that is not a readable report)."""
    return read_ncu_report(path)
