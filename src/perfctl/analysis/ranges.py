"""Per NVTX range instance and per range name: wall time and the GPU work attributed to it.

`kernel_count` and `kernel_time_ns` follow `nsys stats -r nvtxkernsum` exactly, quirks included: a
kernel counts once per (thread, range style) in `kernel_count`, but its duration is added once per
containing range instance in `kernel_time_ns` (so nested ranges of one name add a kernel's time twice,
as nsys does). `gpu_busy_ns` is the honest figure: the union of the attributed kernels' intervals.

Pairs (range row, activity row) come from the attribution sweep grouped by range row, and within a
range in launch order; the reductions below rely on that order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from perfctl.analysis.attribution import Pairs
from perfctl.analysis.grouping import group_count, group_order, group_sum, group_union, segments
from perfctl.nsys_export.events import KERNEL, MEMCPY, MEMSET, Activities

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
STAT_KEYS = ("count", "mean", "std", "min", "median", "p95", "max")
INSTANCE_STATS = ("wall_ns", "kernel_count", "kernel_time_ns", "gpu_busy_ns")
MEMORY_KINDS = ((MEMCPY, "memcpy"), (MEMSET, "memset"))


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


def distinct_first(keys: list[Int64s]) -> Bools:
    """Mask keeping the first row of every distinct combination of the key columns."""
    if len(keys[0]) == 0:
        return np.zeros(0, dtype=bool)
    duplicated: Bools = pd.DataFrame({str(i): k for i, k in enumerate(keys)}).duplicated().to_numpy()
    return ~duplicated


def instance_table(ranges: pd.DataFrame, pairs: Pairs, acts: Activities) -> pd.DataFrame:
    """One row per range instance: wall, kernels, kernel time, GPU busy/span, launches, memory ops."""
    n = len(ranges)
    rr, ar = pairs.range_row, pairs.act_row
    if acts.fanned_out:  # a GPU event matched by two API rows must count once per instance
        keep = distinct_first([rr, acts.activity[ar]])
        rr, ar = rr[keep], ar[keep]
    kind = acts.kind[ar]
    k = kind == KERNEL
    krr, kar = rr[k], ar[k]
    busy, first, last = group_union(krr, acts.start[kar], acts.end[kar], n)
    count = group_count(krr, n)
    # pairs are grouped by range and launch-ordered: a launch's activities are adjacent
    launch = acts.launch_row[ar]
    new_launch = (
        np.r_[True, (rr[1:] != rr[:-1]) | (launch[1:] != launch[:-1])] if len(rr) else np.zeros(0, bool)
    )
    table = pd.DataFrame(
        {
            "wall_ns": ranges["end"].to_numpy(np.int64) - ranges["start"].to_numpy(np.int64),
            "kernel_count": count,
            "kernel_time_ns": group_sum(krr, acts.duration_of(kar), n),
            "gpu_busy_ns": busy,
            "gpu_span_ns": np.where(count > 0, last - first, 0),
            "launches": group_count(rr[new_launch], n),
        }
    )
    for code, label in MEMORY_KINDS:
        m = kind == code
        mrr, mar = rr[m], ar[m]
        table[f"{label}_count"] = group_count(mrr, n)
        table[f"{label}_bytes"] = group_sum(mrr, acts.bytes[mar], n)
        table[f"{label}_time_ns"] = group_sum(mrr, acts.duration_of(mar), n)
    return table


def name_codes(ranges: pd.DataFrame) -> tuple[Int64s, list[tuple[str, str]]]:
    """A dense code per range for its (domain, name), codes in sorted (domain, name) order."""
    codes, uniques = pd.MultiIndex.from_frame(ranges[["domain", "name"]]).factorize(sort=True)
    return codes.astype(np.int64), [(str(d), str(nm)) for d, nm in uniques]


def summarize_names(
    ranges: pd.DataFrame,
    instances: pd.DataFrame,
    pairs: Pairs,
    other: Pairs,
    acts: Activities,
    names: Callable[[list[int]], dict[int, str]],
    top_n: int,
) -> list[dict[str, Any]]:
    """One dict per (domain, name), sorted by domain then name."""
    codes, uniques = name_codes(ranges)
    n = len(uniques)
    order = group_order(codes[pairs.range_row], n)  # pairs grouped by name, range order kept inside
    g = codes[pairs.range_row][order]
    rr, ar = pairs.range_row[order], pairs.act_row[order]
    kind = acts.kind[ar]
    k = kind == KERNEL
    nested = _same_name_overlap(ranges, codes)
    distinct = (
        distinct_first([g, acts.activity[ar]]) if (acts.fanned_out or nested) else np.ones(len(g), bool)
    )
    if acts.fanned_out or nested:
        style = (ranges["style"].to_numpy() == "PushPop")[rr].astype(np.int64)
        per_nsys = distinct_first([g, acts.activity[ar], acts.launch_thread[ar], style]) & k
        kernel_count = group_count(g[per_nsys], n)
    else:
        kernel_count = group_count(g[k], n)
    kg, kar = g[k], ar[k]
    kernel_time = group_sum(kg, acts.duration_of(kar), n)
    busy, first, last = group_union(kg, acts.start[kar], acts.end[kar], n)
    kd = k & distinct
    delay = (acts.start - acts.launch_start)[ar[kd]]
    delay_code, delay_at = segments(g[kd])
    delays = dict(zip(delay_code.tolist(), np.split(delay, delay_at[1:]), strict=True)) if len(delay) else {}
    other_k = acts.kind[other.act_row] == KERNEL
    og, oar = codes[other.range_row][other_k], other.act_row[other_k]
    other_count, other_time = group_count(og, n), group_sum(og, acts.duration_of(oar), n)
    tops = _top_kernels(g[kd], acts, ar[kd], n, top_n, names)
    memory = {}
    for code, label in MEMORY_KINDS:
        m = (kind == code) & distinct
        memory[label] = (
            group_count(g[m], n),
            group_sum(g[m], acts.bytes[ar[m]], n),
            group_sum(g[m], acts.duration_of(ar[m]), n),
        )

    stats = instances.groupby(codes, sort=True)
    out = []
    for c, (domain, name) in enumerate(uniques):
        inst = stats.get_group(c)
        span = int(last[c] - first[c]) if kernel_count[c] else 0
        item: dict[str, Any] = {
            "domain": domain,
            "name": name,
            "instances": len(inst),
            "wall_ns": int(inst["wall_ns"].sum()),
            "kernel_count": int(kernel_count[c]),
            "kernel_time_ns": int(kernel_time[c]),
            "gpu_busy_ns": int(busy[c]),
            "gpu_span_ns": span,
            "gpu_idle_fraction": (1.0 - busy[c] / span) if span > 0 else None,
            "launches": int(inst["launches"].sum()),
        }
        for label, (cnt, nbytes, t) in memory.items():
            item.update(
                {
                    f"{label}_count": int(cnt[c]),
                    f"{label}_bytes": int(nbytes[c]),
                    f"{label}_time_ns": int(t[c]),
                }
            )
        item["launch_to_start_ns"] = describe(delays.get(c, []))
        item["other_threads"] = {"kernel_count": int(other_count[c]), "kernel_time_ns": int(other_time[c])}
        item["per_instance"] = {col: describe(inst[col].to_numpy()) for col in INSTANCE_STATS}
        item["top_kernels"] = tops.get(c, [])
        out.append(item)
    return out


def _same_name_overlap(ranges: pd.DataFrame, codes: Int64s) -> bool:
    """Whether two instances of one name overlap on one thread (then a kernel may sit in both)."""
    frame = pd.DataFrame(
        {
            "g": codes,
            "t": ranges["thread"].to_numpy(np.int64),
            "s": ranges["start"].to_numpy(np.int64),
            "e": ranges["end"].to_numpy(np.int64),
        }
    )
    frame = frame.sort_values(["g", "t", "s"], kind="stable")
    g, t = frame["g"].to_numpy(), frame["t"].to_numpy()
    same = (g[1:] == g[:-1]) & (t[1:] == t[:-1])
    return bool((same & (frame["s"].to_numpy()[1:] <= frame["e"].to_numpy()[:-1])).any())


def _top_kernels(
    g: Int64s,
    acts: Activities,
    rows: Int64s,
    n: int,
    top_n: int,
    names: Callable[[list[int]], dict[int, str]],
) -> dict[int, list[dict[str, Any]]]:
    """Per group, its kernels (distinct GPU events) by full name, largest total time first."""
    if len(g) == 0:
        return {}
    name_id = acts.name_id[rows]
    duration = acts.duration_of(rows)
    width = int(name_id.max()) + 4  # stand-in ids of memcpy/memset are negative
    combo, uniques = pd.factorize(g * width + (name_id + 3))
    calls = np.bincount(combo)
    time = np.rint(np.bincount(combo, weights=duration)).astype(np.int64)
    short = np.zeros(len(uniques), dtype=np.int64)
    short[combo] = acts.short_id[rows]
    table = pd.DataFrame(
        {"g": uniques // width, "name": uniques % width - 3, "short": short, "calls": calls, "time": time}
    )
    table = table.sort_values(["g", "time", "calls"], ascending=[True, False, False]).groupby("g").head(top_n)
    text = names(sorted(set(table["name"].tolist()) | set(table["short"].tolist())))
    totals = group_sum(g, duration, n)
    result: dict[int, list[dict[str, Any]]] = {}
    for row in table.itertuples(index=False):
        total = int(totals[row.g])
        result.setdefault(int(row.g), []).append(
            {
                "name": text.get(int(row.name), f"[string {row.name}]"),
                "short_name": text.get(int(row.short), f"[string {row.short}]"),
                "count": int(row.calls),
                "time_ns": int(row.time),
                "share_of_range_kernel_time": int(row.time) / total if total else 0.0,
            }
        )
    return result
