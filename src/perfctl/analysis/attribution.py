"""Attribute GPU activities to the NVTX ranges that launched them, as `nsys stats -r nvtxkernsum` does.

NVIDIA's projection: an activity belongs to every NVTX range, on the thread that made the launching
CUDA API call, that contains that call: range.start <= launch.start and launch.end <= range.end. Only
ranges that began and ended on one thread take part (nsys drops start/end ranges ended elsewhere).
A kernel inside nested ranges therefore counts in each of them.

The join is a sorted sweep, not an SQL range join: launches are sorted by (thread, start), and each
range finds its candidate launches with two binary searches.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PAIR_COLUMNS = ["range_row", "activity_row"]


def attribute_activities_to_ranges(ranges: pd.DataFrame, activities: pd.DataFrame) -> pd.DataFrame:
    """Pairs (range_row, activity_row): positional row numbers into `ranges` and `activities`.

    `ranges` needs columns start, end, thread, ended_on_other_thread; `activities` needs
    launch_thread, launch_start, launch_end (NaN where the launch is unknown).
    """
    empty = pd.DataFrame({c: np.empty(0, dtype=np.int64) for c in PAIR_COLUMNS})
    if ranges.empty or activities.empty:
        return empty
    launched = activities["launch_thread"].notna().to_numpy()
    if not launched.any():
        return empty
    act_rows = np.flatnonzero(launched)
    l_thread = activities["launch_thread"].to_numpy()[act_rows].astype(np.int64)
    l_start = activities["launch_start"].to_numpy()[act_rows].astype(np.int64)
    l_end = activities["launch_end"].to_numpy()[act_rows].astype(np.int64)

    eligible = ~ranges["ended_on_other_thread"].to_numpy(dtype=bool)
    range_rows = np.flatnonzero(eligible)
    r_thread = ranges["thread"].to_numpy()[range_rows].astype(np.int64)
    r_start = ranges["start"].to_numpy()[range_rows].astype(np.int64)
    r_end = ranges["end"].to_numpy()[range_rows].astype(np.int64)

    # One sortable key per (thread, time): dense thread number in the high part, time offset below.
    threads, thread_code = np.unique(np.concatenate([l_thread, r_thread]), return_inverse=True)
    l_code, r_code = thread_code[: len(l_thread)], thread_code[len(l_thread) :]
    t0 = min(int(l_start.min()), int(r_start.min()))
    span = max(int(l_end.max()), int(r_end.max())) - t0 + 1
    if span * len(threads) >= 2**62:
        raise OverflowError("export time span too large for the attribution key")
    l_key = l_code * span + (l_start - t0)
    order = np.argsort(l_key, kind="stable")
    l_key_sorted = l_key[order]

    lo = np.searchsorted(l_key_sorted, r_code * span + (r_start - t0), side="left")
    hi = np.searchsorted(l_key_sorted, r_code * span + (r_end - t0), side="right")
    counts = hi - lo
    total = int(counts.sum())
    if total == 0:
        return empty
    # Expand every range into its candidate launch positions lo..hi-1 without a Python loop.
    pair_range = np.repeat(np.arange(len(range_rows)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    pair_launch = order[np.repeat(lo, counts) + offsets]
    inside = l_end[pair_launch] <= r_end[pair_range]
    return pd.DataFrame(
        {
            "range_row": range_rows[pair_range[inside]],
            "activity_row": act_rows[pair_launch[inside]],
        }
    )
