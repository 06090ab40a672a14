"""Interval arithmetic over numpy arrays (no per-event Python loops)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
CHUNK = 1 << 19


def union_length(starts: IntArray, ends: IntArray) -> int:
    """Total length covered by the union of [start, end) intervals: GPU busy time, not their sum.

    In order of start, each interval adds what reaches past every earlier interval's end:
    max(0, end - max(start, reach so far)) -- exact, because everything from the latest start up to
    that reach is already covered. Walked in chunks, so memory beyond the order is bounded.
    """
    if len(starts) == 0:
        return 0
    order = None if bool(np.all(starts[1:] >= starts[:-1])) else np.argsort(starts, kind="stable")
    total, reach = 0, np.iinfo(np.int64).min
    for lo in range(0, len(starts), CHUNK):
        pick = slice(lo, lo + CHUNK) if order is None else order[lo : lo + CHUNK]
        s, e = starts[pick], ends[pick]
        before = np.empty(len(e), dtype=np.int64)
        before[0] = reach
        np.maximum.accumulate(e[:-1], out=before[1:])
        np.maximum(before[1:], reach, out=before[1:])
        total += int(np.maximum(e - np.maximum(s, before), 0).sum())
        reach = max(reach, int(e.max()))
    return total
