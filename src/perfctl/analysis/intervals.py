"""Interval arithmetic over numpy arrays (no per-event Python loops)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


def union_length(starts: IntArray, ends: IntArray) -> int:
    """Total length covered by the union of [start, end) intervals: GPU busy time, not their sum.

    Sort by start, carry the running maximum end; an interval that starts after everything before it
    has ended opens a new covered segment.
    """
    if len(starts) == 0:
        return 0
    order = np.argsort(starts, kind="stable")
    s = np.asarray(starts, dtype=np.int64)[order]
    e = np.maximum(np.asarray(ends, dtype=np.int64)[order], s)
    reach = np.maximum.accumulate(e)
    new_segment = np.empty(len(s), dtype=bool)
    new_segment[0] = True
    new_segment[1:] = s[1:] > reach[:-1]
    seg_first = np.flatnonzero(new_segment)
    seg_last = np.append(seg_first[1:] - 1, len(s) - 1)
    return int((reach[seg_last] - s[seg_first]).sum())
