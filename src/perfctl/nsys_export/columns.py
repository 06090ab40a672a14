"""Read an export's big integer tables as numpy columns, chunk by chunk, at file-reading speed.

Python's sqlite3 module builds one Python object per value (about 6 s for the 4.9 M launch rows of a
2 M-kernel export), and even SQLite's own scan decodes one value at a time. The kernel, API and
memory tables of an nsys export hold only integers, so `perfctl.nsys_export.pages` decodes them
straight from the file's pages, vectorized, in THREADS threads ahead of the consumer, and yields
them in rowid order in chunks: memory is bounded by a few chunks, not by the table. A table that
reader leaves to SQLite (see `pages.Unreadable`) is read through SQLite from the first row not yet
yielded, with the same result. NULL integers read as -1.
"""

from __future__ import annotations

import contextlib
import ctypes
import sqlite3
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from perfctl.nsys_export import pages

if TYPE_CHECKING:
    import pandas as pd

Columns = dict[str, npt.NDArray[np.int64]]
THREADS = 2
SQLITE_ROWS = 1 << 16  # rows per fetch when SQLite reads a table


def return_free_memory_to_os() -> None:
    """Hand the heap pages freed so far back to the OS (glibc's malloc_trim; a no-op elsewhere).

    Loading frees many column-sized temporaries, some from reader threads with malloc arenas of their
    own; glibc keeps such pages for reuse, and then the analysis that follows would stack its own
    arrays on top of dead ones in the peak RSS.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _uri(path: Path) -> str:
    return f"file:{path.resolve().as_posix()}?mode=ro"


def rowid_capacity(path: Path, table: str) -> int:
    """An upper bound on the rows of `table` (its rowid span), without counting them."""
    conn = sqlite3.connect(_uri(path), uri=True)
    try:
        # two queries: SQLite answers a lone min() or max() of rowid from the b-tree's edge, but
        # scans the whole table for both in one SELECT
        lo = conn.execute(f"SELECT min(rowid) FROM {table}").fetchone()[0]
        hi = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
    finally:
        conn.close()
    return 0 if lo is None else int(hi) - int(lo) + 1


def table_chunks(
    path: Path, table: str, columns: dict[str, str], where: pages.RowFilter | None = None
) -> Iterator[Columns]:
    """Every row of `table` (that `where` keeps), in rowid order, as chunks {name: int64 column} for
    `columns` (name -> column of the table; `where` names a table column). Chunks are decoded ahead
    in threads while the caller works on earlier ones."""
    conn = sqlite3.connect(_uri(path), uri=True)
    try:
        wanted = [*columns.values(), *([where.column] if where else [])]
        layout = pages.table_layout(conn, table, list(dict.fromkeys(wanted)))
    except pages.Unreadable:
        layout = None
    finally:
        conn.close()
    last_rowid: int | None = None
    if layout is not None:
        try:
            for chunk, rowid in _decoded(path, layout, where):
                last_rowid = rowid if rowid is not None else last_rowid
                yield {name: chunk[column] for name, column in columns.items()}
            return
        except pages.Unreadable:
            pass  # SQLite reads the rest
    for chunk in _sqlite_chunks(
        path, table, {**columns, "(where)": where.column} if where else columns, last_rowid
    ):
        if where is not None:
            keep = where.keep(chunk.pop("(where)"))
            chunk = {name: column[keep] for name, column in chunk.items()}
        yield chunk


def _decoded(
    path: Path, layout: pages.TableLayout, where: pages.RowFilter | None
) -> Iterator[tuple[Columns, int | None]]:
    file = pages.open_file(path)
    groups = pages.leaf_groups(file, layout)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        ahead: deque[Future[tuple[Columns, int | None]]] = deque()
        try:
            for group in groups:
                ahead.append(pool.submit(pages.decode_leaves, file, group, layout, where))
                if len(ahead) > 2 * THREADS:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
        finally:
            for future in ahead:
                future.cancel()


def _sqlite_chunks(path: Path, table: str, columns: dict[str, str], after: int | None) -> Iterator[Columns]:
    names = list(columns)
    select = ", ".join(f'"{columns[n]}"' for n in names)
    where = "" if after is None else f" WHERE rowid > {int(after)}"
    conn = sqlite3.connect(_uri(path), uri=True)
    try:
        cursor = conn.execute(f'SELECT {select} FROM "{table}"{where} ORDER BY rowid')
        while rows := cursor.fetchmany(SQLITE_ROWS):
            yield {n: _integer_column([r[i] for r in rows]) for i, n in enumerate(names)}
    finally:
        conn.close()


def _integer_column(values: list[Any]) -> npt.NDArray[np.int64]:
    try:
        return np.array([-1 if v is None else int(v) for v in values], dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise pages.Damaged("a text or blob value in an integer column") from None


def read_frame(path: Path, sql: str) -> pd.DataFrame:
    """A small query with mixed column types (NVTX texts, say) as a DataFrame."""
    import pandas as pd

    conn = sqlite3.connect(_uri(path), uri=True)
    try:
        cursor = conn.execute(sql)
        rows = cursor.fetchall()
        return pd.DataFrame(rows, columns=[d[0] for d in cursor.description])
    finally:
        conn.close()
