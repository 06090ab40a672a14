"""Load the GPU activities perfctl analyzes, with their launches (numpy columns, since a real export
holds millions of them), and the names of the few kernels a summary shows. NVTX ranges: `nvtx`.

Names are resolved the way nsys's own reports resolve them, and bounded (`names`); kernel names stay
StringIds ids until a summary needs the few it shows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from perfctl.nsys_export.checks import (
    CORRELATION_LIMIT,
    RowChecks,
    any_integer,
    correlation,
    string_id,
)
from perfctl.nsys_export.columns import Columns, table_chunks
from perfctl.nsys_export.names import head_sql, read_name, size_sql
from perfctl.nsys_export.nvtx import load_nvtx_ranges
from perfctl.nsys_export.pages import RowFilter
from perfctl.nsys_export.schema import ExportSchema, connect_readonly

__all__ = ["load_nvtx_ranges"]  # (kept importable from here: perfctl.capture.run counts ranges with it)

Int64s = npt.NDArray[np.int64]
Int32s = npt.NDArray[np.int32]

# A serialized globalTid is (hw << 56) | (vm << 48) | (pid << 24) | tid.
THREAD_BITS = 24


def process_of(thread: Int64s) -> Int64s:
    """The process part of serialized globalTids (the thread bits cleared), as CUPTI's globalPid."""
    return thread & ~np.int64((1 << THREAD_BITS) - 1)


KERNEL, MEMCPY, MEMSET = 0, 1, 2
# StringIds ids are >= 0; memcpy and memset get these stand-in name ids.
PSEUDO_NAME = {MEMCPY: -2, MEMSET: -3}
PSEUDO_NAME_TEXT = {-2: "[CUDA memcpy]", -3: "[CUDA memset]"}


def no_calls() -> Columns:
    """Launch-call columns (LAUNCH_COLUMNS) of no call."""
    return {c: np.empty(0, np.int64) for c in LAUNCH_COLUMNS}


@dataclass(frozen=True)
class Activities:
    """GPU activities (kernels, memcpys, memsets), one row per (activity, launch) pair, in launch order.

    Rows are sorted by launching thread, then by launch start (the activities of one launch, such as
    the kernels of a replayed CUDA graph, stay together in export order), and the activities without
    a recorded launch come last, from row `n_launched` on. In that order the activities an NVTX range
    holds under nsys's projection are one contiguous run of rows (see analysis.attribution).

    `activity` identifies the GPU event itself; when some correlation id is matched by several API
    rows (nsys's join keeps one row for each) it repeats, and `fanned_out` is True. Launch columns
    are -1 where no launch was recorded.

    `in_graph` marks the kernels replayed from a CUDA graph: CUPTI sets a kernel's graphNodeId when
    nsys traced the graph node by node (--cuda-graph-trace=node), and leaves it NULL for a kernel
    launched on its own. None when the export's kernel table has no graphNodeId column: the two
    cannot be told apart there. `graph_launch_calls`: the thread, start and end of every graph
    launch call counted in `graph_launches` (with or without recorded activity).
    """

    activity: Int64s
    kind: npt.NDArray[np.int8]
    start: Int64s
    end: Int64s
    short_id: Int32s
    name_id: Int32s
    bytes: Int64s
    launch_thread: Int64s
    launch_start: Int64s
    launch_end: Int64s
    n_launched: int
    fanned_out: bool = False
    graph_launches: int = 0  # cudaGraphLaunch / cuGraphLaunch calls in the export
    graph_launches_without_activity: int = 0  # of those, how many no GPU activity was recorded for
    in_graph: npt.NDArray[np.bool_] | None = None
    graph_launch_calls: Columns = field(default_factory=no_calls)

    def __len__(self) -> int:
        return len(self.start)


def string_values(conn: sqlite3.Connection, ids: list[int]) -> dict[int, str]:
    """StringIds values for a few ids (plus perfctl's stand-in ids for memcpy/memset), each bounded
    (`names`: a long one as its head, length and hash)."""
    out = {i: PSEUDO_NAME_TEXT[i] for i in ids if i in PSEUDO_NAME_TEXT}
    wanted = [int(i) for i in ids if i >= 0]
    for lo in range(0, len(wanted), 500):
        chunk = wanted[lo : lo + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT id, {head_sql('value')}, {size_sql('value')}, rowid FROM StringIds "
            f"WHERE id IN ({marks})",
            chunk,
        ).fetchall()
        for ident, head, length, rowid in rows:
            out[int(ident)] = read_name(conn, head, length, "StringIds", "value", int(rowid))
    return out


def kernel_mangled_names(conn: sqlite3.Connection, schema: ExportSchema) -> dict[str, str]:
    """Each kernel's demangled name (nsys's demangler) -> its mangled name, when the export has them,
    both bounded as `string_values` bounds them. One scan of the kernel table: only for joining other
    tools' kernel names."""
    if not schema.has_column("CUPTI_ACTIVITY_KIND_KERNEL", "mangledName"):
        return {}
    pairs = conn.execute(
        "SELECT DISTINCT demangledName, mangledName FROM CUPTI_ACTIVITY_KIND_KERNEL "
        "WHERE typeof(demangledName) = 'integer' AND typeof(mangledName) = 'integer' "
        "AND demangledName >= 0 AND mangledName >= 0"
    ).fetchall()
    text = string_values(conn, sorted({int(i) for pair in pairs for i in pair}))
    return {text[d]: text[m] for d, m in pairs if d in text and m in text}


ACTIVITY_TABLES = (
    ("CUPTI_ACTIVITY_KIND_KERNEL", KERNEL),
    ("CUPTI_ACTIVITY_KIND_MEMCPY", MEMCPY),
    ("CUPTI_ACTIVITY_KIND_MEMSET", MEMSET),
)
LAUNCH_COLUMNS = ["thread", "start", "end"]


def build_activities(
    cols: dict[str, npt.NDArray[Any]],
    kind: npt.NDArray[np.int8],
    ids: Int64s,
    act_rows: Int64s,
    launch: Columns,
    graphs: GraphLaunches,
    graph_nodes_recorded: bool = True,
) -> Activities:
    """Activities in launch order from activity columns (start, end, short_id, name_id, bytes,
    graph_node; `kind` and activity `ids` beside them) and their join to launches (`act_rows` into
    the columns, row-aligned with the `launch` columns). `graph_nodes_recorded`: whether the kernel
    table has its graphNodeId column (else graph_node is NULL throughout, and `in_graph` None).
    Consumes `cols` and `launch`."""
    order = launch_order(launch["thread"], launch["start"])
    act_rows = act_rows[order]
    for c in LAUNCH_COLUMNS:  # one column at a time: the old copy is freed before the next
        launch[c] = launch[c][order]
    del order
    for name in list(cols):
        cols[name] = cols[name][act_rows]
    fanned_out = len(act_rows) != len(kind)  # (some activity has several launch rows)
    kind = kind[act_rows]
    graph_node = cols.pop("graph_node")  # (NULL, read -1: launched on its own; memory rows: NULL)
    in_graph = (graph_node >= 0) & (kind == KERNEL) if graph_nodes_recorded else None
    del graph_node
    return Activities(
        activity=ids[act_rows],
        kind=kind,
        start=cols.pop("start").astype(np.int64, copy=False),
        end=cols.pop("end").astype(np.int64, copy=False),
        short_id=cols.pop("short_id").astype(np.int32, copy=False),
        name_id=cols.pop("name_id").astype(np.int32, copy=False),
        bytes=cols.pop("bytes").astype(np.int64, copy=False),
        launch_thread=launch["thread"],
        launch_start=launch["start"],
        launch_end=launch["end"],
        n_launched=int(np.count_nonzero(launch["thread"] >= 0)),
        fanned_out=fanned_out,
        graph_launches=graphs.total,
        graph_launches_without_activity=graphs.unmatched,
        in_graph=in_graph,
        graph_launch_calls=graphs.launch_calls(),
    )


def launch_order(thread: Int64s, start: Int64s) -> Int64s:
    """The stable order by (launching thread, launch start), rows without a launch (thread -1) last."""
    import pandas as pd

    if len(thread) == 0:
        return np.empty(0, dtype=np.int64)
    threads = np.sort(pd.unique(thread[thread >= 0]))
    code = np.searchsorted(threads, thread).astype(np.int64)
    code[thread < 0] = len(threads)
    launched = thread >= 0
    t0 = int(start[launched].min()) if launched.any() else 0
    span = int(start.max()) - t0 + 2
    offset = np.where(launched, start - t0, 0)
    if span * (len(threads) + 1) >= 2**62:  # one key would overflow: sort by both (slower, as stable)
        return np.lexsort((offset, code)).astype(np.int64)
    # the export is nearly in launch order already, which the stable (merge) sort exploits
    return np.argsort(code * span + offset, kind="stable")


@dataclass
class GraphLaunches:
    """CUDA graph launch calls seen while probing, and how many of them launched nothing recorded
    (under --cuda-graph-trace=graph, nsys 2022.4 keeps no per-graph record of their execution);
    the calls themselves (thread, start, end: LAUNCH_COLUMNS) are kept, to be attributed to ranges."""

    total: int = 0
    unmatched: int = 0
    calls: list[Columns] = field(default_factory=list)

    def count(
        self,
        batch: Columns,
        hits: Int64s,
        graph_ids: Int64s,
        done: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """Count the graph launches among API rows (API_COLUMNS; only the `done` ones when given),
        which matched `hits` activities each."""
        if len(graph_ids):
            is_graph = np.isin(batch["name"], graph_ids)
            if done is not None:
                is_graph &= done
            self.total += int(is_graph.sum())
            self.unmatched += int((is_graph & (hits == 0)).sum())
            if is_graph.any():
                self.calls.append({c: batch[c][is_graph] for c in LAUNCH_COLUMNS})

    def launch_calls(self) -> Columns:
        """The graph launch calls counted so far, in the order they were counted."""
        if not self.calls:
            return no_calls()
        return {c: np.concatenate([part[c] for part in self.calls]) for c in LAUNCH_COLUMNS}


def string_ids_matching(path: Path, globs: tuple[str, ...]) -> list[int]:
    """StringIds ids of the API names matching any of the GLOB patterns."""
    conn = connect_readonly(path)
    try:
        where = " OR ".join("value GLOB ?" for _ in globs)
        return [int(r[0]) for r in conn.execute(f"SELECT id FROM StringIds WHERE {where}", globs)]
    finally:
        conn.close()


# The CUDA APIs that put work on a GPU (runtime and driver): kernel, graph, copy and set launches.
LAUNCH_API_GLOBS = ("cu*Launch*", "cu*Memcpy*", "cu*Memset*", "cu*Prefetch*")
GRAPH_LAUNCH_GLOBS = ("cuda*GraphLaunch*", "cuGraphLaunch*")


API_COLUMNS = {
    "thread": "globalTid",
    "start": "start",
    "end": "end",
    "corr": "correlationId",
    "name": "nameId",
}
# the ids of an API row the analysis needs (checks.RowChecks refuses others)
API_RULES = (
    any_integer("thread", "globalTid"),
    correlation("corr"),
    string_id("name", "nameId"),
)


def api_name_ids(path: Path) -> tuple[Int64s, Int64s]:
    """StringIds ids of (the launch APIs, the CUDA graph launch APIs)."""
    return (
        np.array(string_ids_matching(path, LAUNCH_API_GLOBS), dtype=np.int64),
        np.array(string_ids_matching(path, GRAPH_LAUNCH_GLOBS), dtype=np.int64),
    )


class LaunchJoin:
    """Activities (process, correlation id) joined to the API rows fed to `probe`, batch by batch.

    The launch of an activity is the API row with the same correlation id in the same process
    (correlation ids are unique per process only), exactly nsys's join. Each activity gets one output
    row per matching API row (normally exactly one), or one row with launch columns -1 when nothing
    matches; a second match of one activity is kept as an extra row.
    """

    def __init__(self, process: Int64s, corr: Int64s) -> None:
        import pandas as pd

        if corr.max(initial=0) >= CORRELATION_LIMIT - 1:
            raise ValueError("correlation ids beyond 32 bits: not an export of CUPTI data perfctl knows")
        self.n = len(corr)
        self.process, self.corr = process, corr
        self.procs = np.sort(pd.unique(np.append(process, -1)))  # -1: never a process, keeps it non-empty
        act_key = np.searchsorted(self.procs, process).astype(np.int64) * CORRELATION_LIMIT + (corr + 1)
        self.order = np.argsort(act_key, kind="stable")
        self.sorted_key = act_key[self.order]
        self.launch = {c: np.full(self.n, -1, np.int64) for c in LAUNCH_COLUMNS}
        self.extra: list[Columns] = []

    def probe(self, batch: Columns) -> tuple[Columns, Int64s]:
        """Match the API rows of `batch` (API_COLUMNS) to the activities: (the rows that can launch
        something, i.e. without NULL ids, and how many activities each matched)."""
        import pandas as pd

        if (batch["corr"] < 0).any() or (batch["thread"] < 0).any():  # NULLs (read as -1) launch nothing
            known = (batch["corr"] >= 0) & (batch["thread"] >= 0)
            batch = {c: v[known] for c, v in batch.items()}
        procs, sorted_key, launch = self.procs, self.sorted_key, self.launch
        owner = process_of(batch["thread"])
        at = np.minimum(np.searchsorted(procs, owner), len(procs) - 1)
        key = at.astype(np.int64) * CORRELATION_LIMIT + (batch["corr"] + 1)
        lo = np.searchsorted(sorted_key, key, side="left")
        found = sorted_key[np.minimum(lo, len(sorted_key) - 1)] == key if len(sorted_key) else lo < 0
        found &= procs[at] == owner
        hits = found.astype(np.int64)
        # most keys match one activity; those whose next key is equal too match more
        more = np.flatnonzero(found & (np.minimum(lo + 1, len(sorted_key) - 1) > lo))
        more = more[sorted_key[lo[more] + 1] == key[more]]
        if len(more):
            hits[more] = np.searchsorted(sorted_key, key[more], side="right") - lo[more]
        sel = np.flatnonzero(hits)
        if len(sel) == 0:
            return batch, hits
        reps = hits[sel]
        offsets = np.arange(int(reps.sum()), dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps)
        act = self.order[np.repeat(lo[sel], reps) + offsets]
        rt = np.repeat(sel, reps)
        fresh = launch["thread"][act] < 0
        # an activity twice in this batch (two API rows with its key) keeps the first as its launch;
        # API rows come in time order, so their keys rarely fail to rise
        rising = len(act) == len(sel) and bool(np.all(key[sel][1:] > key[sel][:-1]))
        if not rising and not pd.Index(act).is_unique:
            fresh &= ~pd.Index(act).duplicated()
        for c in LAUNCH_COLUMNS:
            launch[c][act[fresh]] = batch[c][rt[fresh]]
        if not fresh.all():
            self.extra.append({"act": act[~fresh], **{c: batch[c][rt[~fresh]] for c in LAUNCH_COLUMNS}})
        return batch, hits

    def unmatched(self) -> npt.NDArray[np.bool_]:
        return self.launch["thread"] < 0

    def result(self) -> tuple[Int64s, Columns]:
        """(activity rows, launch columns), row-aligned, ordered by activity."""
        n, launch, extra = self.n, self.launch, self.extra
        if not extra:
            return np.arange(n, dtype=np.int64), launch
        acts = np.concatenate([np.arange(n, dtype=np.int64), *(e["act"] for e in extra)])
        by_act = np.argsort(acts, kind="stable")
        return acts[by_act], {
            c: np.concatenate([launch[c], *(e[c] for e in extra)])[by_act] for c in LAUNCH_COLUMNS
        }


def probe_launches(
    path: Path,
    process: Int64s,
    corr: Int64s,
    graphs: GraphLaunches | None = None,
    launch_rows: Iterator[Columns] | None = None,
    fallbacks: list[str] | None = None,
    checks: RowChecks | None = None,
) -> tuple[Int64s, Columns]:
    """Join activities to their launching API rows over the whole runtime table (`LaunchJoin`): the
    table is read in chunks (its launch-API rows from `launch_rows` if given: read and checked
    elsewhere; a fallback to SQLite is noted in `fallbacks`, see `columns.table_chunks`). The rows
    read here are checked by `checks`, and counted there unless `launch_rows` were given (the rows of
    other APIs then only lose their bad rows)."""
    launch_ids, graph_ids = api_name_ids(path)
    join = LaunchJoin(process, corr)
    graphs = graphs if graphs is not None else GraphLaunches()
    checks = RowChecks(path) if checks is None else checks
    table = "CUPTI_ACTIVITY_KIND_RUNTIME"

    def scan(is_launch: bool | None) -> None:
        """Probe the runtime rows of launch APIs (True), of the other APIs (False), or all (None)."""
        where = None if is_launch is None else RowFilter("nameId", launch_ids, inside=is_launch)
        counted = launch_rows is None
        for raw in table_chunks(path, table, API_COLUMNS, where, fallbacks):
            batch = checks.launches(table, raw, API_RULES, where, counted)
            probed, hits = join.probe(batch)
            graphs.count(probed, hits, graph_ids)

    # The join runs in two passes over disjoint rows, together exactly the whole table: launch APIs
    # first (about half of a real export's API rows, and all the launches in practice), then the other
    # API rows, read only when some activity is still without a launch.
    # (CUPTI gives every API call its own correlation id, so the second pass can add no second
    # launch to an activity the first pass matched.)
    if launch_rows is not None:
        for batch in launch_rows:
            probed, hits = join.probe(batch)
            graphs.count(probed, hits, graph_ids)
    if len(launch_ids):
        if launch_rows is None:
            scan(True)
        if join.unmatched().any():
            scan(False)
    elif launch_rows is None:
        scan(None)
    return join.result()
