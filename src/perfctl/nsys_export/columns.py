"""Read an export's big integer tables as numpy columns, chunk by chunk, at file-reading speed.

Python's sqlite3 module builds one Python object per value (about 6 s for the 4.9 M launch rows of a
2 M-kernel export), and even SQLite's own scan decodes one value at a time. The kernel, API and
memory tables of an nsys export hold only integers, so `perfctl.nsys_export.pages` decodes them
straight from the file's pages, vectorized, and yields them in rowid order in chunks: memory is
bounded by a chunk, not by the table. A table that reader leaves to SQLite (see `pages.Unreadable`)
is read through SQLite from the first row not yet yielded, with the same result, and a sentence
saying so (which table, why, from which row) goes to the caller's `fallbacks` list: the analysis
lists it among its warnings. NULL integers read as -1, values that are no integer (text, blob,
real) as `pages.NOT_AN_INTEGER`: what they mean is for `checks` to say.

`BackgroundChunks` reads a table in a forked process that runs ahead of the caller, on the other core.
(Threads would not do: numpy holds the GIL through the many small gathers a chunk takes, and two
decoding threads ran no faster than one.)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import sqlite3
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from perfctl.nsys_export import pages

if TYPE_CHECKING:
    import pandas as pd

from perfctl.nsys_export.schema import readonly_uri

Columns = dict[str, npt.NDArray[np.int64]]
SQLITE_ROWS = 1 << 16  # rows per fetch when SQLite reads a table


def keep_freed_memory() -> None:
    """Let glibc's malloc keep freed memory for reuse instead of handing it back to the OS at once:
    the analysis frees and allocates arrays of the same sizes window after window, and on a virtual
    machine every page handed back and touched again costs a page fault of several microseconds
    (130,000 of them took a second of system time on a 2 M-kernel export). Big arrays come from the
    heap too (an mmap'd block is unmapped, and faulted in again, each time). A no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: trim the heap top only past 1 GiB free
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: mmap only blocks over 1 GiB


def return_free_memory_to_os() -> None:
    """Hand the heap pages freed so far back to the OS (glibc's malloc_trim; a no-op elsewhere).

    Loading frees many column-sized temporaries; glibc keeps such pages for reuse (see
    `keep_freed_memory`), and what lies scattered over the heap would stay in the peak RSS.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def table_chunks(
    path: Path,
    table: str,
    columns: dict[str, str],
    where: pages.RowFilter | None = None,
    fallbacks: list[str] | None = None,
) -> Iterator[Columns]:
    """Every row of `table` (that `where` keeps), in rowid order, as chunks {name: int64 column} for
    `columns` (name -> column of the table; `where` names a table column). When the page reader
    leaves the table, or its rows from some row on, to SQLite, a sentence saying so is appended to
    `fallbacks`."""
    refused: pages.Unreadable | None = None  # why the page reader left the table to SQLite
    conn = sqlite3.connect(readonly_uri(path), uri=True)
    try:
        wanted = [*columns.values(), *([where.column] if where else [])]
        layout = pages.table_layout(conn, table, list(dict.fromkeys(wanted)))
    except pages.Unreadable as exc:
        layout, refused = None, exc
    finally:
        conn.close()
    last_rowid: int | None = None
    if layout is not None:
        try:
            for chunk, rowid in _decoded(path, layout, where):
                last_rowid = rowid if rowid is not None else last_rowid
                yield {name: chunk[column] for name, column in columns.items()}
            return
        except pages.Unreadable as exc:
            refused = exc  # SQLite reads the rest
    if fallbacks is not None:
        fallbacks.append(_fallback_note(table, str(refused), last_rowid))
    for chunk in _sqlite_chunks(
        path, table, {**columns, "(where)": where.column} if where else columns, last_rowid
    ):
        if where is not None:
            keep = where.keep(chunk.pop("(where)"))
            chunk = {name: column[keep] for name, column in chunk.items()}
        yield chunk


def _fallback_note(table: str, reason: str, last_rowid: int | None) -> str:
    """The warning for a table (or its rows after `last_rowid`) read through SQLite."""
    if last_rowid is None:
        return f"{table}: the page reader cannot read it ({reason}); read through SQLite instead, slower"
    return (
        f"{table}: the page reader cannot read it past rowid {last_rowid} ({reason}); "
        "the rest read through SQLite instead, slower"
    )


def _decoded(
    path: Path, layout: pages.TableLayout, where: pages.RowFilter | None
) -> Iterator[tuple[Columns, int | None]]:
    file = pages.open_file(path)
    for group in pages.leaf_groups(file, layout):
        yield pages.decode_leaves(file, group, layout, where)


_END, _ERROR, _NOTE = -1, -2, -3  # messages besides a chunk's row count


RING = 32  # chunks a reader may run ahead of its consumer
SLOT = 1 << 25  # bytes of the spool file per chunk (a chunk of 256 pages holds far less)


class BackgroundChunks:
    """The chunks of `chunks(notes)` (int64 columns `names`), produced by a process forked at once,
    which runs up to RING chunks ahead of the caller: it writes each chunk's columns into one of RING
    slots of an unlinked temporary file (the page cache holds them, not either process's memory, and
    the file stays small) and tells the caller through a pipe; the caller tells it through another
    which chunks it has read, so slots are reused. What `chunks` appends to `notes` (a fallback to
    SQLite, say) comes through the pipe too, ahead of the next chunk, and is appended to `fallbacks`
    as the chunks are read. An exception in the process is raised here. Without fork, the chunks are
    read here, when asked for."""

    def __init__(
        self, chunks: Callable[[list[str]], Iterator[Columns]], names: list[str], fallbacks: list[str]
    ) -> None:
        self.names = names
        self.fallbacks = fallbacks
        self.local: Iterator[Columns] | None = None
        self.pid = 0
        if not hasattr(os, "fork"):
            self.local = chunks(fallbacks)
            return
        self.spool = tempfile.TemporaryFile(prefix="perfctl-chunks-")  # noqa: SIM115 - closed by close()
        read_end, write_end = os.pipe()
        ack_read, ack_write = os.pipe()
        self.owner = os.getpid()  # (a copy of this object in another forked reader must not close it)
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child; its coverage is its output
            os.close(read_end)
            os.close(ack_write)
            _produce(chunks, names, self.spool.fileno(), write_end, ack_read)
        os.close(write_end)
        os.close(ack_read)
        self.messages = os.fdopen(read_end, "rb")
        self.acks = ack_write
        self.index = 0

    def __iter__(self) -> Iterator[Columns]:
        return self

    def __next__(self) -> Columns:
        if self.local is not None:
            return next(self.local)
        if self.pid == 0:
            raise StopIteration
        try:
            (rows,) = struct.unpack("<q", _exactly(self.messages, 8))
            while rows == _NOTE:
                (size,) = struct.unpack("<q", _exactly(self.messages, 8))
                self.fallbacks.append(_exactly(self.messages, size).decode())
                (rows,) = struct.unpack("<q", _exactly(self.messages, 8))
            if rows == _ERROR:
                (size,) = struct.unpack("<q", _exactly(self.messages, 8))
                error = pickle.loads(_exactly(self.messages, size))
        except BaseException:
            self.close()
            raise
        if rows == _END:
            self.close()
            raise StopIteration
        if rows == _ERROR:
            self.close()
            raise error
        data = np.empty((len(self.names), rows), dtype=np.int64)
        offset = (self.index % RING) * SLOT
        if os.preadv(self.spool.fileno(), [data], offset) != data.nbytes:  # type: ignore[list-item]
            self.close()
            raise OSError("short read of a chunk from the background reader")
        self.index += 1
        with contextlib.suppress(BrokenPipeError):  # (none once the reader has written its last)
            os.write(self.acks, b"+")  # its slot is free again
        return dict(zip(self.names, data, strict=True))

    def close(self) -> None:
        """Stop the process if it still runs, and let go of the pipes and the file."""
        if self.pid == 0 or os.getpid() != self.owner:
            return
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, signal.SIGKILL)  # (a no-op once it has exited; not yet reaped)
            os.waitpid(self.pid, 0)
        self.pid = 0
        self.messages.close()
        os.close(self.acks)
        self.spool.close()

    def __del__(self) -> None:
        self.close()


def _produce(
    chunks: Callable[[list[str]], Iterator[Columns]], names: list[str], spool: int, pipe: int, acks: int
) -> None:
    """The background process: write every chunk (waiting while RING chunks are unread), each after
    the notes added since the one before, then the end (or the exception), and exit."""
    code = 0
    notes: list[str] = []
    try:
        with os.fdopen(pipe, "wb", buffering=0) as messages:
            try:
                read = 0
                for index, chunk in enumerate(chunks(notes)):
                    _send_notes(messages, notes)
                    data = np.stack([np.asarray(chunk[n], dtype=np.int64) for n in names])
                    if data.nbytes > SLOT:
                        raise ValueError(f"a chunk of {data.nbytes} bytes does not fit a spool slot")
                    while index - read >= RING:  # wait for the caller to free a slot
                        got = os.read(acks, RING)
                        if not got:
                            raise EOFError("the caller is gone")
                        read += len(got)
                    os.pwrite(spool, data.tobytes(), (index % RING) * SLOT)
                    messages.write(struct.pack("<q", data.shape[1]))
                _send_notes(messages, notes)
                messages.write(struct.pack("<q", _END))
            except Exception as exc:  # handed to the caller, who raises it
                text = pickle.dumps(exc)
                messages.write(struct.pack("<qq", _ERROR, len(text)) + text)
    except BaseException:
        code = 1
    finally:
        os._exit(code)  # no interpreter teardown, no atexit handlers of the parent's


def _send_notes(messages: Any, notes: list[str]) -> None:
    """Hand the notes not yet handed over to the caller (they leave the list)."""
    for note in notes:
        text = note.encode()
        messages.write(struct.pack("<qq", _NOTE, len(text)) + text)
    notes.clear()


def _exactly(stream: Any, size: int) -> bytes:
    data: bytes = stream.read(size)
    if len(data) != size:
        raise OSError("the background reader ended early")
    return data


def _sqlite_chunks(path: Path, table: str, columns: dict[str, str], after: int | None) -> Iterator[Columns]:
    names = list(columns)
    select = ", ".join(f'"{columns[n]}"' for n in names)
    where = "" if after is None else f" WHERE rowid > {int(after)}"
    conn = sqlite3.connect(readonly_uri(path), uri=True)
    try:
        cursor = conn.execute(f'SELECT {select} FROM "{table}"{where} ORDER BY rowid')
        while rows := cursor.fetchmany(SQLITE_ROWS):
            yield {n: _integer_column([r[i] for r in rows]) for i, n in enumerate(names)}
    finally:
        conn.close()


def _integer_column(values: list[Any]) -> npt.NDArray[np.int64]:
    """SQLite's values of an integer column: NULL reads as pages.NULL, and a value that is no integer
    (text, blob, real: SQLite stores what it is given) as pages.NOT_AN_INTEGER, for the checks to
    judge (`checks`), never cut to an integer."""
    null, odd = pages.NULL, int(pages.NOT_AN_INTEGER)
    return np.array([v if type(v) is int else (null if v is None else odd) for v in values], dtype=np.int64)


def read_frame(path: Path, sql: str) -> pd.DataFrame:
    """A small query with mixed column types (NVTX texts, say) as a DataFrame."""
    import pandas as pd

    conn = sqlite3.connect(readonly_uri(path), uri=True)
    try:
        cursor = conn.execute(sql)
        rows = cursor.fetchall()
        return pd.DataFrame(rows, columns=[d[0] for d in cursor.description])
    finally:
        conn.close()
