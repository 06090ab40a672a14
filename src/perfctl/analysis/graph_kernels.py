"""Kernels replayed from CUDA graphs, and CUDA graph launches, per NVTX range instance and range name.

Under `--cuda-graph-trace=node` (perfctl's nsys pass) nsys records each kernel a graph replay runs,
with its graph node in CUPTI's graphNodeId and the correlation id of the cudaGraphLaunch call that
replayed it: the kernel is attributed to the ranges around that call like any other
(analysis.attribution). A range's kernels split into those replayed from graphs (graphNodeId set)
and those launched one by one (NULL); `graph_kernel_count` counts the first exactly as
`kernel_count` counts all of them (analysis.ranges: each kernel once per range name, launching
thread and range style), so `kernel_count - graph_kernel_count` is the one-by-one count.

An export whose kernel table has no graphNodeId column cannot tell the two apart: its figures are
None (null in analysis.json, never 0), and the analysis warns once. Graph launch calls are counted
whether or not the export recorded what they ran (whole-graph tracing keeps nothing of it in nsys
2022.4), under the same projection as launches: made on the range's thread, inside the range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from perfctl.analysis.attribution import Slices
from perfctl.analysis.grouping import chunked_runs, merge_runs, prefix_sums
from perfctl.analysis.runs import BATCH_ROWS, distinct_first, sum_by
from perfctl.nsys_export.columns import Columns
from perfctl.nsys_export.events import Activities

# pandas is imported where it is used: its import takes half a second (see analysis.ranges)
if TYPE_CHECKING:
    import pandas as pd

Int64s = npt.NDArray[np.int64]

NOT_RECORDED_WARNING = (
    "the export's kernel table has no graphNodeId column (an nsys without CUDA graph tracing): kernels "
    "replayed from CUDA graphs cannot be told from kernels launched one by one, so every "
    "graph_kernel_count is null"
)


@dataclass
class GraphFigures:
    """Per range instance and per range name: attributed kernels replayed from CUDA graphs (None when
    the export cannot tell, `recorded` False), and per instance the graph launch calls inside it; in
    one window of the export, or added up over windows (`add`: windows hold disjoint activities and
    calls)."""

    instance_kernels: Int64s | None
    name_kernels: Int64s | None
    instance_launches: Int64s

    @property
    def recorded(self) -> bool:
        return self.instance_kernels is not None

    @staticmethod
    def empty(n_instances: int, n_names: int) -> GraphFigures:
        return GraphFigures(
            np.zeros(n_instances, np.int64), np.zeros(n_names, np.int64), np.zeros(n_instances, np.int64)
        )

    def add(self, other: GraphFigures) -> None:
        if self.instance_kernels is None or other.instance_kernels is None:
            self.instance_kernels = self.name_kernels = None  # one window that cannot tell: none can
        else:
            assert self.name_kernels is not None and other.name_kernels is not None
            self.instance_kernels += other.instance_kernels
            self.name_kernels += other.name_kernels
        self.instance_launches += other.instance_launches


def graph_figures(
    ranges: pd.DataFrame, codes: Int64s, n_names: int, runs: Slices, acts: Activities
) -> GraphFigures:
    """One window's figures: `runs` are its activities' runs per range instance (the projection),
    `codes` each range's name code (analysis.ranges.name_codes)."""
    launches = graph_launches_per_range(ranges, acts.graph_launch_calls)
    if acts.in_graph is None:
        return GraphFigures(None, None, launches)
    in_graph = acts.in_graph
    prefix = prefix_sums(in_graph)
    per_instance = _distinct_graph_kernels(runs.range_row, runs.lo, runs.hi, len(ranges), acts, prefix)
    # per name as nsys counts kernels: once per (name, range style), the two styles' counts added
    # (analysis.ranges._nsys_kernel_count); a name of one style is simply its distinct count
    style = (ranges["style"].to_numpy() == "PushPop").astype(np.int64)
    key = codes * 2 + style
    g, lo, hi = merge_runs(key[runs.range_row], runs.lo, runs.hi)
    per_key = _distinct_graph_kernels(g, lo, hi, 2 * n_names, acts, prefix)
    per_name: Int64s = per_key.reshape(n_names, 2).sum(axis=1)
    return GraphFigures(per_instance, per_name, launches)


def _distinct_graph_kernels(
    groups: Int64s, lo: Int64s, hi: Int64s, n_groups: int, acts: Activities, prefix: Int64s
) -> Int64s:
    """Per group, the distinct graph kernels of its runs (sorted by group, disjoint within a group),
    as analysis.runs.reduce_runs counts kernels: from prefix sums, or, where one GPU activity was
    matched by several launch rows (`fanned_out`), by walking the rows, each activity once per
    (group, launching thread)."""
    if not acts.fanned_out:
        return sum_by(groups, prefix[hi] - prefix[lo], n_groups)
    assert acts.in_graph is not None
    out = np.zeros(n_groups, dtype=np.int64)
    for g, rows in chunked_runs(groups, lo, hi, BATCH_ROWS):
        keep = distinct_first([g, acts.activity[rows], acts.launch_thread[rows]])
        g, rows = g[keep], rows[keep]
        out += np.bincount(g[acts.in_graph[rows]], minlength=n_groups)
    return out


def graph_launches_per_range(ranges: pd.DataFrame, calls: Columns) -> Int64s:
    """Per range instance, the CUDA graph launch calls (`calls`: thread, start, end) inside it under
    nsys's projection: made on the range's thread, starting at or after its start and ending at or
    before its end. Ranges ended on another thread take no part (as in analysis.attribution)."""
    out = np.zeros(len(ranges), dtype=np.int64)
    if len(calls["thread"]) == 0 or ranges.empty:
        return out
    eligible = ~ranges["ended_on_other_thread"].to_numpy(dtype=bool)
    thread = ranges["thread"].to_numpy(np.int64)
    start, end = ranges["start"].to_numpy(np.int64), ranges["end"].to_numpy(np.int64)
    for t in np.unique(calls["thread"]).tolist():
        mine = np.flatnonzero(eligible & (thread == t))
        if len(mine) == 0:
            continue
        of_thread = calls["thread"] == t
        order = np.argsort(calls["start"][of_thread], kind="stable")
        call_start, call_end = calls["start"][of_thread][order], calls["end"][of_thread][order]
        first = np.searchsorted(call_start, start[mine], side="left")
        if bool(np.all(call_end[1:] >= call_end[:-1])):  # one call after another: those ending in time
            out[mine] = np.maximum(np.searchsorted(call_end, end[mine], side="right") - first, 0)
            continue
        for i, f in zip(mine.tolist(), first.tolist(), strict=True):  # calls that nest: range by range
            out[i] = int(np.count_nonzero(call_end[f:] <= end[i]))
    return out
