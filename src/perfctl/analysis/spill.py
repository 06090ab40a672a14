"""Per-group integer values kept on disk while an export is analyzed window by window.

Exact statistics over a group's values (median, p95) need all of them at once, but only at the
end; kept in memory until then they would grow with the export (8 bytes per kernel and range name).
`GroupValues` appends each window's values to an unnamed temporary file instead (the page cache
holds it; the process's memory does not). A group of up to SEGMENT values is read back whole for
its statistics; a larger one is read segment by segment (`streamed_stats`), with results equal to
numpy's on the whole array, bit for bit: sums follow numpy's pairwise summation tree (numpy sums each
subtree that fits a segment itself), and percentiles take the exact order statistics (found by
histograms over the values' bits) through numpy's own interpolation formula.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from typing import IO

import numpy as np
import numpy.typing as npt

Int64s = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
SEGMENT = 1 << 20  # values read back at once (8 MiB)
_BLOCK = 128  # numpy's pairwise summation: blocks of up to 128 values summed with 8 accumulators


class GroupValues:
    """int64 values per group, appended window by window, read back per group in order."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._end = 0
        self._parts: dict[int, list[tuple[int, int]]] = {}  # group -> (byte offset, values)
        self._low: dict[int, int] = {}
        self._high: dict[int, int] = {}

    def append(self, group: int, values: Int64s) -> None:
        if len(values) == 0:
            return
        if self._file is None:
            # the file lives as long as this object (closed by `close`), so no `with`
            self._file = tempfile.TemporaryFile(prefix="perfctl-values-")  # noqa: SIM115
        data = np.ascontiguousarray(values, dtype=np.int64)
        self._file.seek(self._end)
        self._file.write(data.tobytes())
        self._parts.setdefault(group, []).append((self._end, len(data)))
        self._low[group] = min(self._low.get(group, int(data.min())), int(data.min()))
        self._high[group] = max(self._high.get(group, int(data.max())), int(data.max()))
        self._end += data.nbytes

    def groups(self) -> list[int]:
        return list(self._parts)

    def count(self, group: int) -> int:
        return sum(n for _, n in self._parts.get(group, []))

    def bounds(self, group: int) -> tuple[int, int]:
        """The group's smallest and largest value."""
        return self._low[group], self._high[group]

    def read(self, group: int, lo: int, hi: int) -> Int64s:
        """Values lo..hi-1 of the group (in the order they were appended)."""
        chunks, at = [], 0
        for offset, n in self._parts.get(group, []):
            a, b = max(lo, at), min(hi, at + n)
            if a < b:
                assert self._file is not None
                self._file.seek(offset + 8 * (a - at))
                chunks.append(np.fromfile(self._file, dtype=np.int64, count=b - a))
            at += n
        return np.concatenate(chunks) if chunks else np.empty(0, np.int64)

    def values(self, group: int) -> Int64s:
        """The group's values in the order they were appended."""
        chunks = []
        for offset, n in self._parts.get(group, []):
            assert self._file is not None
            self._file.seek(offset)
            chunks.append(np.fromfile(self._file, dtype=np.int64, count=n))
        return np.concatenate(chunks) if chunks else np.empty(0, np.int64)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _pairwise(read: Callable[[int, int], Floats], lo: int, n: int) -> float:
    """numpy's float64 sum of values lo..lo+n-1 (add.reduce: pairwise, halves cut at multiples of 8)."""
    if n <= SEGMENT:
        return float(np.add.reduce(read(lo, lo + n)))
    half = n // 2
    half -= half % 8
    return _pairwise(read, lo, half) + _pairwise(read, lo + half, n - half)


def _order_statistics(values: GroupValues, group: int, n: int, ranks: list[int]) -> dict[int, float]:
    """The values at the given ranks of the sorted group: a histogram pass over each rank's value
    range finds the bucket holding it, and a second pass collects the (few) values of that bucket;
    a bucket of more than SEGMENT values is narrowed by another histogram."""
    low, high = values.bounds(group)
    pending = {r: (low, high - low + 1, 0) for r in set(ranks)}  # rank -> (first value, width, below)
    out: dict[int, float] = {}

    def parts() -> Iterator[Int64s]:
        for lo in range(0, n, SEGMENT):
            yield values.read(group, lo, min(lo + SEGMENT, n))

    while pending:
        shifts = {span: max(int(span[1] - 1).bit_length() - 16, 0) for span in set(pending.values())}
        counts = {span: np.zeros(((span[1] - 1) >> shift) + 1, np.int64) for span, shift in shifts.items()}
        for part in parts():
            for (base, width, below), shift in shifts.items():
                inside = part[(part >= base) & (part < base + width)]
                counts[base, width, below] += np.bincount(
                    (inside - base) >> shift, minlength=len(counts[base, width, below])
                )
        wanted: dict[int, tuple[int, int, int]] = {}  # rank -> (first value, width, index among them)
        narrower: dict[int, tuple[int, int, int]] = {}
        for rank, span in pending.items():
            base, _, below = span
            shift, cumulative = shifts[span], np.cumsum(counts[span])
            bucket = int(np.searchsorted(cumulative, rank - below, side="right"))
            before = below + (int(cumulative[bucket - 1]) if bucket else 0)
            first = base + (bucket << shift)
            if shift == 0:
                out[rank] = float(first)
            elif int(counts[span][bucket]) <= SEGMENT:
                wanted[rank] = (first, 1 << shift, rank - before)
            else:
                narrower[rank] = (first, 1 << shift, before)
        if wanted:
            found: dict[int, list[Int64s]] = {r: [] for r in wanted}
            for part in parts():
                for rank, (first, width, _) in wanted.items():
                    found[rank].append(part[(part >= first) & (part < first + width)])
            for rank, (_, _, index) in wanted.items():
                out[rank] = float(np.sort(np.concatenate(found[rank]))[index])
        pending = narrower
    return out


def _lerp(a: Floats, b: Floats, t: Floats) -> Floats:
    """numpy's linear interpolation for percentiles (numpy.lib._function_base_impl._lerp)."""
    diff = b - a
    result: Floats = np.add(a, diff * t)
    np.subtract(b, diff * (1 - t), out=result, where=t >= 0.5, casting="unsafe")
    return result


def streamed_stats(values: GroupValues, group: int) -> dict[str, float]:
    """count, mean, sample std, min, median, p95, max of a group read segment by segment: equal to
    `perfctl.analysis.runs.describe` of its whole array (numpy mean, std(ddof=1), linear percentiles)."""
    n = values.count(group)

    def floats(lo: int, hi: int) -> Floats:
        return values.read(group, lo, hi).astype(np.float64)

    mean = _pairwise(floats, 0, n) / n

    def squares(lo: int, hi: int) -> Floats:
        x = floats(lo, hi) - mean
        return np.multiply(x, x, out=x)

    std = float(np.sqrt(_pairwise(squares, 0, n) / (n - 1))) if n > 1 else 0.0
    # numpy's percentile: index (n - 1) * q, its floor and the next, clipped at the last value
    quantiles = np.true_divide(np.array([0, 50, 95, 100], dtype=np.float64), 100)
    virtual = (n - 1) * quantiles
    previous = np.floor(virtual).astype(np.intp)
    following = previous + 1
    above = virtual >= n - 1
    previous[above] = following[above] = n - 1
    stats = _order_statistics(values, group, n, sorted({*previous.tolist(), *following.tolist()}))
    gamma = virtual - np.where(above, -1, previous)  # numpy takes the last index as -1 here
    low = np.array([stats[int(i)] for i in previous])
    high = np.array([stats[int(i)] for i in following])
    p0, p50, p95, p100 = _lerp(low, high, gamma).tolist()
    return {
        "count": float(n),
        "mean": float(mean),
        "std": std,
        "min": p0,
        "median": p50,
        "p95": p95,
        "max": p100,
    }
