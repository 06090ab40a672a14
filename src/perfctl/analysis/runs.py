"""Figures over runs of launch-ordered activity rows, per group (a range instance, or a range name).

`RunIndex` answers sums over any run with a few binary searches and prefix-sum differences: kernels,
kernel time, launches, memory operations, and whether the run's kernels ran one after another on the
GPU (then their busy time is simply their summed time). `reduce_runs` gives the figures over the
*distinct* activities of each group; it walks rows only where it must: for launch-delay statistics
and top kernels, for GPU busy time where kernels overlap (the union of their intervals), and for
everything when one GPU activity was matched by several launch calls (`fanned_out`), which needs
de-duplication. Row walks go in bounded batches, so memory stays flat on any export size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from perfctl.analysis import spill
from perfctl.analysis.grouping import chunked_runs, group_union, prefix_sums, segments
from perfctl.analysis.kernel_categories import CATEGORIES, categorize
from perfctl.analysis.result import TopKernel
from perfctl.analysis.spill import GroupValues
from perfctl.nsys_export.events import KERNEL, MEMCPY, MEMSET, Activities

# pandas is imported where it is used: its import takes half a second, which `perfctl analyze`
# spends while the export's readers already decode (nsys_export.windows)
if TYPE_CHECKING:
    import pandas as pd

Int64s = npt.NDArray[np.int64]
STAT_KEYS = ("count", "mean", "std", "min", "median", "p95", "max")
MEMORY_KINDS = ((MEMCPY, "memcpy"), (MEMSET, "memset"))
KERNEL_NAMES_KEPT = 200  # per range name, by time: enough to join the torch pass's operators
BATCH_ROWS = 1 << 19  # rows gathered at once: bounds the memory of a reduction


def describe(values: npt.ArrayLike) -> dict[str, float]:
    """count, mean, sample std, min, median, p95 (linear interpolation), max."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return dict.fromkeys(STAT_KEYS, 0.0)
    low, median, p95, high = np.percentile(v, [0, 50, 95, 100])
    return {
        "count": float(len(v)),
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "min": float(low),
        "median": float(median),
        "p95": float(p95),
        "max": float(high),
    }


def distinct_first(keys: list[Int64s]) -> npt.NDArray[np.bool_]:
    """Mask keeping the first row of every distinct combination of the key columns."""
    import pandas as pd

    if len(keys[0]) == 0:
        return np.zeros(0, dtype=bool)
    duplicated: npt.NDArray[np.bool_] = (
        pd.DataFrame({str(i): k for i, k in enumerate(keys)}).duplicated().to_numpy()
    )
    return ~duplicated


class RunIndex:
    """Prefix sums over the launch-ordered activities, for O(log n) figures of any run."""

    def __init__(self, acts: Activities) -> None:
        self.acts = acts
        self.kernel_rows = np.flatnonzero(acts.kind == KERNEL)
        k_start, k_end = acts.start[self.kernel_rows], acts.end[self.kernel_rows]
        self._kernel_time = prefix_sums(k_end - k_start)
        # a kernel "follows" when it starts after the previous kernel (in launch order) ended
        overlaps = np.zeros(len(k_start), dtype=bool)
        np.less(k_start[1:], k_end[:-1], out=overlaps[1:])
        self._overlaps = prefix_sums(overlaps)
        del k_start, k_end, overlaps
        self.memory_rows = np.flatnonzero(acts.kind != KERNEL)
        m_kind = acts.kind[self.memory_rows]
        m_duration = acts.end[self.memory_rows] - acts.start[self.memory_rows]
        m_bytes = acts.bytes[self.memory_rows]
        self._memory = {
            label: (prefix_sums(m_kind == code), prefix_sums(np.where(m_kind == code, m_bytes, 0)),
                    prefix_sums(np.where(m_kind == code, m_duration, 0)))
            for code, label in MEMORY_KINDS
        }  # fmt: skip
        new_launch = np.ones(len(acts), dtype=bool)  # the activities of one launch call are adjacent
        if len(acts) > 1:
            new_launch[1:] = (acts.launch_thread[1:] != acts.launch_thread[:-1]) | (
                acts.launch_start[1:] != acts.launch_start[:-1]
            )
        self._launches = prefix_sums(new_launch)

    def kernel_span(self, lo: Int64s, hi: Int64s) -> tuple[Int64s, Int64s]:
        """Positions [a, b) in `kernel_rows` of the kernels among rows [lo, hi)."""
        return np.searchsorted(self.kernel_rows, lo), np.searchsorted(self.kernel_rows, hi)

    def kernel_time(self, lo: Int64s, hi: Int64s) -> Int64s:
        return self.kernel_time_of(*self.kernel_span(lo, hi))

    def kernels(self, lo: Int64s, hi: Int64s) -> Int64s:
        a, b = self.kernel_span(lo, hi)
        return b - a

    def launches(self, lo: Int64s, hi: Int64s) -> Int64s:
        return self._launches[hi] - self._launches[lo]

    def memory(self, lo: Int64s, hi: Int64s) -> dict[str, tuple[Int64s, Int64s, Int64s]]:
        a, b = np.searchsorted(self.memory_rows, lo), np.searchsorted(self.memory_rows, hi)
        return {label: tuple(p[b] - p[a] for p in sums) for label, sums in self._memory.items()}  # type: ignore[misc]

    def kernel_time_of(self, a: Int64s, b: Int64s) -> Int64s:
        """Summed time of kernels a..b-1 (positions in `kernel_rows`)."""
        return self._kernel_time[b] - self._kernel_time[a]

    def in_sequence(self, a: Int64s, b: Int64s) -> npt.NDArray[np.bool_]:
        """Whether kernels a..b-1 each started after the previous one ended (so they never overlap)."""
        second = np.minimum(a + 1, b)
        ok: npt.NDArray[np.bool_] = self._overlaps[b] - self._overlaps[second] == 0
        return ok


@dataclass
class DistinctFigures:
    """Per group, over the distinct activities of its runs: in one window of the export, or added up
    over windows (`add`; windows are cut where the GPU is idle, so busy times add up too)."""

    kernel_count: Int64s
    gpu_busy_ns: Int64s
    first_start: Int64s  # -1 where the group has no kernel
    last_end: Int64s
    memory: dict[str, tuple[Int64s, Int64s, Int64s]]  # label -> (count, bytes, time)
    delays: dict[int, list[Int64s]] = field(default_factory=dict)  # launch -> kernel start, raw
    tallies: list[pd.DataFrame] = field(default_factory=list)  # calls and time per (group, kernel)
    spilled: GroupValues | None = None  # the delays of the windows added, on disk

    @staticmethod
    def empty(n_groups: int) -> DistinctFigures:
        return _empty_figures(n_groups)

    def add(self, other: DistinctFigures) -> None:
        """Add another window's figures (windows come in time order)."""
        self.kernel_count += other.kernel_count
        self.gpu_busy_ns += other.gpu_busy_ns
        first = (self.first_start < 0) & (other.first_start >= 0)  # windows come in time order
        self.first_start[first] = other.first_start[first]
        self.last_end[:] = np.maximum(self.last_end, other.last_end)
        for label, sums in self.memory.items():
            for mine, theirs in zip(sums, other.memory[label], strict=True):
                mine += theirs
        if other.delays:
            self.spilled = self.spilled or GroupValues()
            for c, parts in other.delays.items():
                for part in parts:
                    self.spilled.append(c, part)
        self.tallies.extend(other.tallies)
        if len(self.tallies) > 8:  # added up as they come: what is kept stays small
            self.tallies = [_sum_tallies(self.tallies)]

    def delay_stats(self) -> dict[int, dict[str, float]]:
        """Launch-to-start statistics per group (reading back what was spilled, one group at a time)."""
        stats = {c: describe(np.concatenate(parts)) for c, parts in self.delays.items()}
        if self.spilled is not None:
            for c in self.spilled.groups():
                large = self.spilled.count(c) > spill.SEGMENT  # read back in segments
                stats[c] = (
                    spill.streamed_stats(self.spilled, c) if large else describe(self.spilled.values(c))
                )
            self.spilled.close()
        return stats


def sum_by(groups: Int64s, values: Int64s, n_groups: int) -> Int64s:
    """Exact integer sums per group (np.add.at keeps int64; float bincount would round past 2**53)."""
    out = np.zeros(n_groups, dtype=np.int64)
    np.add.at(out, groups, values)
    return out


def reduce_runs(
    groups: Int64s,
    lo: Int64s,
    hi: Int64s,
    n_groups: int,
    index: RunIndex,
    *,
    with_delays: bool = False,
    with_kernels: bool = False,
) -> DistinctFigures:
    """Figures over the distinct activities of each group's runs. Runs must be sorted by group, then
    by row, and disjoint within a group (`merge_runs` makes them so). With `with_delays` and
    `with_kernels`, also the raw launch-to-start delays and the calls and time per kernel name."""
    acts = index.acts
    if acts.fanned_out:  # every group by walking rows, de-duplicated
        out = _empty_figures(n_groups)
        walk_whole = np.ones(n_groups, dtype=bool)
    else:  # only groups whose kernels overlap need their rows for the busy time
        out = _figures_from_sums(groups, lo, hi, n_groups, index)
        walk_whole = out.gpu_busy_ns < 0
        out.gpu_busy_ns[walk_whole] = 0
    whole = walk_whole[groups]
    delays = out.delays
    batches = [(whole, False)]
    if with_delays or with_kernels:
        batches.append((~whole, True))
    for select, split in batches:
        for g, rows in chunked_runs(groups[select], lo[select], hi[select], BATCH_ROWS, split=split):
            if acts.fanned_out:  # one GPU activity reached by several launch rows of a thread counts once
                keep = distinct_first([g, acts.activity[rows], acts.launch_thread[rows]])
                g, rows = g[keep], rows[keep]
            kind = acts.kind[rows]
            is_k = kind == KERNEL
            kg, kr = g[is_k], rows[is_k]
            k_start, k_end = acts.start[kr], acts.end[kr]
            if not split:
                busy, first, last = group_union(kg, k_start, k_end, n_groups)
                out.gpu_busy_ns += busy
                np.copyto(out.first_start, first, where=first >= 0)
                np.copyto(out.last_end, last, where=last >= 0)
            if acts.fanned_out:
                _count_rows(out, g, rows, kind, kg, n_groups, acts)
            if with_delays and len(kg):
                code_at, at = segments(kg)
                for c, values in zip(
                    code_at.tolist(), np.split(k_start - acts.launch_start[kr], at[1:]), strict=True
                ):
                    delays.setdefault(c, []).append(values)
            if with_kernels and len(kg):
                out.tallies.append(_tally(kg, kr, k_end - k_start, acts))
    return out


def _empty_figures(n_groups: int) -> DistinctFigures:
    def zeros() -> Int64s:
        return np.zeros(n_groups, dtype=np.int64)

    return DistinctFigures(
        zeros(),
        zeros(),
        np.full(n_groups, -1, np.int64),
        np.full(n_groups, -1, np.int64),
        {label: (zeros(), zeros(), zeros()) for _, label in MEMORY_KINDS},
    )


def _figures_from_sums(
    groups: Int64s, lo: Int64s, hi: Int64s, n_groups: int, index: RunIndex
) -> DistinctFigures:
    """Counts, memory and, where kernels ran in sequence, busy time, first start and last end, from
    prefix sums. Groups whose kernels overlap get busy time -1: their rows must be walked."""
    out = _empty_figures(n_groups)
    a, b = index.kernel_span(lo, hi)
    out.kernel_count = sum_by(groups, b - a, n_groups)
    out.memory = {
        label: tuple(sum_by(groups, v, n_groups) for v in values)  # type: ignore[misc]
        for label, values in index.memory(lo, hi).items()
    }
    has = b > a
    g, a, b = groups[has], a[has], b[has]
    if len(g) == 0:
        return out
    starts = index.acts.start[index.kernel_rows[a]]
    ends = index.acts.end[index.kernel_rows[b - 1]]
    ok = index.in_sequence(a, b)  # within each run ...
    same = g[1:] == g[:-1]
    ok[1:] &= ~same | (starts[1:] >= ends[:-1])  # ... and from one run of a group to the next
    out.gpu_busy_ns = sum_by(g, index.kernel_time_of(a, b), n_groups)
    first_run = np.r_[True, ~same]
    last_run = np.r_[~same, True]
    out.first_start[g[first_run]] = starts[first_run]
    out.last_end[g[last_run]] = ends[last_run]
    overlapping = np.unique(g[~ok])
    out.gpu_busy_ns[overlapping] = -1
    out.first_start[overlapping] = -1
    out.last_end[overlapping] = -1
    return out


def _count_rows(
    out: DistinctFigures,
    g: Int64s,
    rows: Int64s,
    kind: npt.NDArray[np.int8],
    kg: Int64s,
    n_groups: int,
    acts: Activities,
) -> None:
    out.kernel_count += np.bincount(kg, minlength=n_groups)
    for code, label in MEMORY_KINDS:
        m = kind == code
        count, nbytes, time = out.memory[label]
        count += np.bincount(g[m], minlength=n_groups)
        nbytes += sum_by(g[m], acts.bytes[rows[m]], n_groups)
        time += sum_by(g[m], acts.end[rows[m]] - acts.start[rows[m]], n_groups)


def _tally(groups: Int64s, rows: Int64s, duration: Int64s, acts: Activities) -> pd.DataFrame:
    """Calls and time per (group, kernel name) in one batch."""
    import pandas as pd

    name = acts.name_id[rows].astype(np.int64)
    width = int(name.max()) + 4  # the stand-in ids of memcpy/memset are negative
    combo, uniques = pd.factorize(groups * width + (name + 3))
    short = np.zeros(len(uniques), dtype=np.int64)
    short[combo] = acts.short_id[rows]
    return pd.DataFrame(
        {
            "g": uniques // width,
            "name": uniques % width - 3,
            "short": short,
            "calls": np.bincount(combo, minlength=len(uniques)),
            "time": sum_by(combo, duration, len(uniques)),
        }
    )


def _sum_tallies(tallies: list[pd.DataFrame]) -> pd.DataFrame:
    """Tallies added up per (group, kernel name), in order of first appearance."""
    import pandas as pd

    table = pd.concat(tallies, ignore_index=True)
    return (
        table.groupby(["g", "name"], sort=False)
        .agg(short=("short", "first"), calls=("calls", "sum"), time=("time", "sum"))
        .reset_index()
    )


KernelTables = tuple[dict[int, list[TopKernel]], dict[int, dict[str, int]], dict[int, dict[str, list[int]]]]


def top_kernels(
    tallies: list[pd.DataFrame], top_n: int, names: Callable[[list[int]], dict[int, str]]
) -> KernelTables:
    """Per group: its kernels by full name, largest total time first, with their share of the group's
    kernel time and their category; its kernel time per category (every kernel, not only the top
    ones); and the time per kernel name. Tallies of one group from several batches are added up
    first."""
    if not tallies:
        return {}, {}, {}
    table = _sum_tallies(tallies)
    text = names(sorted(set(table["name"].tolist()) | set(table["short"].tolist())))
    table["category"] = [categorize(text.get(int(n), "")) for n in table["name"].tolist()]
    by_category: dict[int, dict[str, int]] = {}
    for (g, category), time in table.groupby(["g", "category"])["time"].sum().items():
        by_category.setdefault(int(g), dict.fromkeys(CATEGORIES, 0))[str(category)] = int(time)
    totals = table.groupby("g")["time"].sum()
    ordered = table.sort_values(["g", "time", "calls"], ascending=[True, False, False])
    by_name: dict[int, dict[str, list[int]]] = {}
    for row in ordered.groupby("g").head(KERNEL_NAMES_KEPT).itertuples(index=False):
        by_name.setdefault(int(row.g), {})[text.get(int(row.name), f"[string {row.name}]")] = [
            int(row.calls),
            int(row.time),
        ]
    top = ordered.groupby("g").head(top_n)
    result: dict[int, list[TopKernel]] = {}
    for row in top.itertuples(index=False):
        total = int(totals[row.g])
        result.setdefault(int(row.g), []).append(
            {
                "name": text.get(int(row.name), f"[string {row.name}]"),
                "short_name": text.get(int(row.short), f"[string {row.short}]"),
                "category": row.category,
                "count": int(row.calls),
                "time_ns": int(row.time),
                "share_of_range_kernel_time": int(row.time) / total if total else 0.0,
            }
        )
    return result, by_category, by_name
