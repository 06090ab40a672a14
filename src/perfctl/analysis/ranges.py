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
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from perfctl.analysis.attribution import Slices
from perfctl.analysis.grouping import merge_runs
from perfctl.analysis.kernel_categories import CATEGORIES
from perfctl.analysis.runs import RunIndex, describe, reduce_runs, sum_by

Int64s = npt.NDArray[np.int64]
INSTANCE_STATS = ("wall_ns", "kernel_count", "kernel_time_ns", "gpu_busy_ns")


def instance_table(ranges: pd.DataFrame, runs: Slices, index: RunIndex) -> pd.DataFrame:
    """One row per range instance: wall, kernels, kernel time, GPU busy/span, launches, memory ops."""
    n = len(ranges)
    rows, lo, hi = runs.range_row, runs.lo, runs.hi
    distinct = reduce_runs(rows, lo, hi, n, index)
    kernel_time = sum_by(rows, index.kernel_time(lo, hi), n)  # a range may hold several runs
    launches = sum_by(rows, index.launches(lo, hi), n)
    table = pd.DataFrame(
        {
            "wall_ns": ranges["end"].to_numpy(np.int64) - ranges["start"].to_numpy(np.int64),
            "kernel_count": distinct.kernel_count,
            "kernel_time_ns": kernel_time,
            "gpu_busy_ns": distinct.gpu_busy_ns,
            "gpu_span_ns": np.where(distinct.first_start >= 0, distinct.last_end - distinct.first_start, 0),
            "launches": launches,
        }
    )
    for label, (count, nbytes, time) in distinct.memory.items():
        table[f"{label}_count"] = count
        table[f"{label}_bytes"] = nbytes
        table[f"{label}_time_ns"] = time
    return table


def name_codes(ranges: pd.DataFrame) -> tuple[Int64s, list[tuple[str, str]]]:
    """A dense code per range for its (domain, name), codes in sorted (domain, name) order."""
    codes, uniques = pd.MultiIndex.from_frame(ranges[["domain", "name"]]).factorize(sort=True)
    return codes.astype(np.int64), [(str(d), str(nm)) for d, nm in uniques]


def summarize_names(
    ranges: pd.DataFrame,
    instances: pd.DataFrame,
    runs: Slices,
    other: Slices,
    index: RunIndex,
    names: Callable[[list[int]], dict[int, str]],
    top_n: int,
) -> list[dict[str, Any]]:
    """One dict per (domain, name), sorted by domain then name."""
    codes, uniques = name_codes(ranges)
    n = len(uniques)
    g, lo, hi = merge_runs(codes[runs.range_row], runs.lo, runs.hi)
    distinct = reduce_runs(g, lo, hi, n, index, with_delays=True, top_n=top_n, names=names)
    kernel_count = _nsys_kernel_count(ranges, codes, runs, index, n, distinct.kernel_count)
    kernel_time = sum_by(codes, instances["kernel_time_ns"].to_numpy(np.int64), n)
    other_code = codes[other.range_row]
    other_count = sum_by(other_code, index.kernels(other.lo, other.hi), n)
    other_time = sum_by(other_code, index.kernel_time(other.lo, other.hi), n)

    stats = instances.groupby(codes, sort=True)
    zero_stats = describe([])
    out = []
    for c, (domain, name) in enumerate(uniques):
        inst = stats.get_group(c)
        span = int(distinct.last_end[c] - distinct.first_start[c]) if distinct.first_start[c] >= 0 else 0
        busy = int(distinct.gpu_busy_ns[c])
        item: dict[str, Any] = {
            "domain": domain,
            "name": name,
            "instances": len(inst),
            "wall_ns": int(inst["wall_ns"].sum()),
            "kernel_count": int(kernel_count[c]),
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
        item["launch_to_start_ns"] = distinct.delays.get(c, dict(zero_stats))
        item["other_threads"] = {"kernel_count": int(other_count[c]), "kernel_time_ns": int(other_time[c])}
        item["per_instance"] = {col: describe(inst[col].to_numpy()) for col in INSTANCE_STATS}
        item["top_kernels"] = distinct.top_kernels.get(c, [])
        item["kernel_time_by_category"] = distinct.kernel_time_by_category.get(
            c, dict.fromkeys(CATEGORIES, 0)
        )
        item["kernel_time_by_name"] = distinct.kernel_time_by_name.get(c, {})
        out.append(item)
    return out


def _nsys_kernel_count(
    ranges: pd.DataFrame, codes: Int64s, runs: Slices, index: RunIndex, n: int, per_name: Int64s
) -> Int64s:
    """nsys counts a kernel once per (range name, thread, style). Threads hold disjoint rows, so
    the per-name distinct count is nsys's unless one name has both push/pop and start/end ranges."""
    style = (ranges["style"].to_numpy() == "PushPop").astype(np.int64)
    if len(pd.unique(codes * 2 + style)) == n:
        return per_name
    g, lo, hi = merge_runs(codes[runs.range_row] * 2 + style[runs.range_row], runs.lo, runs.hi)
    by_style = reduce_runs(g, lo, hi, 2 * n, index).kernel_count
    total: Int64s = by_style.reshape(n, 2).sum(axis=1)
    return total
