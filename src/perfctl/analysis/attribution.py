"""Attribute GPU activities to the NVTX ranges that launched them, as `nsys stats -r nvtxkernsum` does.

NVIDIA's projection: an activity belongs to every NVTX range, on the thread that made the launching
CUDA API call, that contains that call: range.start <= launch.start and launch.end <= range.end. Only
ranges that began and ended on one thread take part (nsys drops start/end ranges ended elsewhere).
A kernel inside nested ranges therefore counts in each of them.

Beyond that projection, `attribute_other_threads` finds, for each range, the activities launched by
*other* threads of the same process while the range was open (worker threads), which nsys gives to
no range of the launching thread's owner.

Both are sorted sweeps, not SQL range joins: launches are sorted by (owner, start) and each range
finds its candidates with two binary searches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from perfctl.nsys_export.events import Activities, process_of

Int64s = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Pairs:
    """Positional row numbers: range `range_row[i]` holds activity `act_row[i]`."""

    range_row: Int64s
    act_row: Int64s

    def __len__(self) -> int:
        return len(self.range_row)

    @staticmethod
    def empty() -> Pairs:
        return Pairs(np.empty(0, np.int64), np.empty(0, np.int64))


def _sweep(
    r_owner: Int64s, r_start: Int64s, r_end: Int64s, l_owner: Int64s, l_start: Int64s, l_end: Int64s
) -> tuple[Int64s, Int64s]:
    """(range index, launch index) for every launch whose [start, end] lies in a range of its owner."""
    if len(r_owner) == 0 or len(l_owner) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    owners, codes = np.unique(np.concatenate([l_owner, r_owner]), return_inverse=True)
    l_code, r_code = codes[: len(l_owner)], codes[len(l_owner) :]
    t0 = min(int(l_start.min()), int(r_start.min()))
    span = max(int(l_end.max()), int(r_end.max())) - t0 + 1
    if span * len(owners) >= 2**62:
        raise OverflowError("export time span too large for the attribution key")
    l_key = l_code * span + (l_start - t0)
    order = np.argsort(l_key, kind="stable")
    sorted_key = l_key[order]
    lo = np.searchsorted(sorted_key, r_code * span + (r_start - t0), side="left")
    hi = np.searchsorted(sorted_key, r_code * span + (r_end - t0), side="right")
    counts = hi - lo
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # Expand every range into its candidate launch positions lo..hi-1 without a Python loop: the
    # position of the j-th pair is j + (lo - pairs before this range). int32 where it fits halves
    # the memory of these (pairs-long) arrays.
    small = max(total, len(order)) < 2**31
    index_type: type[np.signedinteger[Any]] = np.int32 if small else np.int64
    shift = (lo - (np.cumsum(counts) - counts)).astype(index_type)
    position: npt.NDArray[np.signedinteger[Any]] = np.arange(total, dtype=index_type)
    np.add(position, np.repeat(shift, counts), out=position)
    pair_launch = order[position]
    del position
    pair_range = np.repeat(np.arange(len(r_owner), dtype=index_type), counts)
    inside = l_end[pair_launch] <= r_end[pair_range]
    return pair_range[inside].astype(np.int64), pair_launch[inside].astype(np.int64)


def _range_arrays(ranges: pd.DataFrame) -> tuple[Int64s, Int64s, Int64s, Int64s]:
    eligible = np.flatnonzero(~ranges["ended_on_other_thread"].to_numpy(dtype=bool))
    return (
        eligible,
        ranges["thread"].to_numpy(np.int64)[eligible],
        ranges["start"].to_numpy(np.int64)[eligible],
        ranges["end"].to_numpy(np.int64)[eligible],
    )


def attribute_activities_to_ranges(ranges: pd.DataFrame, acts: Activities) -> Pairs:
    """NVIDIA's projection: same thread, launch call inside the range."""
    if ranges.empty or len(acts) == 0:
        return Pairs.empty()
    rows, r_thread, r_start, r_end = _range_arrays(ranges)
    launched = np.flatnonzero(acts.launched)
    r_idx, l_idx = _sweep(
        r_thread,
        r_start,
        r_end,
        acts.launch_thread[launched],
        acts.launch_start[launched],
        acts.launch_end[launched],
    )
    return Pairs(rows[r_idx], launched[l_idx])


def attribute_other_threads(ranges: pd.DataFrame, acts: Activities) -> Pairs:
    """Activities launched by another thread of the range's process while the range was open."""
    if ranges.empty or len(acts) == 0 or len(pd.unique(acts.launch_thread[acts.launched])) < 2:
        return Pairs.empty()  # one launching thread: no other thread to find
    rows, r_thread, r_start, r_end = _range_arrays(ranges)
    launched = np.flatnonzero(acts.launched)
    l_thread = acts.launch_thread[launched]
    r_idx, l_idx = _sweep(
        process_of(r_thread),
        r_start,
        r_end,
        process_of(l_thread),
        acts.launch_start[launched],
        acts.launch_end[launched],
    )
    foreign = l_thread[l_idx] != r_thread[r_idx]
    return Pairs(rows[r_idx[foreign]], launched[l_idx[foreign]])
