"""Read SQL query results as numpy columns at the speed of SQLite's own scan.

Python's sqlite3 module builds one Python object per value: about 6 s for the 4.9 M launch rows of a
2 M-kernel export, several times longer than SQLite takes to scan them. ADBC's SQLite driver fills
Arrow buffers in C instead, without the GIL, so a large table is read as rowid slices (bounded
memory), two at a time in threads, each on a read-only connection of its own. NULLs in integer
columns read as -1 (cheaper than coalescing them in SQL, row by row).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from perfctl.nsys_export.schema import readonly_uri

Columns = dict[str, npt.NDArray[np.int64]]
T = TypeVar("T")
THREADS = 2
BATCH_ROWS = 1 << 16
SLICE_ROWS = 250_000  # rows per query: what a large table costs in memory beyond its columns


def return_free_memory_to_os() -> None:
    """Hand the heap pages freed so far back to the OS (glibc's malloc_trim; a no-op elsewhere).

    Loading frees many column-sized temporaries, some from reader threads with malloc arenas of their
    own; glibc keeps such pages for reuse, and then the analysis that follows would stack its own
    arrays on top of dead ones in the peak RSS.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _fetch_arrow(path: Path, sql: str, batch_rows: int | None = None) -> Any:
    """A query's whole result as one Arrow table, through ADBC's SQLite driver.

    The driver manager's low-level API, not its DB-API layer: with the DB-API cursor two reader
    threads ran one after the other (measured: 2 threads 1.98 s, 1 thread 1.94 s on 2 M kernel rows),
    with this one they overlap (1.47 s).
    """
    import adbc_driver_manager as manager
    import adbc_driver_sqlite
    import pyarrow as pa

    database = adbc_driver_sqlite.connect(readonly_uri(path))
    try:
        connection = manager.AdbcConnection(database)
        try:
            statement = manager.AdbcStatement(connection)
            try:
                if batch_rows:
                    statement.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
                statement.set_sql_query(sql)
                stream, _ = statement.execute_query()
                return pa.RecordBatchReader._import_from_c(stream.address).read_all()
            finally:
                statement.close()
        finally:
            connection.close()
    finally:
        database.close()


def query_columns(path: Path, sql: str) -> Columns:
    """All rows of an all-integer query as int64 numpy columns; NULL reads as -1."""
    table = _fetch_arrow(path, sql, BATCH_ROWS)
    out: Columns = {}
    for name in table.column_names:
        column = table.column(name)
        if column.null_count:  # (a column of NULLs only has Arrow type null: cast it first)
            column = column.cast("int64").fill_null(-1)
        out[name] = column.to_numpy().astype(np.int64, copy=False) if len(column) else np.empty(0, np.int64)
    return out


def rowid_slices(path: Path, table: str, rows: int = SLICE_ROWS) -> list[tuple[int, int]]:
    """[lo, hi) rowid ranges of at most `rows` rowids covering `table`."""
    conn = sqlite3.connect(readonly_uri(path), uri=True)
    try:
        # two queries: SQLite answers a lone min() or max() of rowid from the b-tree's edge, but
        # scans the whole table for both in one SELECT
        lo = conn.execute(f"SELECT min(rowid) FROM {table}").fetchone()[0]
        hi = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
    finally:
        conn.close()
    if lo is None:
        return []
    return [(a, min(a + rows, hi + 1)) for a in range(lo, hi + 1, rows)]


def parallel_map(func: Callable[[tuple[int, int]], T], slices: list[tuple[int, int]]) -> list[T]:
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(func, slices))


def rowid_capacity(path: Path, table: str) -> int:
    """An upper bound on the rows of `table` (its rowid span), without counting them."""
    slices = rowid_slices(path, table)
    return slices[-1][1] - slices[0][0] if slices else 0


def read_table_into(
    path: Path, table: str, select: str, out: dict[str, npt.NDArray[np.signedinteger[Any]]], offset: int
) -> int:
    """`SELECT {select} FROM {table}` (all-integer columns named like `out`'s keys), read as rowid
    slices in parallel straight into `out` from row `offset`; returns the number of rows written.

    A slice of rowids [lo, hi) holds at most hi - lo rows, so each slice has its own region of the
    output and the table is held once, plus one slice per thread while it is read.
    """
    slices = rowid_slices(path, table)
    if not slices:
        return 0
    base = slices[0][0]

    def read_slice(bounds: tuple[int, int]) -> tuple[int, int]:
        first = offset + bounds[0] - base
        got = query_columns(
            path, f"SELECT {select} FROM {table} WHERE rowid >= {bounds[0]} AND rowid < {bounds[1]}"
        )
        rows = len(next(iter(got.values())))
        for name, column in got.items():
            out[name][first : first + rows] = column
        return first, first + rows

    filled = parallel_map(read_slice, slices)
    end = filled[-1][1]
    holes = [(b_end, a_next) for (_, b_end), (a_next, _) in itertools.pairwise(filled) if b_end != a_next]
    if holes:  # rowid gaps left holes: move every slice down to close them
        at = filled[0][1]
        for first, last in filled[1:]:
            for column in out.values():
                column[at : at + last - first] = column[first:last]
            at += last - first
        end = at
    return end - offset


def read_frame(path: Path, sql: str) -> pd.DataFrame:
    """A query with mixed column types (NVTX texts, say) as a DataFrame, read through Arrow."""
    frame: pd.DataFrame = _fetch_arrow(path, sql).to_pandas()
    return frame
