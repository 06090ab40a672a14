"""Per NVTX range instance and per range name: wall time and the GPU work attributed to it.

`kernel_count` and `kernel_time_ns` per name follow `nsys stats -r nvtxkernsum` exactly, quirks
included: a kernel counts once per (thread, range style) in `kernel_count`, but its duration is added
once per containing range instance in `kernel_time_ns` (so nested ranges of one name add a kernel's
time twice, as nsys does). `gpu_busy_ns` is the honest figure: the union of the attributed kernels'
intervals.

Each range holds a run of launch-ordered activity rows (analysis.attribution); a name holds the
union of its instances' runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from perfctl.analysis.attribution import Slices
from perfctl.analysis.grouping import merge_runs
from perfctl.analysis.kernel_categories import CATEGORIES
from perfctl.analysis.result import RangeSummary
from perfctl.analysis.runs import DistinctFigures, RunIndex, describe, reduce_runs, sum_by, top_kernels

# pandas is imported where it is used: its import takes half a second, which `perfctl analyze`
# spends while the export's readers already decode (nsys_export.windows)
if TYPE_CHECKING:
    import pandas as pd

Int64s = npt.NDArray[np.int64]
INSTANCE_STATS = ("wall_ns", "kernel_count", "kernel_time_ns", "gpu_busy_ns")


@dataclass
class InstanceFigures:
    """Per range instance (row of the ranges table), the GPU work attributed to it: in one window of
    the export, or added up over windows (`add`)."""

    distinct: DistinctFigures
    kernel_time_ns: Int64s
    launches: Int64s

    @staticmethod
    def empty(n: int) -> InstanceFigures:
        return InstanceFigures(DistinctFigures.empty(n), np.zeros(n, np.int64), np.zeros(n, np.int64))

    def add(self, other: InstanceFigures) -> None:
        self.distinct.add(other.distinct)
        self.kernel_time_ns += other.kernel_time_ns
        self.launches += other.launches


def instance_figures(ranges: pd.DataFrame, runs: Slices, index: RunIndex) -> InstanceFigures:
    n = len(ranges)
    rows, lo, hi = runs.range_row, runs.lo, runs.hi
    return InstanceFigures(
        reduce_runs(rows, lo, hi, n, index),
        sum_by(rows, index.kernel_time(lo, hi), n),  # a range may hold several runs
        sum_by(rows, index.launches(lo, hi), n),
    )


def instance_table(ranges: pd.DataFrame, figures: InstanceFigures) -> pd.DataFrame:
    """One row per range instance: wall, kernels, kernel time, GPU busy/span, launches, memory ops."""
    import pandas as pd

    distinct = figures.distinct
    table = pd.DataFrame(
        {
            "wall_ns": ranges["end"].to_numpy(np.int64) - ranges["start"].to_numpy(np.int64),
            "kernel_count": distinct.kernel_count,
            "kernel_time_ns": figures.kernel_time_ns,
            "gpu_busy_ns": distinct.gpu_busy_ns,
            "gpu_span_ns": np.where(distinct.first_start >= 0, distinct.last_end - distinct.first_start, 0),
            "launches": figures.launches,
        }
    )
    for label, (count, nbytes, time) in distinct.memory.items():
        table[f"{label}_count"] = count
        table[f"{label}_bytes"] = nbytes
        table[f"{label}_time_ns"] = time
    return table


def name_codes(ranges: pd.DataFrame) -> tuple[Int64s, list[tuple[str, str]]]:
    """A dense code per range for its (domain, name), codes in sorted (domain, name) order."""
    import pandas as pd

    codes, uniques = pd.MultiIndex.from_frame(ranges[["domain", "name"]]).factorize(sort=True)
    return codes.astype(np.int64), [(str(d), str(nm)) for d, nm in uniques]


@dataclass
class NameFigures:
    """Per range name, the GPU work of its instances (each activity once): in one window of the export,
    or added up over windows (`add`)."""

    distinct: DistinctFigures
    nsys_kernel_count: Int64s
    other_count: Int64s
    other_time: Int64s

    @staticmethod
    def empty(n: int) -> NameFigures:
        zeros = [np.zeros(n, np.int64) for _ in range(3)]
        return NameFigures(DistinctFigures.empty(n), *zeros)

    def add(self, other: NameFigures) -> None:
        self.distinct.add(other.distinct)
        self.nsys_kernel_count += other.nsys_kernel_count
        self.other_count += other.other_count
        self.other_time += other.other_time


def name_figures(
    ranges: pd.DataFrame, codes: Int64s, n: int, runs: Slices, other: Slices, index: RunIndex
) -> NameFigures:
    g, lo, hi = merge_runs(codes[runs.range_row], runs.lo, runs.hi)
    distinct = reduce_runs(g, lo, hi, n, index, with_delays=True, with_kernels=True)
    other_code = codes[other.range_row]
    return NameFigures(
        distinct,
        _nsys_kernel_count(ranges, codes, runs, index, n, distinct.kernel_count),
        sum_by(other_code, index.kernels(other.lo, other.hi), n),
        sum_by(other_code, index.kernel_time(other.lo, other.hi), n),
    )


def summarize_names(
    ranges: pd.DataFrame,
    instances: pd.DataFrame,
    codes: Int64s,
    uniques: list[tuple[str, str]],
    figures: NameFigures,
    names: Callable[[list[int]], dict[int, str]],
    top_n: int,
) -> list[RangeSummary]:
    """One dict per (domain, name), sorted by domain then name."""
    n = len(uniques)
    distinct = figures.distinct
    delays = distinct.delay_stats()
    top, by_category, by_name = top_kernels(distinct.tallies, top_n, names)
    kernel_time = sum_by(codes, instances["kernel_time_ns"].to_numpy(np.int64), n)
    # each name's instance rows (pandas' groupby is not used: given one range, pandas 3 reads the
    # one-element key as a list of keys and finds no group for it)
    order = np.argsort(codes, kind="stable")
    rows_of = np.split(order, np.searchsorted(codes[order], np.arange(1, n)))
    zero_stats = describe([])
    out: list[RangeSummary] = []
    for c, (domain, name) in enumerate(uniques):
        inst = instances.iloc[rows_of[c]]
        # each instance's own span, added up: the first start to the last end over all instances would
        # count the time between instances (a name's instances are pages apart) as GPU span
        span = int(inst["gpu_span_ns"].sum())
        busy = int(distinct.gpu_busy_ns[c])
        item: dict[str, Any] = {
            "domain": domain,
            "name": name,
            "instances": len(inst),
            "wall_ns": int(inst["wall_ns"].sum()),
            "kernel_count": int(figures.nsys_kernel_count[c]),
            "kernel_time_ns": int(kernel_time[c]),
            "gpu_busy_ns": busy,
            "gpu_span_ns": span,
            "gpu_idle_fraction": (1.0 - busy / span) if span > 0 else None,
            "launches": int(inst["launches"].sum()),
        }
        for label, (count, nbytes, time) in distinct.memory.items():
            item.update(
                {
                    f"{label}_count": int(count[c]),
                    f"{label}_bytes": int(nbytes[c]),
                    f"{label}_time_ns": int(time[c]),
                }
            )
        item["launch_to_start_ns"] = delays.get(c, dict(zero_stats))
        item["other_threads"] = {
            "kernel_count": int(figures.other_count[c]),
            "kernel_time_ns": int(figures.other_time[c]),
        }
        item["per_instance"] = {col: describe(inst[col].to_numpy()) for col in INSTANCE_STATS}
        item["top_kernels"] = top.get(c, [])
        item["kernel_time_by_category"] = by_category.get(c, dict.fromkeys(CATEGORIES, 0))
        item["kernel_time_by_name"] = by_name.get(c, {})
        out.append(cast(RangeSummary, item))  # (the memory keys are spelled per label)
    return out


def _nsys_kernel_count(
    ranges: pd.DataFrame, codes: Int64s, runs: Slices, index: RunIndex, n: int, per_name: Int64s
) -> Int64s:
    """nsys counts a kernel once per (range name, thread, style). Threads hold disjoint rows, so
    the per-name distinct count is nsys's unless one name has both push/pop and start/end ranges."""
    import pandas as pd

    style = (ranges["style"].to_numpy() == "PushPop").astype(np.int64)
    if len(pd.unique(codes * 2 + style)) == n:
        return per_name.copy()
    g, lo, hi = merge_runs(codes[runs.range_row] * 2 + style[runs.range_row], runs.lo, runs.hi)
    by_style = reduce_runs(g, lo, hi, 2 * n, index).kernel_count
    total: Int64s = by_style.reshape(n, 2).sum(axis=1)
    return total
