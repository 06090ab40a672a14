"""Grouped work over numpy arrays: interval unions per group code, prefix sums, and runs of rows
(merging a group's runs, walking their rows in bounded batches).

Group codes are dense integers 0..n_groups-1 (one per range instance, or per range name). Every
function is vectorized; none loops over events in Python.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

Int64s = npt.NDArray[np.int64]


def segments(sorted_groups: Int64s) -> tuple[Int64s, Int64s]:
    """(group code, first position) of each run of equal codes in an already grouped array."""
    if len(sorted_groups) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    first = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    return sorted_groups[first], first


def group_union(groups: Int64s, starts: Int64s, ends: Int64s, n_groups: int) -> tuple[Int64s, Int64s, Int64s]:
    """Per group: (union length of its [start, end) intervals, first start, last end).

    The union is GPU busy time, not the sum of kernel times. Intervals are sorted by (group, start)
    -- usually nearly sorted already, which the stable sort exploits -- and a running maximum of ends
    restarts at each group (ends are lifted by a per-group offset so the cumulative maximum cannot
    leak across groups). An interval starting after the running maximum opens a new busy segment.
    """
    union = np.zeros(n_groups, dtype=np.int64)
    first_start = np.full(n_groups, -1, dtype=np.int64)
    last_end = np.full(n_groups, -1, dtype=np.int64)
    if len(groups) == 0:
        return union, first_start, last_end
    base = int(starts.min())
    width = max(int(ends.max()), int(starts.max())) - base + 1
    if width * (int(groups.max()) + 1) >= _KEY_LIMIT:
        return _group_union_in_batches(groups, starts, ends, n_groups, width)
    offset = groups * width
    offset -= base
    key = starts + offset
    if not bool(np.all(key[1:] >= key[:-1])):
        order = np.argsort(key, kind="stable")
        key, groups, ends, offset = key[order], groups[order], ends[order], offset[order]
    reach = ends + offset  # ends lifted like the starts; an interval never ends before it starts
    np.maximum(reach, key, out=reach)
    np.maximum.accumulate(reach, out=reach)
    new = np.empty(len(key), dtype=bool)
    new[0] = True
    np.greater(key[1:], reach[:-1], out=new[1:])
    new[1:] |= groups[1:] != groups[:-1]
    seg_first = np.flatnonzero(new)
    seg_last = np.append(seg_first[1:] - 1, len(key) - 1)
    # each group's busy segments are adjacent (sorted by key): summed exactly in int64 (a float
    # bincount would round lengths past 2^53 ns)
    seg_code, seg_at = segments(groups[seg_first])
    union[seg_code] = np.add.reduceat(reach[seg_last] - key[seg_first], seg_at)
    code, at = segments(groups)
    last_at = np.append(at[1:] - 1, len(groups) - 1)
    first_start[code] = key[at] - offset[at]
    last_end[code] = reach[last_at] - offset[last_at]
    return union, first_start, last_end


_KEY_LIMIT = 1 << 62  # group_union's keys (group x width + time) stay below this, inside int64


def _group_union_in_batches(
    groups: Int64s, starts: Int64s, ends: Int64s, n_groups: int, width: int
) -> tuple[Int64s, Int64s, Int64s]:
    """group_union for intervals spread too widely for one key per (group, time): the groups in
    batches of consecutive codes that fit (a span of 2^61 ns, say, one group at a time)."""
    per_batch = max(1, (_KEY_LIMIT - 1) // width - 1)
    order = np.argsort(groups, kind="stable")  # (each group's intervals keep their order)
    groups, starts, ends = groups[order], starts[order], ends[order]
    union = np.zeros(n_groups, dtype=np.int64)
    first_start = np.full(n_groups, -1, dtype=np.int64)
    last_end = np.full(n_groups, -1, dtype=np.int64)
    code = int(groups[0])
    while code < n_groups:
        a, b = np.searchsorted(groups, [code, code + per_batch])
        if a < b:
            n = min(per_batch, n_groups - code)
            parts = group_union(groups[a:b] - code, starts[a:b], ends[a:b], n)
            for out, part in zip((union, first_start, last_end), parts, strict=True):
                out[code : code + n] = part
        code = int(groups[b]) if b < len(groups) else n_groups  # (skip codes without intervals)
    return union, first_start, last_end


def prefix_sums(values: npt.NDArray[np.integer] | npt.NDArray[np.bool_]) -> Int64s:
    """Running totals with a leading zero: the sum over rows [lo, hi) is `p[hi] - p[lo]`."""
    out = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=out[1:])
    return out


def merge_runs(groups: Int64s, lo: Int64s, hi: Int64s) -> tuple[Int64s, Int64s, Int64s]:
    """Per group, its row runs [lo, hi) merged into disjoint runs: (group, lo, hi), sorted by group
    then lo. Overlapping or touching runs of one group become one, so each row counts once."""
    keep = hi > lo
    groups, lo, hi = groups[keep], lo[keep], hi[keep]
    if len(groups) == 0:
        return groups, lo, hi
    order = np.lexsort((lo, groups))
    groups, lo, hi = groups[order], lo[order], hi[order]
    width = int(hi.max()) + 1
    # lift each group above the previous one so a running maximum cannot leak across groups
    lifted_hi = np.maximum.accumulate(groups * width + hi)
    lifted_lo = groups * width + lo
    opens = np.r_[True, (groups[1:] != groups[:-1]) | (lifted_lo[1:] > lifted_hi[:-1])]
    first = np.flatnonzero(opens)
    last = np.append(first[1:], len(groups)) - 1
    return groups[first], lo[first], lifted_hi[last] - groups[first] * width


def chunked_runs(
    groups: Int64s, lo: Int64s, hi: Int64s, max_rows: int, split: bool = False
) -> Iterator[tuple[Int64s, Int64s]]:
    """The rows of the runs, as (group of each row, row) batches of about `max_rows` rows.

    Runs must be sorted by group. Without `split` a group's runs never straddle two batches (a group
    larger than `max_rows` is a batch of its own), so per-group results of a batch are final; with
    `split`, batches are exactly `max_rows` rows and runs are cut wherever they fall.
    """
    keep = hi > lo
    groups, lo, hi = groups[keep], lo[keep], hi[keep]
    if len(groups) == 0:
        return
    lengths = hi - lo
    ends = np.cumsum(lengths)
    begins = ends - lengths
    if split:
        for t0 in range(0, int(ends[-1]), max_rows):
            t1 = t0 + max_rows
            i0, i1 = int(np.searchsorted(ends, t0, side="right")), int(np.searchsorted(begins, t1))
            cut_lo = lo[i0:i1] + np.maximum(t0 - begins[i0:i1], 0)
            cut_hi = lo[i0:i1] + np.minimum(t1 - begins[i0:i1], lengths[i0:i1])
            yield _expand(groups[i0:i1], cut_lo, cut_hi)
        return
    group_last = np.append(np.flatnonzero(groups[1:] != groups[:-1]), len(groups) - 1)
    start = 0  # first run of the batch
    while start < len(groups):
        # the last group boundary that keeps the batch within max_rows, or the first group's end
        fits = group_last[(ends[group_last] - begins[start] <= max_rows) & (group_last >= start)]
        stop = int(fits[-1]) + 1 if len(fits) else int(group_last[group_last >= start][0]) + 1
        yield _expand(groups[start:stop], lo[start:stop], hi[start:stop])
        start = stop


def _expand(groups: Int64s, lo: Int64s, hi: Int64s) -> tuple[Int64s, Int64s]:
    """Every row of every run, with its run's group."""
    run_len = hi - lo
    shift = np.repeat(lo - (np.cumsum(run_len) - run_len), run_len)
    rows = np.arange(int(run_len.sum()), dtype=np.int64) + shift
    return np.repeat(groups, run_len), rows
