"""Load the events perfctl analyzes: NVTX ranges (a DataFrame) and GPU activities with their launches
(numpy columns, since a real export holds millions of them).

Names are resolved the way nsys's own reports resolve them; kernel names stay StringIds ids until a
summary needs the few it shows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from perfctl.nsys_export.columns import Columns, read_frame, table_chunks
from perfctl.nsys_export.pages import RowFilter
from perfctl.nsys_export.schema import ExportSchema, connect_readonly

# pandas is imported where it is used: its import takes half a second, which `perfctl analyze`
# spends while the export's readers already decode (nsys_export.windows)
if TYPE_CHECKING:
    import pandas as pd

Int64s = npt.NDArray[np.int64]
Int32s = npt.NDArray[np.int32]

# A serialized globalTid is (hw << 56) | (vm << 48) | (pid << 24) | tid.
THREAD_BITS = 24
# nsys's reports match NVTX domains on the pid bits alone (mask 0x0000FFFFFF000000).
_PID_BITS_MASK = 0x0000FFFFFF000000


def process_of(thread: Int64s) -> Int64s:
    """The process part of serialized globalTids (the thread bits cleared), as CUPTI's globalPid."""
    return thread & ~np.int64((1 << THREAD_BITS) - 1)


KERNEL, MEMCPY, MEMSET = 0, 1, 2
# StringIds ids are >= 0; memcpy and memset get these stand-in name ids.
PSEUDO_NAME = {MEMCPY: -2, MEMSET: -3}
PSEUDO_NAME_TEXT = {-2: "[CUDA memcpy]", -3: "[CUDA memset]"}

RANGE_COLUMNS = [
    "range_id",
    "start",
    "end",
    "thread",
    "domain",
    "name",
    "style",
    "payload",
    "ended_on_other_thread",
]


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

    def __len__(self) -> int:
        return len(self.start)


def string_values(conn: sqlite3.Connection, ids: list[int]) -> dict[int, str]:
    """StringIds values for a few ids (plus perfctl's stand-in ids for memcpy/memset)."""
    out = {i: PSEUDO_NAME_TEXT[i] for i in ids if i in PSEUDO_NAME_TEXT}
    wanted = [int(i) for i in ids if i >= 0]
    for lo in range(0, len(wanted), 500):
        chunk = wanted[lo : lo + 500]
        marks = ",".join("?" * len(chunk))
        out.update(
            {
                int(k): str(v)
                for k, v in conn.execute(f"SELECT id, value FROM StringIds WHERE id IN ({marks})", chunk)
            }
        )
    return out


def kernel_mangled_names(conn: sqlite3.Connection, schema: ExportSchema) -> dict[str, str]:
    """Each kernel's demangled name (nsys's demangler) -> its mangled name, when the export has them.
    One scan of the kernel table: only for joining other tools' kernel names."""
    if not schema.has_column("CUPTI_ACTIVITY_KIND_KERNEL", "mangledName"):
        return {}
    rows = conn.execute(
        "SELECT d.value, m.value FROM (SELECT DISTINCT demangledName AS d_id, mangledName AS m_id "
        "FROM CUPTI_ACTIVITY_KIND_KERNEL) AS k JOIN StringIds AS d ON d.id = k.d_id "
        "JOIN StringIds AS m ON m.id = k.m_id"
    ).fetchall()
    return {str(d): str(m) for d, m in rows}


def _nvtx_text(schema: ExportSchema) -> tuple[str, str]:
    """(SQL text expression, join) for an NVTX row's text: registered string first, as nsys does."""
    if schema.has_column("NVTX_EVENTS", "textId"):
        return "coalesce(s.value, e.text)", "LEFT JOIN StringIds AS s ON e.textId = s.id"
    return "e.text", ""


def load_nvtx_ranges(conn: sqlite3.Connection, schema: ExportSchema) -> pd.DataFrame:
    """One row per NVTX push/pop or start/end range, with its domain name and text resolved.

    As in nsys's reports: a range whose end was never recorded ends at the last NVTX timestamp of
    the export; the domain of a range is the domain-create event with the same domain id in the same
    process; registered strings (`textId`) take precedence over inline `text`.
    """
    import pandas as pd

    if not schema.has("NVTX_EVENTS"):
        return pd.DataFrame(columns=RANGE_COLUMNS)
    pushpop = {schema.event_type("NvtxPushPopRange"), schema.event_type("NvtxtPushPopRange")}
    startend = {schema.event_type("NvtxStartEndRange"), schema.event_type("NvtxtStartEndRange")}
    kinds = ",".join(str(k) for k in sorted(pushpop | startend))
    text_expr, join = _nvtx_text(schema)
    payload_cols = [
        c
        for c in ("int64Value", "uint64Value", "int32Value", "uint32Value")
        if schema.has_column("NVTX_EVENTS", c)
    ]
    payload_expr = f"coalesce({', '.join('e.' + c for c in payload_cols)})" if payload_cols else "NULL"
    end_tid = "e.endGlobalTid IS NOT NULL" if schema.has_column("NVTX_EVENTS", "endGlobalTid") else "0"
    last_ts = conn.execute("SELECT max(max(start), coalesce(max(end), 0)) FROM NVTX_EVENTS").fetchone()[0]
    frame = read_frame(
        schema.path,
        f"""SELECT e.rowid AS range_id, e.start AS start, coalesce(e.end, {int(last_ts or 0)}) AS "end",
                   e.eventType AS event_type, e.globalTid AS thread, coalesce(e.domainId, 0) AS domain_id,
                   coalesce({text_expr}, '') AS name, {payload_expr} AS payload,
                   {end_tid} AS ended_on_other_thread
            FROM NVTX_EVENTS AS e {join}
            WHERE e.eventType IN ({kinds})""",
    )
    if frame.empty:
        return pd.DataFrame(columns=RANGE_COLUMNS)
    frame["style"] = np.where(frame["event_type"].isin(pushpop), "PushPop", "StartEnd")
    frame["ended_on_other_thread"] = frame["ended_on_other_thread"].astype(bool)
    frame["domain"] = _resolve_domains(conn, schema, frame)
    return frame[RANGE_COLUMNS].sort_values(["thread", "start"], kind="stable").reset_index(drop=True)


def unended_range_ids(conn: sqlite3.Connection, schema: ExportSchema) -> frozenset[int]:
    """The `range_id`s of ranges that were never ended: the program stopped inside them (a crash, a
    kill, Ctrl-C). Some nsys versions leave their end NULL; nsys 2022.4 and 2023.4 end them at the
    end of the session (`ANALYSIS_DETAILS.duration`, on the ranges' own clock), where no real end can be.
    """
    if not schema.has("NVTX_EVENTS"):
        return frozenset()
    names = ("NvtxPushPopRange", "NvtxtPushPopRange", "NvtxStartEndRange", "NvtxtStartEndRange")
    kinds = [schema.event_type(n) for n in names]
    marks = ",".join("?" * len(kinds))
    session_end = None
    if schema.has_column("ANALYSIS_DETAILS", "duration"):
        session_end = conn.execute("SELECT max(duration) FROM ANALYSIS_DETAILS").fetchone()[0]
    rows = conn.execute(
        f'SELECT rowid FROM NVTX_EVENTS WHERE eventType IN ({marks}) AND ("end" IS NULL OR "end" >= ?)',
        (*kinds, session_end if session_end is not None else 2**63 - 1),
    )
    return frozenset(int(r[0]) for r in rows)


def _resolve_domains(conn: sqlite3.Connection, schema: ExportSchema, ranges: pd.DataFrame) -> pd.Series:
    import pandas as pd

    text_expr, join = _nvtx_text(schema)
    rows = conn.execute(
        f"""SELECT e.domainId, e.globalTid, {text_expr}, min(e.start)
            FROM NVTX_EVENTS AS e {join} WHERE e.eventType = ? GROUP BY 1, 2 ORDER BY 4""",
        (schema.event_type("NvtxDomainCreate"),),
    ).fetchall()
    names: dict[tuple[int, int], str] = {}
    for domain_id, thread, text, _ in rows:
        names.setdefault((int(domain_id), int(thread) & _PID_BITS_MASK), str(text or ""))
    if not names:
        return pd.Series("", index=ranges.index, dtype="object")
    pid_bits = ranges["thread"].to_numpy(np.int64) & _PID_BITS_MASK
    keys = zip(ranges["domain_id"].to_numpy(np.int64).tolist(), pid_bits.tolist(), strict=True)
    return pd.Series([names.get(k, "") for k in keys], index=ranges.index, dtype="object")


ACTIVITY_TABLES = (
    ("CUPTI_ACTIVITY_KIND_KERNEL", KERNEL),
    ("CUPTI_ACTIVITY_KIND_MEMCPY", MEMCPY),
    ("CUPTI_ACTIVITY_KIND_MEMSET", MEMSET),
)
LAUNCH_COLUMNS = ["thread", "start", "end"]
_CORR_LIMIT = 1 << 32  # CUPTI correlation ids are 32-bit


def build_activities(
    cols: dict[str, npt.NDArray[Any]],
    kind: npt.NDArray[np.int8],
    ids: Int64s,
    act_rows: Int64s,
    launch: Columns,
    graphs: GraphLaunches,
) -> Activities:
    """Activities in launch order from activity columns (start, end, short_id, name_id, bytes; `kind`
    and activity `ids` beside them) and their join to launches (`act_rows` into the columns, row-
    aligned with the `launch` columns). Consumes `cols` and `launch`."""
    order = launch_order(launch["thread"], launch["start"])
    act_rows = act_rows[order]
    for c in LAUNCH_COLUMNS:  # one column at a time: the old copy is freed before the next
        launch[c] = launch[c][order]
    del order
    for name in list(cols):
        cols[name] = cols[name][act_rows]
    return Activities(
        activity=ids[act_rows],
        kind=kind[act_rows],
        start=cols.pop("start").astype(np.int64, copy=False),
        end=cols.pop("end").astype(np.int64, copy=False),
        short_id=cols.pop("short_id").astype(np.int32, copy=False),
        name_id=cols.pop("name_id").astype(np.int32, copy=False),
        bytes=cols.pop("bytes").astype(np.int64, copy=False),
        launch_thread=launch["thread"],
        launch_start=launch["start"],
        launch_end=launch["end"],
        n_launched=int(np.count_nonzero(launch["thread"] >= 0)),
        fanned_out=len(act_rows) != len(kind),
        graph_launches=graphs.total,
        graph_launches_without_activity=graphs.unmatched,
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
    if span * (len(threads) + 1) >= 2**62:
        raise OverflowError("export time span too large for the launch-order key")
    # the export is nearly in launch order already, which the stable (merge) sort exploits
    key = code * span + np.where(launched, start - t0, 0)
    return np.argsort(key, kind="stable")


@dataclass
class GraphLaunches:
    """CUDA graph launch calls seen while probing, and how many of them launched nothing recorded
    (under --cuda-graph-trace=graph, nsys 2022.4 keeps no per-graph record of their execution)."""

    total: int = 0
    unmatched: int = 0

    def count(self, names: Int64s, hits: Int64s, graph_ids: Int64s) -> None:
        """Count the graph launches among API rows (their name ids), which matched `hits` activities
        each."""
        if len(graph_ids):
            is_graph = np.isin(names, graph_ids)
            self.total += int(is_graph.sum())
            self.unmatched += int((is_graph & (hits == 0)).sum())


def _name_ids(path: Path, globs: tuple[str, ...]) -> list[int]:
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


def api_name_ids(path: Path) -> tuple[Int64s, Int64s]:
    """StringIds ids of (the launch APIs, the CUDA graph launch APIs)."""
    return (
        np.array(_name_ids(path, LAUNCH_API_GLOBS), dtype=np.int64),
        np.array(_name_ids(path, GRAPH_LAUNCH_GLOBS), dtype=np.int64),
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

        if corr.max(initial=0) >= _CORR_LIMIT - 1:
            raise ValueError("correlation ids beyond 32 bits: not an export of CUPTI data perfctl knows")
        self.n = len(corr)
        self.process, self.corr = process, corr
        self.procs = np.sort(pd.unique(np.append(process, -1)))  # -1: never a process, keeps it non-empty
        act_key = np.searchsorted(self.procs, process).astype(np.int64) * _CORR_LIMIT + (corr + 1)
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
        key = at.astype(np.int64) * _CORR_LIMIT + (batch["corr"] + 1)
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
) -> tuple[Int64s, Columns]:
    """Join activities to their launching API rows over the whole runtime table (`LaunchJoin`): the
    table is read in chunks (its launch-API rows from `launch_rows` if given: read elsewhere; a
    fallback to SQLite is noted in `fallbacks`, see `columns.table_chunks`)."""
    launch_ids, graph_ids = api_name_ids(path)
    join = LaunchJoin(process, corr)
    graphs = graphs if graphs is not None else GraphLaunches()

    def scan(is_launch: bool | None) -> None:
        """Probe the runtime rows of launch APIs (True), of the other APIs (False), or all (None)."""
        where = None if is_launch is None else RowFilter("nameId", launch_ids, inside=is_launch)
        for batch in table_chunks(path, "CUPTI_ACTIVITY_KIND_RUNTIME", API_COLUMNS, where, fallbacks):
            probed, hits = join.probe(batch)
            graphs.count(probed["name"], hits, graph_ids)

    # The join runs in two passes over disjoint rows, together exactly the whole table: launch APIs
    # first (about half of a real export's API rows, and all the launches in practice), then the other
    # API rows, read only when some activity is still without a launch.
    # (CUPTI gives every API call its own correlation id, so the second pass can add no second
    # launch to an activity the first pass matched.)
    if launch_rows is not None:
        for batch in launch_rows:
            probed, hits = join.probe(batch)
            graphs.count(probed["name"], hits, graph_ids)
    if len(launch_ids):
        if launch_rows is None:
            scan(True)
        if join.unmatched().any():
            scan(False)
    elif launch_rows is None:
        scan(None)
    return join.result()
