"""Per NVTX range name: instances, wall time, and the GPU work attributed to it.

`kernel_count` and `kernel_time_ns` follow `nsys stats -r nvtxkernsum` exactly, quirks included: a
kernel counts once per (thread, range style) in `kernel_count`, but its duration is added once per
containing range instance in `kernel_time_ns` (so nested ranges of one name add a kernel's time twice,
as nsys does). `gpu_busy_ns` is the honest figure: the union of the attributed kernels' intervals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from perfctl.analysis.intervals import union_length


def attributed_pairs(ranges: pd.DataFrame, activities: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per (range instance, activity) pair, with the columns the summaries need."""
    r = ranges.iloc[pairs["range_row"].to_numpy()]
    a = activities.iloc[pairs["activity_row"].to_numpy()]
    return pd.DataFrame(
        {
            "range_row": pairs["range_row"].to_numpy(),
            "domain": r["domain"].to_numpy(),
            "name": r["name"].to_numpy(),
            "style": r["style"].to_numpy(),
            "activity": a["activity"].to_numpy(),
            "kind": a["kind"].to_numpy(),
            "start": a["start"].to_numpy(),
            "end": a["end"].to_numpy(),
            "duration": a["duration"].to_numpy(),
            "bytes": a["bytes"].to_numpy(),
            "launch_thread": a["launch_thread"].to_numpy(),
            "short_name": a["short_name"].to_numpy(),
            "kernel_name": a["name"].to_numpy(),
        }
    )


def top_kernels(kernels: pd.DataFrame, limit: int) -> list[dict[str, Any]]:
    """Kernels (one row per distinct GPU event) grouped by full name, largest total time first."""
    if kernels.empty:
        return []
    grouped = (
        kernels.groupby("kernel_name", sort=False)
        .agg(short_name=("short_name", "first"), calls=("duration", "size"), time_ns=("duration", "sum"))
        .sort_values(["time_ns", "calls"], ascending=False)
        .head(limit)
    )
    total = int(kernels["duration"].sum())
    return [
        {
            "name": str(name),
            "short_name": str(row.short_name),
            "count": int(row.calls),
            "time_ns": int(row.time_ns),
            "share_of_range_kernel_time": (int(row.time_ns) / total) if total else 0.0,
        }
        for name, row in grouped.iterrows()
    ]


def summarize_group(instances: pd.DataFrame, pairs: pd.DataFrame, top_n: int) -> dict[str, Any]:
    """The figures of one set of range instances (one name, or one stage) and their attributed pairs."""
    kernels = pairs[pairs["kind"] == "kernel"]
    distinct = kernels.drop_duplicates("activity")
    summary: dict[str, Any] = {
        "instances": len(instances),
        "wall_ns": int((instances["end"] - instances["start"]).sum()),
        "kernel_count": len(kernels.drop_duplicates(["activity", "launch_thread", "style"])),
        "kernel_time_ns": int(kernels["duration"].sum()),
        "gpu_busy_ns": union_length(distinct["start"].to_numpy(np.int64), distinct["end"].to_numpy(np.int64)),
        "gpu_span_ns": int(distinct["end"].max() - distinct["start"].min()) if len(distinct) else 0,
    }
    for kind in ("memcpy", "memset"):
        ops = pairs[pairs["kind"] == kind].drop_duplicates("activity")
        summary[f"{kind}_count"] = len(ops)
        summary[f"{kind}_bytes"] = int(ops["bytes"].sum())
        summary[f"{kind}_time_ns"] = int(ops["duration"].sum())
    summary["top_kernels"] = top_kernels(distinct, top_n)
    return summary


def summarize_ranges(ranges: pd.DataFrame, pairs: pd.DataFrame, top_n: int = 10) -> list[dict[str, Any]]:
    """One dict per (domain, name), sorted by domain then name."""
    out = []
    by_name = pairs.groupby(["domain", "name"], sort=False) if len(pairs) else None
    for (domain, name), inst in ranges.groupby(["domain", "name"], sort=True):
        group_pairs = pairs.iloc[0:0] if by_name is None else _group_or_empty(by_name, (domain, name), pairs)
        out.append({"domain": str(domain), "name": str(name), **summarize_group(inst, group_pairs, top_n)})
    return out


def _group_or_empty(grouped: Any, key: tuple[str, str], frame: pd.DataFrame) -> pd.DataFrame:
    try:
        result: pd.DataFrame = grouped.get_group(key)
        return result
    except KeyError:
        return frame.iloc[0:0]
