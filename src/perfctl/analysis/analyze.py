"""From an nsys export to the analysis result: ranges, perfctl stages, pages, totals.

`analyze_export` is the one entry point; everything it calls is a pure function over DataFrames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perfctl import __version__
from perfctl.analysis.attribution import attribute_activities_to_ranges
from perfctl.analysis.intervals import union_length
from perfctl.analysis.ranges import attributed_pairs, summarize_group, summarize_ranges
from perfctl.nsys_export.events import load_gpu_activities, load_nvtx_ranges
from perfctl.nsys_export.schema import ExportSchema, connect_readonly, read_schema
from perfctl.stages import DOMAIN, PAGE, STAGES


@dataclass(frozen=True)
class ExportTables:
    schema: ExportSchema
    ranges: pd.DataFrame
    activities: pd.DataFrame
    gpus: list[dict[str, Any]]


def load_export(path: Path) -> ExportTables:
    conn = connect_readonly(path)
    try:
        schema = read_schema(conn, path)
        gpus: list[dict[str, Any]] = []
        if schema.has("TARGET_INFO_GPU"):
            cols = [
                c
                for c in (
                    "id",
                    "name",
                    "busLocation",
                    "smCount",
                    "totalMemory",
                    "memoryBandwidth",
                    "clockRate",
                    "computeMajor",
                    "computeMinor",
                )
                if schema.has_column("TARGET_INFO_GPU", c)
            ]
            cur = conn.execute(f"SELECT {', '.join(cols)} FROM TARGET_INFO_GPU")
            gpus = [dict(zip(cols, row, strict=True)) for row in cur]
        return ExportTables(schema, load_nvtx_ranges(conn, schema), load_gpu_activities(conn, schema), gpus)
    finally:
        conn.close()


def analyze_export(path: Path, top_n: int = 10) -> dict[str, Any]:
    tables = load_export(path)
    return analyze_tables(tables, top_n=top_n)


def analyze_tables(tables: ExportTables, top_n: int = 10) -> dict[str, Any]:
    ranges, acts = tables.ranges, tables.activities
    pairs = attributed_pairs(ranges, acts, attribute_activities_to_ranges(ranges, acts))
    warnings = list(tables.schema.warnings)
    kernels = acts[acts["kind"] == "kernel"].drop_duplicates("activity")
    if ranges.empty:
        warnings.append(
            "the export holds no NVTX ranges (was --trace nvtx on, and is the nvtx package "
            "version visible to this nsys?)"
        )
    if kernels.empty:
        warnings.append(
            "the export holds no CUDA kernels (a CPU-only run, CUDA tracing off, or an nsys "
            "whose CUPTI is older than the program's CUDA): kernel figures are zero"
        )
    unlaunched = int(kernels["launch_thread"].isna().sum())
    if unlaunched:
        warnings.append(f"{unlaunched} kernels have no matching CUDA API launch and cannot be attributed")

    return {
        "perfctl_version": __version__,
        "export": {
            "path": str(tables.schema.path),
            "schema_version": tables.schema.schema_version,
            "nsys_version": tables.schema.product_version,
            "gpus": tables.gpus,
        },
        "warnings": warnings,
        "totals": {
            "nvtx_ranges": len(ranges),
            "kernels": len(kernels),
            "kernel_time_ns": int(kernels["duration"].sum()),
            "gpu_busy_ns": union_length(
                kernels["start"].to_numpy(np.int64), kernels["end"].to_numpy(np.int64)
            ),
            "unattributed_kernels": unlaunched,
        },
        "ranges": summarize_ranges(ranges, pairs, top_n),
        "stages": summarize_stages(ranges, pairs, top_n),
        "pages": summarize_pages(ranges, pairs),
    }


def summarize_stages(ranges: pd.DataFrame, pairs: pd.DataFrame, top_n: int) -> list[dict[str, Any]]:
    """perfctl's stages (vision, prefill, decode) in the order a page runs them."""
    out = []
    for stage in STAGES:
        inst = ranges[(ranges["domain"] == DOMAIN) & (ranges["name"] == stage)]
        stage_pairs = pairs[(pairs["domain"] == DOMAIN) & (pairs["name"] == stage)]
        summary = summarize_group(inst, stage_pairs, top_n)
        summary["wall_mean_ns"] = summary["wall_ns"] / len(inst) if len(inst) else 0.0
        out.append({"stage": stage, **summary})
    return out


def summarize_pages(ranges: pd.DataFrame, pairs: pd.DataFrame) -> list[dict[str, Any]]:
    """Per page instance: its wall time and, per stage inside it, wall and attributed kernel time."""
    ours = ranges[ranges["domain"] == DOMAIN]
    pages = ours[ours["name"] == PAGE]
    if pages.empty:
        return []
    stages = ours[ours["name"].isin(STAGES)]
    kernel_pairs = pairs[(pairs["kind"] == "kernel") & (pairs["domain"] == DOMAIN)]
    kernel_time = kernel_pairs.groupby("range_row")["duration"].sum()
    kernel_count = kernel_pairs.groupby("range_row").size()

    page_of_stage = _enclosing(pages, stages)
    result = []
    for page_row, page in zip(pages.index, pages.itertuples(), strict=True):
        inside = stages[page_of_stage == page_row]
        per_stage: dict[str, Any] = {}
        for stage in STAGES:
            rows = inside[inside["name"] == stage]
            per_stage[stage] = {
                "instances": len(rows),
                "wall_ns": int((rows["end"] - rows["start"]).sum()),
                "kernel_count": int(kernel_count.reindex(rows.index, fill_value=0).sum()),
                "kernel_time_ns": int(kernel_time.reindex(rows.index, fill_value=0).sum()),
            }
        result.append(
            {
                "sequence": None if pd.isna(page.payload) else int(page.payload),
                "start_ns": int(page.start),
                "wall_ns": int(page.end - page.start),
                "stages": per_stage,
            }
        )
    return result


def _enclosing(outer: pd.DataFrame, inner: pd.DataFrame) -> np.ndarray:
    """For each inner range, the index label of the outer range on its thread that contains it (or -1).

    Outer ranges of one thread must not overlap each other (true of perfctl's page ranges).
    """
    result = np.full(len(inner), -1, dtype=np.int64)
    for thread, group in outer.groupby("thread"):
        group = group.sort_values("start")
        starts = group["start"].to_numpy(np.int64)
        ends = group["end"].to_numpy(np.int64)
        mask = (inner["thread"] == thread).to_numpy()
        s = inner["start"].to_numpy(np.int64)[mask]
        e = inner["end"].to_numpy(np.int64)[mask]
        pos = np.searchsorted(starts, s, side="right") - 1
        ok = (pos >= 0) & (e <= ends[np.clip(pos, 0, None)])
        labels = np.where(ok, group.index.to_numpy()[np.clip(pos, 0, None)], -1)
        result[mask] = labels
    return result
