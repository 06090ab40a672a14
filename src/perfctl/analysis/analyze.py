"""From an nsys export to the analysis result: ranges, perfctl stages, pages, totals.

`analyze_export` is the one entry point; everything it calls is a pure function over the tables
that `load_export` reads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from perfctl import __version__, progress
from perfctl.analysis.attribution import attribute_activities_to_ranges, attribute_other_threads
from perfctl.analysis.completion import set_aside_unfinished
from perfctl.analysis.graph_kernels import NOT_RECORDED_WARNING, GraphFigures, graph_figures
from perfctl.analysis.intervals import union_length
from perfctl.analysis.kernel_categories import CATEGORIES
from perfctl.analysis.ranges import (
    InstanceFigures,
    NameFigures,
    instance_figures,
    instance_table,
    name_codes,
    name_figures,
    summarize_names,
)
from perfctl.analysis.result import (
    Analysis,
    Gpu,
    PageStage,
    PageSummary,
    RangeSummary,
    StageSummary,
    Statistics,
    Totals,
)
from perfctl.analysis.runs import STAT_KEYS, RunIndex, describe, sum_by
from perfctl.errors import BadInput
from perfctl.nsys_export import pages
from perfctl.nsys_export.checks import RowChecks, check_sum
from perfctl.nsys_export.events import Activities, string_values
from perfctl.nsys_export.names import head_sql, read_name, size_sql
from perfctl.nsys_export.nvtx import load_nvtx_ranges, session_end, session_stop_recorded, unended_range_ids
from perfctl.nsys_export.schema import ExportSchema, connect_readonly, quote_identifier, read_schema
from perfctl.nsys_export.windows import (
    NotWindowable,
    activity_windows,
    load_gpu_activities,
    not_windowable_note,
)
from perfctl.stages import DOMAIN, PAGE, STAGES

# pandas is imported where it is used: its import takes half a second, which `perfctl analyze`
# spends while the export's readers already decode (nsys_export.windows)
if TYPE_CHECKING:
    import pandas as pd

GPU_COLUMNS = (
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


GPU_TEXT_COLUMNS = ("name", "busLocation")  # the others are integers (or NULL)


@dataclass(frozen=True)
class ExportTables:
    """What an export holds besides its GPU activities (read window by window: nsys_export.windows)."""

    schema: ExportSchema
    ranges: pd.DataFrame
    gpus: list[Gpu]
    unended: frozenset[int] = frozenset()  # range_ids of ranges that never ended (a run cut short)


def load_export(
    path: Path, schema: ExportSchema | None = None, checks: RowChecks | None = None
) -> ExportTables:
    """The export's NVTX ranges (`checks` counts the bad ones and those past the session's end),
    GPUs and unended ranges."""
    conn = connect_readonly(path)
    try:
        schema = schema or read_schema(conn, path)
        gpus = _gpus(conn, schema)
        ranges = load_nvtx_ranges(conn, schema, checks)
        unended = unended_range_ids(conn, schema)
    finally:
        conn.close()
    return ExportTables(schema, ranges, gpus, unended)


def _gpus(conn: sqlite3.Connection, schema: ExportSchema) -> list[Gpu]:
    """TARGET_INFO_GPU's rows: names bounded (nsys_export.names), the other columns integers or
    NULL (else the export is refused, naming the row)."""
    if not schema.has("TARGET_INFO_GPU"):
        return []
    cols = [c for c in GPU_COLUMNS if schema.has_column("TARGET_INFO_GPU", c)]
    select = []
    for c in cols:
        q = quote_identifier(c)
        if c in GPU_TEXT_COLUMNS:
            select += [head_sql(q), size_sql(q)]
        else:
            select += [q, f"typeof({q})"]
    gpus = []
    for row in conn.execute(f"SELECT rowid, {', '.join(select)} FROM TARGET_INFO_GPU").fetchall():
        gpu: dict[str, Any] = {}  # (the columns this schema has: a Gpu)
        for i, c in enumerate(cols):
            value, extra = row[1 + 2 * i], row[2 + 2 * i]
            if c in GPU_TEXT_COLUMNS:
                gpu[c] = (
                    None if value is None else read_name(conn, value, extra, "TARGET_INFO_GPU", c, row[0])
                )
            elif extra in ("integer", "null"):
                gpu[c] = value
            else:
                raise BadInput(
                    f"{schema.path} is not a usable nsys export: TARGET_INFO_GPU rowid {row[0]}: {c} is "
                    f"{extra}, not an integer"
                )
        gpus.append(cast(Gpu, gpu))
    return gpus


def analyze_export(path: Path, top_n: int = 10) -> Analysis:
    """The analysis of one export. A file that SQLite or the page reader find damaged mid-read (a corrupt
    page, a mangled schema, text that is not UTF-8) is bad input: BadInput with the reader's reason."""
    try:
        conn = connect_readonly(path)
        try:
            schema = read_schema(conn, path)
            end, stop_recorded = session_end(conn, schema), session_stop_recorded(conn, schema)
        finally:
            conn.close()
        fallbacks: list[str] = []  # where the engine leaves its fast path, filled as windows are read
        checks = RowChecks(path, end, stop_recorded)  # what the untrusted rows held, filled as they are read
        # the readers start now, beside what follows
        windows = activity_windows(schema, fallbacks=fallbacks, checks=checks)
        try:
            tables = load_export(path, schema, checks)
            progress.step("attributing GPU work to NVTX ranges")
            try:
                return analyze_tables(tables, windows, top_n=top_n, fallbacks=fallbacks, checks=checks)
            except NotWindowable as refused:  # (rare) the whole export at once, read afresh
                fallbacks = [not_windowable_note(refused)]
                checks.restart_activities()
                whole = load_gpu_activities(schema, fallbacks, checks)
                return analyze_tables(tables, iter([whole]), top_n=top_n, fallbacks=fallbacks, checks=checks)
        finally:
            windows.close()
    except (sqlite3.DatabaseError, pages.Damaged, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"{path} is a damaged or inconsistent nsys export ({reason})") from None


def _name_lookup(path: Path) -> Any:
    def lookup(ids: list[int]) -> dict[int, str]:
        conn = connect_readonly(path)
        try:
            return string_values(conn, ids)
        finally:
            conn.close()

    return lookup


def analyze_tables(
    tables: ExportTables,
    windows: Iterator[Activities],
    top_n: int = 10,
    fallbacks: Sequence[str] = (),
    checks: RowChecks | None = None,
) -> Analysis:
    """The analysis of the export's tables and its GPU activities, window by window: each window's
    figures are added to the others' (windows are cut where the GPU is idle, so busy times add up).
    `fallbacks`: where the engine left its fast path (a table read through SQLite, an export not cut
    into windows), read once `windows` is exhausted (readers fill it as they go); each becomes a
    warning, once. `checks`: what the readers found in the export's rows (nsys_export.checks), read
    then too: rows left out and events past the session's end become warnings; more than a few bad
    rows in a table refuse the export (BadInput)."""
    # pages the program never finished are set apart: every figure is over complete pages
    ranges, completion, unfinished = set_aside_unfinished(tables.ranges, tables.unended)
    codes, uniques = name_codes(ranges)
    per_instance = InstanceFigures.empty(len(ranges))
    per_name = NameFigures.empty(len(uniques))
    graphs = GraphFigures.empty(len(ranges), len(uniques))
    totals: dict[str, int] = {}
    graph_launches = graph_launches_without_activity = 0
    for acts in windows:
        runs = attribute_activities_to_ranges(ranges, acts)
        other = attribute_other_threads(ranges, acts)
        index = RunIndex(acts)
        instances_here = instance_figures(ranges, runs, index)
        names_here = name_figures(ranges, codes, len(uniques), runs, other, index)
        for key, value in kernel_totals(acts, index).items():
            totals[key] = totals.get(key, 0) + value
        graph_launches += acts.graph_launches
        graph_launches_without_activity += acts.graph_launches_without_activity
        graphs.add(graph_figures(ranges, codes, len(uniques), runs, acts))
        per_instance.add(instances_here)
        per_name.add(names_here)
        del acts, runs, other, index, instances_here, names_here
    _check_name_sums(tables.schema.path, ranges, codes, len(uniques), per_instance)
    instances = instance_table(ranges, per_instance)
    names = summarize_names(
        ranges, instances, codes, uniques, per_name, _name_lookup(tables.schema.path), top_n
    )
    rows_of = _rows_of(codes, len(uniques))
    names = [with_graph_figures(item, c, rows_of[c], graphs) for c, item in enumerate(names)]
    unlaunched = totals["unattributed_kernels"]
    warnings = [*tables.schema.warnings, *unfinished]
    if tables.ranges.empty:
        warnings.append(
            "the export holds no NVTX ranges (was --trace nvtx on, and is the nvtx package "
            "version visible to this nsys?)"
        )
    if totals["kernels"] == 0:
        warnings.append(
            "the export holds no CUDA kernels (a CPU-only run, CUDA tracing off, or an nsys "
            "whose CUPTI is older than the program's CUDA): kernel figures are zero"
        )
    if unlaunched:
        warnings.append(f"{unlaunched} kernels have no matching CUDA API launch and cannot be attributed")
    if totals["kernels"] and not graphs.recorded:
        warnings.append(NOT_RECORDED_WARNING)
    if graph_launches_without_activity:
        warnings.append(
            f"{graph_launches_without_activity} of {graph_launches} CUDA graph launches have no "
            "recorded GPU activity: nsys traced graphs as a whole (--cuda-graph-trace=graph) and this export "
            "keeps no record of their execution, so graph work is missing from every figure; capture with "
            "--cuda-graph-trace=node"
        )
    other_total = sum(r["other_threads"]["kernel_count"] for r in names)
    if other_total:
        warnings.append(
            f"{other_total} kernel launches from other threads fell inside ranges; nsys's "
            "projection leaves them out, see each range's other_threads"
        )
    warnings += dict.fromkeys(fallbacks)  # (a table read twice through SQLite: one warning)
    if checks is not None:
        warnings += checks.warnings()

    return {
        "perfctl_version": __version__,
        "export": {
            "path": str(tables.schema.path),
            "schema_version": tables.schema.schema_version,
            "nsys_version": tables.schema.product_version,
            "gpus": tables.gpus,
        },
        "warnings": warnings,
        "totals": cast(  # (kernel_totals' figures, summed over the windows)
            Totals,
            {
                "nvtx_ranges": len(tables.ranges),
                **totals,
                "graph_launches": graph_launches,
                "graph_launches_without_activity": graph_launches_without_activity,
            },
        ),
        "ranges": names,
        "stages": stage_summaries(names, graphs.recorded),
        "pages": summarize_pages(ranges, instances),
        "completion": completion,
    }


def _check_name_sums(
    path: Path, ranges: pd.DataFrame, codes: np.ndarray, n: int, per_instance: InstanceFigures
) -> None:
    """Refuse an export whose per-name sums would overflow int64: each wall time and kernel time is
    sound, but a name sums them over its instances (nested ranges of one name add a kernel's time
    once per range, as nsys does)."""
    wall = (ranges["end"].to_numpy(np.int64) - ranges["start"].to_numpy(np.int64)).astype(np.float64)
    for what, values in (("wall times", wall), ("kernel times", per_instance.kernel_time_ns)):
        sums = np.bincount(codes, weights=np.asarray(values, dtype=np.float64), minlength=n)
        check_sum(path, f"the {what} of an NVTX range name's instances", float(sums.max(initial=0.0)))


def kernel_totals(acts: Activities, index: RunIndex) -> dict[str, int]:
    """Every kernel of the export once: count, summed time, GPU busy time, kernels without a launch."""
    rows = index.kernel_rows
    if acts.fanned_out:  # a kernel matched by several launch rows appears once per row: count it once
        ids, first = np.unique(acts.activity[rows], return_index=True)
        unique_rows = rows[first]
        launched_ids = np.unique(acts.activity[rows[rows < acts.n_launched]])
        unlaunched = len(ids) - len(launched_ids)
    else:
        unique_rows = rows
        unlaunched = len(rows) - int(np.searchsorted(rows, acts.n_launched))
    everything = np.array([0]), np.array([len(rows)])
    if not acts.fanned_out and bool(index.in_sequence(*everything)[0]):
        busy = int(index.kernel_time_of(*everything)[0])  # one after another: busy = summed time
    else:
        busy = union_length(acts.start[unique_rows], acts.end[unique_rows])
    return {
        "kernels": len(unique_rows),
        "kernel_time_ns": int((acts.end[unique_rows] - acts.start[unique_rows]).sum()),
        "gpu_busy_ns": busy,
        "unattributed_kernels": int(unlaunched),
    }


def stage_summaries(names: list[RangeSummary], graph_nodes_recorded: bool = True) -> list[StageSummary]:
    """perfctl's stages (vision, prefill, decode) in the order a page runs them; zeros when absent
    (the graph kernel figures null where the export cannot tell them: analysis.graph_kernels)."""
    by_name = {r["name"]: r for r in names if r["domain"] == DOMAIN}
    out: list[StageSummary] = []
    for stage in STAGES:
        item = by_name.get(stage) or _empty_summary(stage, graph_nodes_recorded)
        out.append(
            {
                "stage": stage,
                **item,
                "wall_mean_ns": item["wall_ns"] / item["instances"] if item["instances"] else 0.0,
            }
        )
    return out


def _empty_summary(name: str, graph_nodes_recorded: bool) -> RangeSummary:
    zero_stats = dict.fromkeys(STAT_KEYS, 0.0)
    item: dict[str, Any] = {
        "domain": DOMAIN,
        "name": name,
        "instances": 0,
        "wall_ns": 0,
        "kernel_count": 0,
        "graph_kernel_count": 0 if graph_nodes_recorded else None,
        "kernel_time_ns": 0,
        "gpu_busy_ns": 0,
        "gpu_span_ns": 0,
        "gpu_idle_fraction": None,
        "launches": 0,
        "graph_launches": 0,
    }
    for label in ("memcpy", "memset"):
        item.update({f"{label}_count": 0, f"{label}_bytes": 0, f"{label}_time_ns": 0})
    item["launch_to_start_ns"] = dict(zero_stats)
    item["other_threads"] = {"kernel_count": 0, "kernel_time_ns": 0}
    item["per_instance"] = {
        k: dict(zero_stats) for k in ("wall_ns", "kernel_count", "kernel_time_ns", "gpu_busy_ns")
    }
    item["per_instance"] = _after(
        item["per_instance"],
        "kernel_count",
        "graph_kernel_count",
        dict(zero_stats) if graph_nodes_recorded else None,
    )
    item["top_kernels"] = []
    item["kernel_time_by_category"] = dict.fromkeys(CATEGORIES, 0)
    item["kernel_time_by_name"] = {}
    return cast(RangeSummary, item)  # (the memory keys are spelled per label)


def _rows_of(codes: np.ndarray, n: int) -> list[np.ndarray]:
    """Each range name's instance rows (by name code), as analysis.ranges.summarize_names groups them."""
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.searchsorted(codes[order], np.arange(1, n)))


def with_graph_figures(item: RangeSummary, code: int, rows: np.ndarray, graphs: GraphFigures) -> RangeSummary:
    """A range name's summary (name code `code`, instance rows `rows`) with its CUDA graph figures
    (analysis.graph_kernels), each beside the figure it splits: graph_kernel_count after
    kernel_count, graph_launches (summed over the instances, as `launches`) after launches, and the
    per-instance statistics of graph kernels after those of kernels. Null where the export cannot tell."""
    kernels = None if graphs.name_kernels is None else int(graphs.name_kernels[code])
    per_instance: Statistics | None = None
    if graphs.instance_kernels is not None:
        per_instance = cast(Statistics, describe(graphs.instance_kernels[rows]))
    out = _after(dict(item), "kernel_count", "graph_kernel_count", kernels)
    out = _after(out, "launches", "graph_launches", int(graphs.instance_launches[rows].sum()))
    out["per_instance"] = _after(
        dict(item["per_instance"]), "kernel_count", "graph_kernel_count", per_instance
    )
    return cast(RangeSummary, out)


def _after(record: dict[str, Any], anchor: str, key: str, value: Any) -> dict[str, Any]:
    """`record` with `key` inserted right after `anchor` (analysis.json keeps a record's keys in order)."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        out[k] = v
        if k == anchor:
            out[key] = value
    return out


def summarize_pages(ranges: pd.DataFrame, instances: pd.DataFrame) -> list[PageSummary]:
    """Per page instance: its wall time and, per stage inside it, wall and attributed kernel time."""
    import pandas as pd

    ours = (ranges["domain"] == DOMAIN).to_numpy()
    page_rows = np.flatnonzero(ours & (ranges["name"] == PAGE).to_numpy())
    if len(page_rows) == 0:
        return []
    stage_rows = np.flatnonzero(ours & ranges["name"].isin(STAGES).to_numpy())
    page_of = _enclosing(ranges, page_rows, stage_rows)
    inside = page_of >= 0
    # one cell per (page, stage): sums over the stage instances inside each page
    page_index = np.searchsorted(page_rows, page_of[inside])
    stage_index = pd.Categorical(ranges["name"].to_numpy()[stage_rows[inside]], categories=STAGES).codes
    cell = page_index * len(STAGES) + stage_index
    cells = len(page_rows) * len(STAGES)
    rows = stage_rows[inside]
    sums = {"instances": np.bincount(cell, minlength=cells)}
    for column in ("wall_ns", "kernel_count", "kernel_time_ns", "gpu_busy_ns"):
        values = instances[column].to_numpy(np.int64)[rows]
        sums[column] = sum_by(cell, values, cells)  # (exact: a float bincount rounds past 2^53)
    payload = ranges["payload"].to_numpy()[page_rows]
    starts = ranges["start"].to_numpy(np.int64)[page_rows]
    walls = instances["wall_ns"].to_numpy(np.int64)[page_rows]
    busy = instances["gpu_busy_ns"].to_numpy(np.int64)[page_rows]
    result: list[PageSummary] = []
    for i in range(len(page_rows)):
        result.append(
            {
                "sequence": None if pd.isna(payload[i]) else int(payload[i]),
                "start_ns": int(starts[i]),
                "wall_ns": int(walls[i]),
                "gpu_busy_ns": int(busy[i]),
                "stages": {
                    stage: cast(PageStage, {key: int(sums[key][i * len(STAGES) + j]) for key in sums})
                    for j, stage in enumerate(STAGES)
                },
            }
        )
    return result


def _enclosing(ranges: pd.DataFrame, outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """For each inner row, the outer row on its thread that contains it, or -1.

    Outer ranges of one thread must not overlap each other (true of perfctl's page ranges).
    """
    thread = ranges["thread"].to_numpy(np.int64)
    start, end = ranges["start"].to_numpy(np.int64), ranges["end"].to_numpy(np.int64)
    result = np.full(len(inner), -1, dtype=np.int64)
    for t in np.unique(thread[outer]):
        o = outer[thread[outer] == t]
        o = o[np.argsort(start[o], kind="stable")]
        mask = thread[inner] == t
        i = inner[mask]
        pos = np.searchsorted(start[o], start[i], side="right") - 1
        ok = (pos >= 0) & (end[i] <= end[o[np.clip(pos, 0, None)]])
        result[mask] = np.where(ok, o[np.clip(pos, 0, None)], -1)
    return result
