"""The export's GPU activities, joined to their launches, in windows of time: analysis with bounded
memory.

An export holds millions of kernels, and every figure perfctl reports is a sum over them, or a GPU
busy time (a union of kernel intervals), which adds up over stretches of time the GPU was idle
between. So the activities (kernels, memcpys, memsets: each table is in start order in an nsys
export) are read merged in start order, and the stream is cut into windows of at least TARGET_ROWS
activities at times when the GPU is idle: every activity starting before the cut has ended by it.

Each window's activities are joined to the launch-API rows that started before its cut and were
not used up by an earlier window (a launch starts before its activity; the API table is in start
order too); API rows that launched nothing in their window get one more window, for activities
still queued at a cut. Each window is handed over as one `Activities`, attributed against every
NVTX range, and its figures added to the others'. Memory then grows with a window, not with the
export.

Exactness does not rest on those orders. A table out of start order raises `NotWindowable`; and
activities that found no launch in their window are looked up once more at the end in the whole
API table: if a launch is there after all, that is `NotWindowable` too. The caller then analyzes
the export as one window (`load_gpu_activities`) and says so among the analysis's warnings
(`not_windowable_note`). One window is also what an export whose GPU is never idle gets.

The readers append a sentence to the `fallbacks` list they are given for each table they leave to
SQLite (`columns.table_chunks`); those of the background processes arrive as their chunks are read,
so the list is complete once the windows are.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterator

import numpy as np
import numpy.typing as npt

from perfctl.nsys_export.checks import (
    RowChecks,
    any_integer,
    byte_count,
    correlation,
    graph_node,
    string_id,
)
from perfctl.nsys_export.columns import (
    BackgroundChunks,
    Columns,
    keep_freed_memory,
    return_free_memory_to_os,
    table_chunks,
)
from perfctl.nsys_export.events import (
    ACTIVITY_TABLES,
    API_COLUMNS,
    API_RULES,
    KERNEL,
    PSEUDO_NAME,
    Activities,
    GraphLaunches,
    LaunchJoin,
    api_name_ids,
    build_activities,
    probe_launches,
)
from perfctl.nsys_export.pages import NULL, RowFilter
from perfctl.nsys_export.schema import ExportSchema

Int64s = npt.NDArray[np.int64]
TARGET_ROWS = 1 << 19  # activities per window at least (the last may hold fewer)
TRIM_EVERY = 4  # windows between returns of freed memory to the OS (each return costs page faults)
RUNTIME = "CUPTI_ACTIVITY_KIND_RUNTIME"
_NEVER = 1 << 62
_ID_BITS = 40  # an activity's id: its table's kind above its row in the table
KERNELS = "CUPTI_ACTIVITY_KIND_KERNEL"


def graph_nodes_recorded(schema: ExportSchema) -> bool:
    """Whether the export can tell kernels replayed from CUDA graphs (graphNodeId set) from kernels
    launched one by one: its kernel table has the graphNodeId column (every schema perfctl has met:
    3.0.0 of nsys 2022.4, 3.7.2, 3.11.1), or it has no kernel table, and so no kernel of either kind."""
    return schema.has_column(KERNELS, "graphNodeId") or not schema.has(KERNELS)


class NotWindowable(Exception):
    """The export breaks an order windows rely on; analyze it as one window."""


def not_windowable_note(reason: NotWindowable) -> str:
    """The warning for an export analyzed as one window because windows refused it."""
    return (
        f"the export could not be cut into GPU-idle windows ({reason}): it was analyzed at once "
        "instead, slower and with memory growing with the export"
    )


def load_gpu_activities(
    schema: ExportSchema, fallbacks: list[str] | None = None, checks: RowChecks | None = None
) -> Activities:
    """Every activity of the export as one window."""
    return next(activity_windows(schema, None, fallbacks, checks))


def activity_windows(
    schema: ExportSchema,
    target: int | None = TARGET_ROWS,
    fallbacks: list[str] | None = None,
    checks: RowChecks | None = None,
) -> Generator[Activities, None, None]:
    """The activities in windows (see the module's doc); with `target` None, in one window. The
    tables' readers start at once, in background processes, before the first window is asked for.
    Each table read through SQLite instead of the page reader adds a sentence to `fallbacks`. Every
    chunk read is checked by `checks` (`checks.RowChecks`: bad rows left out and counted there)."""
    path = schema.path
    fallbacks = [] if fallbacks is None else fallbacks
    checks = RowChecks(path) if checks is None else checks
    keep_freed_memory()  # (before the readers fork: they keep it too)
    launch_ids, graph_ids = api_name_ids(path)
    readers = [
        (table, kind, _reader(schema, table, kind, fallbacks))
        for table, kind in ACTIVITY_TABLES
        if schema.has(table)
    ]
    runtime = None
    if schema.has(RUNTIME):
        where = RowFilter("nameId", launch_ids) if len(launch_ids) else None
        launches = BackgroundChunks(
            lambda notes: table_chunks(path, RUNTIME, API_COLUMNS, where, notes),
            list(API_COLUMNS),
            fallbacks,
        )
        checked = (checks.launches(RUNTIME, chunk, API_RULES, where, counted=True) for chunk in launches)
        runtime = _Cursor(launches, checked, graph_ids)
    return _windows(schema, target, readers, runtime, fallbacks, checks)


def _windows(
    schema: ExportSchema,
    target: int | None,
    readers: list[tuple[str, int, BackgroundChunks]],
    runtime: _Cursor | None,
    fallbacks: list[str],
    checks: RowChecks,
) -> Generator[Activities, None, None]:
    try:
        yield from _cut(schema, target, readers, runtime, fallbacks, checks)
    finally:
        for _, _, reader in readers:
            reader.close()
        if runtime is not None:
            runtime.reader.close()


def _cut(
    schema: ExportSchema,
    target: int | None,
    readers: list[tuple[str, int, BackgroundChunks]],
    runtime: _Cursor | None,
    fallbacks: list[str],
    checks: RowChecks,
) -> Iterator[Activities]:
    """Cut where the GPU idles between kernels (memory operations add no busy time: whatever they
    overlap, their figures are sums); a window takes the memory operations starting before its cut."""
    windowed = target is not None
    kernels: Iterator[Columns] = iter(())
    memory: list[_Until] = []
    for table, kind, reader in readers:
        rows_of = _table(reader, table, kind, windowed, checks)
        if kind == KERNEL:
            kernels = rows_of
        else:
            memory.append(_Until(rows_of))
    buffer: list[Columns] = []
    rows, reach, last_start, cuts = 0, -_NEVER, -_NEVER, 0
    misses: list[Columns] = []
    pumped = [*memory, *([runtime] if runtime is not None and windowed else [])]
    for batch in kernels:
        while True:  # cut the batch as often as windows fill up
            n = len(batch["start"])
            start = batch["start"]
            ends = np.maximum.accumulate(np.maximum(np.maximum(batch["end"], start), reach))
            cut = None
            if target is not None and rows + n >= target:
                cut = _first_cut(start, ends, reach, last_start, max(target - rows, 0 if rows else 1))
            if cut is None:
                buffer.append(batch)
                rows += n
                reach, last_start = int(ends[-1]), int(start[-1])
                for source in pumped:  # what the window will take, read while it is decoded
                    source.pump(last_start)
                break
            at, when = cut
            buffer.append({c: v[:at] for c, v in batch.items()})
            for operations in memory:
                buffer.extend(operations.take(when))
            yield _window(buffer, runtime, when, misses, graph_nodes_recorded(schema))
            cuts += 1
            if cuts % TRIM_EVERY == 0:  # now and then: what a window freed may lie scattered over the heap
                return_free_memory_to_os()
            reach, last_start = int(ends[at - 1]), int(start[at - 1])
            batch, rows = {c: v[at:] for c, v in batch.items()}, 0
    for operations in memory:
        buffer.extend(operations.take(None))
    if cuts == 0:  # one window: joined to the whole API table, launch APIs first (probe_launches)
        launch_rows = runtime.take(None) if runtime is not None else None
        yield _single_window(schema, buffer, launch_rows, fallbacks, checks)
        return
    yield _window(buffer, runtime, None, misses, graph_nodes_recorded(schema))
    if misses and runtime is not None and _found_elsewhere(schema, misses, fallbacks, checks):
        raise NotWindowable("an activity's launch lies outside its window")


def _first_cut(
    start: Int64s, ends: Int64s, reach: int, last_start: int, first: int
) -> tuple[int, int] | None:
    """(row, time) of the first cut before a row at or after `first`: a time after the previous row's
    start and every earlier activity's end, and at or before the row's start. `ends` is the running
    maximum of ends; `reach` and `last_start` describe the rows before the batch."""
    if first >= len(start):
        return None
    before_reach = np.concatenate([[reach], ends[:-1]])[first:]
    before_start = np.concatenate([[last_start], start[:-1]])[first:]
    when = np.maximum(before_reach, before_start + 1)
    ok = np.flatnonzero(when <= start[first:])
    if len(ok) == 0:
        return None
    return first + int(ok[0]), int(start[first + int(ok[0])])  # as late as allowed: the row's start


class _Until:
    """Rows of a table in start order, handed out window by window: those starting before a time.
    `pump` reads ahead from the table's reader, so that it never waits on the caller for long."""

    def __init__(self, chunks: Iterator[Columns]) -> None:
        self.chunks = chunks
        self.read: deque[Columns] = deque()  # read, not yet taken, in order
        self.done = False

    def _next(self) -> Columns | None:
        if self.read:
            return self.read.popleft()
        chunk = None if self.done else next(self.chunks, None)
        self.done = chunk is None
        return chunk

    def pump(self, until: int) -> None:
        """Read the chunks that start before `until` (a window will take them)."""
        while not self.done and (not self.read or int(self.read[-1]["start"][-1]) < until):
            chunk = next(self.chunks, None)
            if chunk is None:
                self.done = True
            else:
                self.read.append(chunk)

    def take(self, when: int | None) -> Iterator[Columns]:
        """The rows not yet taken that start before `when` (None: all the rest)."""
        while True:
            chunk = self._next()
            if chunk is None:
                return
            start = chunk["start"]
            before = start < when if when is not None else np.ones(len(start), dtype=bool)
            if bool(before.all()):
                yield chunk
                continue
            yield {c: v[before] for c, v in chunk.items()}
            self.read.appendleft({c: v[~before] for c, v in chunk.items()})
            return


class _Cursor(_Until):
    """The launch-API rows for window after window: those starting before the cut, and those of the
    window before that launched nothing there (a second and last chance). Graph launches are counted
    once a row is done with."""

    def __init__(self, reader: BackgroundChunks, chunks: Iterator[Columns], graph_ids: Int64s) -> None:
        super().__init__(chunks)  # (`reader`'s chunks, checked)
        self.reader, self.graph_ids = reader, graph_ids
        self.carried: Columns | None = None

    def join(self, join: LaunchJoin, when: int | None, graphs: GraphLaunches) -> None:
        """Probe the rows for a window cut at `when` (None: the last window)."""
        if self.carried is not None:
            probed, hits = join.probe(self.carried)
            graphs.count(probed, hits, self.graph_ids)
            self.carried = None
        carry: list[Columns] = []
        for batch in self.take(when):
            probed, hits = join.probe(batch)
            done = (hits > 0) | (when is None)
            graphs.count(probed, hits, self.graph_ids, done)
            if not done.all():
                carry.append({c: v[~done] for c, v in probed.items()})
        if carry:
            self.carried = {c: np.concatenate([k[c] for k in carry]) for c in carry[0]}


def _concat(buffer: list[Columns]) -> Columns:
    """A window's rows: its kernels, memcpys and memsets, each in table order (export order)."""
    return {c: np.concatenate([b[c] for b in buffer]) for c in _COLUMNS} if buffer else _empty()


def _window(
    buffer: list[Columns],
    runtime: _Cursor | None,
    until: int | None,
    misses: list[Columns],
    graph_nodes: bool,
) -> Activities:
    cols = _concat(buffer)
    buffer.clear()
    graphs = GraphLaunches()
    join = LaunchJoin(cols.pop("process"), cols.pop("corr"))
    if runtime is not None:
        runtime.join(join, until, graphs)
    missed = join.unmatched()
    if missed.any():
        misses.append({"process": join.process[missed], "corr": join.corr[missed]})
    act_rows, launch = join.result()
    ids, kind = cols.pop("id"), cols.pop("kind").astype(np.int8)
    return build_activities(cols, kind, ids, act_rows, launch, graphs, graph_nodes)


def _single_window(
    schema: ExportSchema,
    buffer: list[Columns],
    launch_rows: Iterator[Columns] | None,
    fallbacks: list[str],
    checks: RowChecks,
) -> Activities:
    cols = _concat(buffer)
    buffer.clear()
    graphs = GraphLaunches()
    process, corr = cols.pop("process"), cols.pop("corr")
    n = len(corr)
    if schema.has(RUNTIME):
        act_rows, launch = probe_launches(schema.path, process, corr, graphs, launch_rows, fallbacks, checks)
    else:
        act_rows = np.arange(n, dtype=np.int64)
        launch = {c: np.full(n, -1, np.int64) for c in ("thread", "start", "end")}
    del process, corr
    ids, kind = cols.pop("id"), cols.pop("kind").astype(np.int8)
    activities = build_activities(cols, kind, ids, act_rows, launch, graphs, graph_nodes_recorded(schema))
    return_free_memory_to_os()
    return activities


def _found_elsewhere(
    schema: ExportSchema, misses: list[Columns], fallbacks: list[str], checks: RowChecks
) -> bool:
    """Whether any sound API row of the whole table launched one of the activities no window
    matched."""
    process = np.concatenate([m["process"] for m in misses])
    corr = np.concatenate([m["corr"] for m in misses])
    join = LaunchJoin(process, corr)
    for batch in table_chunks(schema.path, RUNTIME, API_COLUMNS, fallbacks=fallbacks):
        join.probe(checks.launches(RUNTIME, batch, API_RULES, None, counted=False))
    return not bool(join.unmatched().all())


_COLUMNS = ("start", "end", "corr", "process", "short_id", "name_id", "bytes", "graph_node", "kind", "id")


def _empty() -> Columns:
    return {c: np.empty(0, np.int64) for c in _COLUMNS}


# The ids and counts of an activity row the analysis needs (checks.RowChecks refuses others).
_ACTIVITY_RULES = (correlation("corr"), any_integer("process", "globalPid"))
_KERNEL_RULES = (
    *_ACTIVITY_RULES,
    string_id("short_id", "shortName"),
    string_id("name_id", "demangledName"),
)
_GRAPH_NODE_RULE = graph_node("graph_node")
_MEMORY_RULES = (*_ACTIVITY_RULES, byte_count("bytes"))


def _reader(schema: ExportSchema, table: str, kind: int, fallbacks: list[str]) -> BackgroundChunks:
    """One activity table read in a background process (NULL reads -1)."""
    select = {"start": "start", "end": "end", "corr": "correlationId", "process": "globalPid"}
    if kind == KERNEL:
        select |= {"short_id": "shortName", "name_id": "demangledName"}
        if schema.has_column(table, "graphNodeId"):
            select["graph_node"] = "graphNodeId"
    else:
        select["bytes"] = "bytes"
    return BackgroundChunks(
        lambda notes: table_chunks(schema.path, table, select, fallbacks=notes), list(select), fallbacks
    )


def _table(
    chunks: BackgroundChunks, table: str, kind: int, check_order: bool, checks: RowChecks
) -> Iterator[Columns]:
    """One activity table's rows, chunk by chunk, as the columns of `_COLUMNS` (its bad rows left
    out: `checks`)."""
    row, last = 0, -_NEVER
    rules = _KERNEL_RULES if kind == KERNEL else _MEMORY_RULES
    if "graph_node" in chunks.names:
        rules = (*rules, _GRAPH_NODE_RULE)
    for chunk in chunks:
        chunk = checks.activities(table, chunk, rules)
        n = len(chunk["start"])
        if n == 0:
            continue
        start = chunk["start"]
        if check_order and (int(start[0]) < last or bool(np.any(start[1:] < start[:-1]))):
            raise NotWindowable(f"{table} is not in start order")
        last = int(start[-1])
        if kind == KERNEL:  # kernels move no bytes
            chunk["bytes"] = np.zeros(n, np.int64)
        else:
            chunk["bytes"] = np.maximum(chunk["bytes"], 0)  # NULL: none
            chunk["short_id"] = chunk["name_id"] = np.full(n, PSEUDO_NAME[kind], np.int64)
        if "graph_node" not in chunk:  # memory rows, and the kernels of an export without the column
            chunk["graph_node"] = np.full(n, NULL, np.int64)
        chunk["kind"] = np.full(n, kind, np.int64)
        chunk["id"] = (np.int64(kind) << _ID_BITS) + np.arange(row, row + n, dtype=np.int64)
        row += n
        yield chunk
