"""Interval arithmetic over numpy arrays (no per-event Python loops)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from perfctl.analysis.grouping import group_union

IntArray = npt.NDArray[np.int64]


def union_length(starts: IntArray, ends: IntArray) -> int:
    """Total length covered by the union of [start, end) intervals: GPU busy time, not their sum."""
    if len(starts) == 0:
        return 0
    groups = np.zeros(len(starts), dtype=np.int64)
    s, e = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    return int(group_union(groups, s, e, 1)[0][0])
