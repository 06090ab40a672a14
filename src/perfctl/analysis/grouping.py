"""Grouped reductions over numpy arrays: sums, counts and interval unions per group code.

Group codes are dense integers 0..n_groups-1 (one per range instance, or per range name). Every
function is vectorized; none loops over events in Python.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Int64s = npt.NDArray[np.int64]


def group_count(groups: Int64s, n_groups: int) -> Int64s:
    return np.bincount(groups, minlength=n_groups).astype(np.int64)


def group_sum(groups: Int64s, values: Int64s, n_groups: int) -> Int64s:
    """Exact for sums below 2**53 (104 days of nanoseconds), which float64 bincount holds exactly."""
    return np.rint(np.bincount(groups, weights=values, minlength=n_groups)).astype(np.int64)


def group_order(groups: Int64s, n_groups: int) -> Int64s:
    """A stable order that makes each group contiguous (radix sort when the codes fit 16 bits)."""
    codes = groups.astype(np.int16) if n_groups < 2**15 else groups
    return np.argsort(codes, kind="stable")


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
    width = int(np.maximum(ends, starts).max()) - base + 1
    if width * (int(groups.max()) + 1) >= 2**62:
        raise OverflowError("time span too large for a grouped interval union")
    key = groups * width + (starts - base)
    if not bool(np.all(key[1:] >= key[:-1])):
        order = np.argsort(key, kind="stable")
        key, groups, ends = key[order], groups[order], ends[order]
    lifted_end = np.maximum(groups * width + (ends - base), key)
    reach = np.maximum.accumulate(lifted_end)
    new = np.empty(len(key), dtype=bool)
    new[0] = True
    new[1:] = (groups[1:] != groups[:-1]) | (key[1:] > reach[:-1])
    seg_first = np.flatnonzero(new)
    seg_last = np.append(seg_first[1:] - 1, len(key) - 1)
    np.add.at(union, groups[seg_first], reach[seg_last] - key[seg_first])
    code, at = segments(groups)
    last_at = np.append(at[1:] - 1, len(groups) - 1)
    first_start[code] = key[at] - code * width + base
    last_end[code] = reach[last_at] - code * width + base
    return union, first_start, last_end
