"""How often each kernel ran in each of perfctl's stages, by name and launch configuration (grid and
block), from an nsys export: what Nsight Compute's per-launch-configuration sampling is scaled by.

A kernel belongs to the stage range, on the thread that made its launching CUDA API call, that holds
that call's start (the stages of perfctl's driver never overlap on a thread; nsys's projection,
analysis.attribution, would give the same stage). Kernels replayed from a CUDA graph share their
cudaGraphLaunch's correlation id, so they land in the stage of the replay. Only the names asked for
are read: this serves the few kernels Nsight Compute profiled, not the whole export. (A name bounded
at reading, nsys_export.names, matches no StringIds value whole: such a kernel is not counted.)
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from perfctl.nsys_export.nvtx import load_nvtx_ranges
from perfctl.nsys_export.schema import connect_readonly, read_schema
from perfctl.stages import DOMAIN, PAGE, STAGES

# (demangled name, grid x/y/z, block x/y/z)
ConfigKey = tuple[str, tuple[int, int, int], tuple[int, int, int]]


@dataclass
class ConfigCount:
    count: int = 0
    time_ns: int = 0


@dataclass(frozen=True)
class StageKernelConfigs:
    pages: int  # perfctl `page` ranges in the export (what per-page figures divide by)
    stages: dict[str, dict[ConfigKey, ConfigCount]]  # stage -> launch configuration -> count, time


def kernel_configs_by_stage(export: Path, names: set[str]) -> StageKernelConfigs:
    """Per stage, each launch configuration of the kernels named `names` (demangled): count and time."""
    conn = connect_readonly(export)
    try:
        schema = read_schema(conn, export)
        ranges = load_nvtx_ranges(conn, schema)
        mine = ranges[ranges["domain"] == DOMAIN] if len(ranges) else ranges
        pages = int((mine["name"] == PAGE).sum()) if len(mine) else 0
        by_thread: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
        for row in mine[mine["name"].isin(STAGES)].itertuples(index=False) if len(mine) else ():
            by_thread[int(row.thread)].append((int(row.start), int(row.end), str(row.name)))
        for spans in by_thread.values():
            spans.sort()
        starts = {thread: [s[0] for s in spans] for thread, spans in by_thread.items()}
        stages: dict[str, dict[ConfigKey, ConfigCount]] = {s: defaultdict(ConfigCount) for s in STAGES}
        if not (
            names and schema.has("CUPTI_ACTIVITY_KIND_KERNEL") and schema.has("CUPTI_ACTIVITY_KIND_RUNTIME")
        ):
            return StageKernelConfigs(pages, {s: dict(c) for s, c in stages.items()})
        marks = ",".join("?" * len(names))
        ids = dict(
            conn.execute(
                f"SELECT id, value FROM StringIds WHERE value IN ({marks})", sorted(names)
            ).fetchall()
        )
        if not ids:
            return StageKernelConfigs(pages, {s: dict(c) for s, c in stages.items()})
        id_marks = ",".join(str(int(i)) for i in ids)
        rows = conn.execute(
            f"""SELECT k.demangledName, k.gridX, k.gridY, k.gridZ, k.blockX, k.blockY, k.blockZ,
                       k."end" - k.start, r.globalTid, r.start
                FROM CUPTI_ACTIVITY_KIND_KERNEL AS k
                JOIN CUPTI_ACTIVITY_KIND_RUNTIME AS r
                  ON r.correlationId = k.correlationId AND (r.globalTid >> 24) = (k.globalPid >> 24)
                WHERE k.demangledName IN ({id_marks})"""
        )
        for name_id, gx, gy, gz, bx, by, bz, duration, thread, launch in rows:
            on_thread = by_thread.get(thread)
            if not on_thread:
                continue
            i = bisect.bisect_right(starts[thread], launch) - 1
            if i < 0 or launch > on_thread[i][1]:
                continue
            figures = stages[on_thread[i][2]][(ids[name_id], (gx, gy, gz), (bx, by, bz))]
            figures.count += 1
            figures.time_ns += int(duration)
    finally:
        conn.close()
    return StageKernelConfigs(pages, {s: dict(c) for s, c in stages.items()})
