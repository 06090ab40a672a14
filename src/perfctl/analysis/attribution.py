"""Attribute GPU activities to the NVTX ranges that launched them, as `nsys stats -r nvtxkernsum` does.

NVIDIA's projection: an activity belongs to every NVTX range, on the thread that made the launching
CUDA API call, that contains that call: range.start <= launch.start and launch.end <= range.end. Only
ranges that began and ended on one thread take part (nsys drops start/end ranges ended elsewhere).
A kernel inside nested ranges therefore counts in each of them.

Beyond that projection, `attribute_other_threads` finds, for each range, the activities launched by
*other* threads of the same process while the range was open (worker threads), which nsys gives to
no range of the launching thread's owner.

Activities come in launch order (by launching thread, then launch start). One thread makes one API
call at a time, so along that order launch ends rise with launch starts, and the activities a range
holds are one contiguous run of rows: from the first launch starting at or after the range start to
the last launch ending at or before the range end. Each range is then two binary searches, and every
figure over its activities is a difference of prefix sums or a pass over its run -- no (range,
activity) pair table, no SQL range join. Should a thread's recorded calls nest (ends not rising),
its ranges are computed row by row instead, and a range may then hold several runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from perfctl.nsys_export.events import Activities, process_of

# pandas is imported where it is used: its import takes half a second, which `perfctl analyze`
# spends while the export's readers already decode (nsys_export.windows)
if TYPE_CHECKING:
    import pandas as pd

Int64s = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Slices:
    """Range `range_row[i]` holds the launch-ordered activity rows `lo[i]` to `hi[i]` (exclusive).

    Runs are sorted by range row, then by `lo`; a range has one run, or several disjoint ones where
    its thread's calls nest.
    """

    range_row: Int64s
    lo: Int64s
    hi: Int64s

    def __len__(self) -> int:
        return len(self.range_row)

    @property
    def lengths(self) -> Int64s:
        return self.hi - self.lo

    @staticmethod
    def empty() -> Slices:
        return Slices(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))


@dataclass(frozen=True)
class _ThreadBlocks:
    """Where each launching thread's rows sit in the launch order, and monotone search keys."""

    threads: Int64s  # sorted launching threads
    first: Int64s  # first row of each thread's block
    last: Int64s  # one past its last row
    nested: npt.NDArray[np.bool_]  # per thread: some launch call ends after a later one (calls nest)


def _thread_blocks(acts: Activities) -> _ThreadBlocks:
    thread = acts.launch_thread[: acts.n_launched]
    first = np.flatnonzero(np.r_[True, thread[1:] != thread[:-1]]) if len(thread) else np.empty(0, np.int64)
    last = np.append(first[1:], len(thread)).astype(np.int64)
    ends = acts.launch_end[: acts.n_launched]
    nested = np.zeros(len(first), dtype=bool)
    for i, (a, b) in enumerate(zip(first.tolist(), last.tolist(), strict=True)):
        block = ends[a:b]
        if b - a > 1 and bool(np.any(block[1:] < block[:-1])):
            nested[i] = True
    return _ThreadBlocks(thread[first], first.astype(np.int64), last, nested)


def _runs(blocks: _ThreadBlocks, acts: Activities, thread: Int64s, start: Int64s, end: Int64s) -> Slices:
    """The rows launched on `thread` by a call inside [start, end], for each query, as runs (their
    `range_row` is the query's index)."""
    n = len(thread)
    lo = np.zeros(n, dtype=np.int64)
    hi = np.zeros(n, dtype=np.int64)
    if n == 0 or len(blocks.threads) == 0:
        return Slices(np.arange(n, dtype=np.int64), lo, hi)
    at = np.minimum(np.searchsorted(blocks.threads, thread), len(blocks.threads) - 1)
    known = blocks.threads[at] == thread
    split: list[tuple[Int64s, Int64s, Int64s]] = []
    for b in np.unique(at[known]).tolist():
        q = np.flatnonzero(known & (at == b))
        a, z = int(blocks.first[b]), int(blocks.last[b])
        starts = acts.launch_start[a:z]
        q_lo = a + np.searchsorted(starts, start[q], side="left")
        by_start = a + np.searchsorted(starts, end[q], side="right")
        if not blocks.nested[b]:  # ends rise with starts: the run ends at the last call ending in time
            q_hi = a + np.searchsorted(acts.launch_end[a:z], end[q], side="right")
            lo[q], hi[q] = q_lo, np.maximum(np.minimum(q_hi, by_start), q_lo)
            continue
        # nesting calls: of the calls starting inside, drop those still running at the range end
        for i, first, stop in zip(q.tolist(), q_lo.tolist(), by_start.tolist(), strict=True):
            late = first + np.flatnonzero(acts.launch_end[first:stop] > end[i])
            cuts_lo = np.r_[first, late + 1]
            cuts_hi = np.r_[late, stop]
            keep = cuts_hi > cuts_lo
            split.append((np.full(int(keep.sum()), i, np.int64), cuts_lo[keep], cuts_hi[keep]))
    if not split:
        return Slices(np.arange(n, dtype=np.int64), lo, hi)
    nested_query = np.zeros(n, dtype=bool)
    nested_query[np.concatenate([s[0] for s in split])] = True
    plain = np.flatnonzero(~nested_query)
    rows = np.concatenate([plain, *(s[0] for s in split)])
    all_lo = np.concatenate([lo[plain], *(s[1] for s in split)])
    all_hi = np.concatenate([hi[plain], *(s[2] for s in split)])
    order = np.lexsort((all_lo, rows))
    return Slices(rows[order], all_lo[order], all_hi[order])


def _eligible(ranges: pd.DataFrame) -> Int64s:
    return np.flatnonzero(~ranges["ended_on_other_thread"].to_numpy(dtype=bool))


def attribute_activities_to_ranges(ranges: pd.DataFrame, acts: Activities) -> Slices:
    """NVIDIA's projection: same thread, launch call inside the range. One run per eligible range."""
    if ranges.empty or acts.n_launched == 0:
        return Slices.empty()
    rows = _eligible(ranges)
    runs = _runs(
        _thread_blocks(acts),
        acts,
        ranges["thread"].to_numpy(np.int64)[rows],
        ranges["start"].to_numpy(np.int64)[rows],
        ranges["end"].to_numpy(np.int64)[rows],
    )
    return Slices(rows[runs.range_row], runs.lo, runs.hi)


def attribute_other_threads(ranges: pd.DataFrame, acts: Activities) -> Slices:
    """Activities launched by another thread of the range's process while the range was open: one
    run per (range, other launching thread of its process)."""
    if ranges.empty or acts.n_launched == 0:
        return Slices.empty()
    blocks = _thread_blocks(acts)
    if len(blocks.threads) < 2:
        return Slices.empty()  # one launching thread: no other thread to find
    rows = _eligible(ranges)
    r_thread = ranges["thread"].to_numpy(np.int64)[rows]
    # every (range, launching thread) pair within one process, the range's own thread excluded
    pair_range, pair_thread = [], []
    r_process = process_of(r_thread)
    for t, p in zip(blocks.threads.tolist(), process_of(blocks.threads).tolist(), strict=True):
        mine = np.flatnonzero((r_process == p) & (r_thread != t))
        pair_range.append(mine)
        pair_thread.append(np.full(len(mine), t, dtype=np.int64))
    which = np.concatenate(pair_range)
    runs = _runs(
        blocks,
        acts,
        np.concatenate(pair_thread),
        ranges["start"].to_numpy(np.int64)[rows][which],
        ranges["end"].to_numpy(np.int64)[rows][which],
    )
    return Slices(rows[which][runs.range_row], runs.lo, runs.hi)
