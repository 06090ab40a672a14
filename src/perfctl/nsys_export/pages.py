"""Integer columns of an SQLite table read straight from the file's b-tree pages, vectorized in numpy.

SQLite's own scan costs about 100 ns per row and column (its virtual machine decodes one value at a
time), and every Python binding adds more per value. An nsys export's big tables (kernels, API calls,
memory operations) hold only integers, which the file format stores as plain big-endian numbers in
records of one-byte type codes; numpy decodes a whole run of leaf pages at once, close to the speed
of reading the pages. The table b-tree is walked from its root page (in rowid order, as
`SELECT ... FROM table` returns rows), leaf pages are read in chunks of consecutive pages, and each
chunk's rows are yielded as int64 columns, so memory stays bounded by the chunk, not the table.

What this reader does not handle it refuses with `Unreadable` (the caller then asks SQLite): a
database in WAL mode with a write-ahead log beside it, records that spill to overflow pages, a
non-integer value in a wanted column, a table without rowid. Structure that contradicts the format
(a page of the wrong kind, a pointer off its page, a cycle) raises `Damaged`.
Format reference: https://www.sqlite.org/fileformat2.html (sections 1.3, 1.6, 2.1).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from perfctl.nsys_export.schema import quote_identifier

Int64s = npt.NDArray[np.int64]
Bytes = npt.NDArray[np.uint8]

CHUNK_PAGES = 256  # leaf pages decoded at once: 1 MiB of a 4 KiB-page file, ~10-25 k rows (cache-sized)
NULL = -1  # what a NULL integer reads as (nsys ids and times are never negative)
# what a value that is no integer (text, blob, real) reads as where SQLite reads the table
# (`columns.table_chunks`): no nsys id or time is this, so the checks (`checks`) see it for what it is
NOT_AN_INTEGER = np.int64(np.iinfo(np.int64).min)
_TABLE_INTERIOR, _TABLE_LEAF = 5, 13
# bytes of the value of serial types 0..11 (0: NULL, 1-6: integers, 7: float, 8/9: constants 0/1)
_PAD = 64
_SIZE = np.array([0, 1, 2, 3, 4, 6, 8, 8, 0, 0, 0, 0], dtype=np.int64)
# lookup tables over one-byte serial types (0..255; 12+ are blobs and texts of (t - 12) // 2 bytes)
_SIZE_OF = np.concatenate([_SIZE, (np.arange(12, 256) - 12) // 2]).astype(np.int64)
_SHIFT = np.where(_SIZE_OF > 0, 64 - 8 * np.minimum(_SIZE_OF, 8), 0).astype(np.int64)
_CONSTANT = np.zeros(256, dtype=np.int64)
_CONSTANT[[0, 8, 9]] = [-1, 0, 1]


class Unreadable(Exception):
    """The table uses a feature this reader leaves to SQLite."""


class Damaged(Exception):
    """The file contradicts the SQLite format."""


@dataclass(frozen=True)
class _File:
    path: Path
    page_size: int
    usable: int  # page size less the reserved bytes at each page's end
    pages: int


def open_file(path: Path) -> _File:
    with path.open("rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise Damaged("not an SQLite 3 file header")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise Damaged(f"page size {page_size}")
    if header[18] == 2 or header[19] == 2:  # WAL mode: committed pages may still sit in the log
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise Unreadable("the database has a write-ahead log")
    pages = os.path.getsize(path) // page_size
    return _File(path, page_size, page_size - header[20], pages)


def _u16(buf: Bytes, pos: Int64s) -> Int64s:
    return (buf[pos].astype(np.int64) << 8) | buf[pos + 1]


def _u32(buf: Bytes, pos: Int64s) -> Int64s:
    return (_u16(buf, pos) << 16) | _u16(buf, pos + 2)


def _varint(buf: Bytes, pos: Int64s) -> tuple[Int64s, Int64s]:
    """(value, length in bytes) of the SQLite varint at each position. `buf` must extend 9 bytes past
    every position (callers pad it)."""
    byte = buf[pos]
    if len(byte) == 0 or int(byte.max()) < 0x80:  # one byte each: the common case
        return byte.astype(np.int64), np.ones(len(pos), dtype=np.int64)
    value = (byte & 0x7F).astype(np.int64)
    length = np.ones(len(pos), dtype=np.int64)
    going = np.flatnonzero(byte >= 0x80)
    for k in range(1, 9):
        if len(going) == 0:
            break
        byte = buf[pos[going] + k]
        if k < 8:
            value[going] = (value[going] << 7) | (byte & 0x7F)
        else:  # the ninth byte contributes all eight bits
            value[going] = (value[going] << 8) | byte
        length[going] += 1
        going = going[byte >= 0x80] if k < 8 else going[:0]
    return value, length


def _varint_length(buf: Bytes, pos: Int64s) -> Int64s:
    """Bytes of the varint at each position (1-9), without its value."""
    going = buf[pos] >= 0x80
    length = 1 + going.astype(np.int64)
    for k in range(1, 8):
        if not bool(going.any()):
            break
        going &= buf[pos + k] >= 0x80
        length += going
    return length


def read_pages(f: _File, numbers: list[int]) -> Bytes:
    """The given pages, concatenated, plus zero padding (varints and values are read a few bytes past
    a position before it is checked); consecutive page numbers are read with one system call."""
    ps = f.page_size
    out = np.zeros(len(numbers) * ps + _PAD, dtype=np.uint8)
    view = memoryview(out)  # type: ignore[arg-type]  # (numpy arrays are buffers)
    pages = np.asarray(numbers, dtype=np.int64)
    run_first = np.flatnonzero(np.r_[True, pages[1:] != pages[:-1] + 1]).tolist()
    with f.path.open("rb", buffering=0) as fh:
        for i, j in zip(run_first, [*run_first[1:], len(numbers)], strict=True):
            got = os.preadv(fh.fileno(), [view[i * ps : j * ps]], (numbers[i] - 1) * ps)
            if got != (j - i) * ps:
                raise Damaged(f"page {numbers[i]} lies past the end of the file")
    return out


def _header_offset(number: int) -> int:
    return 100 if number == 1 else 0  # page 1 starts with the file header


def _headers(numbers: list[int], page_size: int) -> tuple[Int64s, Int64s]:
    """Where each page of a concatenation starts, and where its b-tree header starts."""
    bases = np.arange(len(numbers), dtype=np.int64) * page_size
    return bases, bases + 100 * (np.asarray(numbers, dtype=np.int64) == 1)


def leaf_pages(f: _File, root: int) -> list[int]:
    """The table's leaf pages in key (rowid) order, by walking its interior pages level by level."""
    level, seen = [root], {root}
    while True:
        # every leaf sits at the same depth: the first page of a level tells a leaf level (checked
        # page by page when the leaves are decoded)
        first = read_pages(f, level[:1])[_header_offset(level[0])]
        if first == _TABLE_LEAF:
            return level
        if first in (2, 10):
            raise Unreadable("a table without rowid")
        buf = read_pages(f, level)
        bases, hdr = _headers(level, f.page_size)
        if not bool(np.all(buf[hdr] == _TABLE_INTERIOR)):
            raise Damaged("a table b-tree level mixes page kinds")
        cells = _u16(buf, hdr + 3)
        if np.any(hdr + 12 + 2 * cells > bases + f.usable):
            raise Damaged("cell pointer array past its page")
        page_of = np.repeat(np.arange(len(level)), cells)
        index = np.arange(len(page_of)) - np.repeat(np.cumsum(cells) - cells, cells)
        offsets = _u16(buf, hdr[page_of] + 12 + 2 * index)
        if np.any(offsets + 4 > f.usable):
            raise Damaged("cell past its page")
        left = _u32(buf, bases[page_of] + offsets)
        right = _u32(buf, hdr + 8)
        # each page's children: its cells' left pointers in order, then its right-most pointer
        children = np.concatenate([left, right])
        order = np.argsort(np.concatenate([page_of * 2, np.arange(len(level)) * 2 + 1]), kind="stable")
        nxt = children[order].tolist()
        before = len(seen)
        seen.update(nxt)
        if min(nxt, default=0) < 1 or max(nxt) > f.pages or len(seen) != before + len(nxt):
            raise Damaged("a child page pointer out of the file, or one page reached twice")
        level = nxt


@dataclass(frozen=True)
class TableLayout:
    root: int
    positions: dict[str, int]  # wanted column -> its index in the record
    rowid_alias: frozenset[str]  # wanted columns that are the INTEGER PRIMARY KEY (stored as the rowid)
    columns: int  # columns of the table


def table_layout(conn: sqlite3.Connection, table: str, wanted: list[str]) -> TableLayout:
    row = conn.execute("SELECT rootpage, sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    found = row.fetchone()
    if found is None:
        raise Unreadable(f"no table {table}")
    info = conn.execute(f'PRAGMA table_xinfo("{table}")').fetchall()
    # (cid, name, type, notnull, dflt_value, pk, hidden)
    if any(r[6] for r in info):
        raise Unreadable("generated columns")
    by_name = {str(r[1]): r for r in info}
    missing = [c for c in wanted if c not in by_name]
    if missing:
        raise Unreadable(f"no column {missing[0]} in {table}")
    pks = [r for r in info if r[5]]
    alias = {str(pks[0][1])} if len(pks) == 1 and str(pks[0][2]).upper() == "INTEGER" else set()
    return TableLayout(
        int(found[0]),
        {c: int(by_name[c][0]) for c in wanted},
        frozenset(c for c in wanted if c in alias),
        len(info),
    )


def leaf_groups(f: _File, layout: TableLayout) -> list[list[int]]:
    """The table's leaf pages in rowid order, in groups of CHUNK_PAGES to decode at once."""
    if not 1 <= layout.root <= f.pages:
        raise Damaged("table root page out of the file")
    leaves = leaf_pages(f, layout.root)
    return [leaves[lo : lo + CHUNK_PAGES] for lo in range(0, len(leaves), CHUNK_PAGES)]


def read_chunks(path: Path, layout: TableLayout) -> Iterator[dict[str, Int64s]]:
    """The wanted columns of every row in rowid order, chunk by chunk, in this thread (the threaded
    reader with SQLite behind it is perfctl.nsys_export.columns.table_chunks)."""
    f = open_file(path)
    for group in leaf_groups(f, layout):
        yield decode_leaves(f, group, layout)[0]


@dataclass(frozen=True)
class RowFilter:
    """Keep the rows whose `column` is (or, with `inside` False, is not) one of `values`. A value
    that is no integer (NOT_AN_INTEGER) is kept either way: the checks of what was read must see it."""

    column: str
    values: Int64s
    inside: bool = True

    def keep(self, column: Int64s) -> npt.NDArray[np.bool_]:
        found: npt.NDArray[np.bool_] = np.isin(column, self.values)
        return (found | (column == NOT_AN_INTEGER)) if self.inside else ~found

    def sql(self) -> str:
        """The same condition in SQL."""
        c = quote_identifier(self.column)
        listed = ", ".join(str(int(v)) for v in self.values)
        if not self.inside:
            return f"({c} IS NULL OR {c} NOT IN ({listed}))" if listed else "1"
        odd = f"typeof({c}) NOT IN ('integer', 'null') OR {c} = {int(NOT_AN_INTEGER)}"
        return f"({c} IN ({listed}) OR {odd})" if listed else f"({odd})"


def decode_leaves(
    f: _File, numbers: list[int], layout: TableLayout, where: RowFilter | None = None
) -> tuple[dict[str, Int64s], int | None]:
    """The wanted columns of the rows on the given leaf pages (those `where` keeps), and the rowid of
    the last row on them (None if the pages hold no row)."""
    try:
        return _decode(f, numbers, layout, where)
    except (IndexError, ValueError, OverflowError) as exc:  # (checks above should come first)
        raise Damaged(f"undecodable leaf pages ({exc})") from None


def _decode(
    f: _File, numbers: list[int], layout: TableLayout, where: RowFilter | None
) -> tuple[dict[str, Int64s], int | None]:
    buf = read_pages(f, numbers)
    usable = f.usable
    bases, hdr = _headers(numbers, f.page_size)
    if not bool(np.all(buf[hdr] == _TABLE_LEAF)):
        raise Damaged("a leaf level page is not a table leaf")
    cells = _u16(buf, hdr + 3)
    if np.any(hdr + 8 + 2 * cells > bases + usable):
        raise Damaged("cell pointer array past its page")
    page_of = np.repeat(np.arange(len(numbers)), cells)
    index = np.arange(len(page_of)) - np.repeat(np.cumsum(cells) - cells, cells)
    cell = bases[page_of] + _u16(buf, hdr[page_of] + 8 + 2 * index)
    page_end = bases[page_of] + usable
    if np.any(cell + 2 > page_end):
        raise Damaged("cell past its page")
    payload, n1 = _varint(buf, cell)
    if np.any((payload < 0) | (payload > usable - 35)):  # the record continues on overflow pages
        raise Unreadable("records on overflow pages")
    rowid_at = cell + n1
    record = rowid_at + (_varint_length(buf, rowid_at) if not layout.rowid_alias else 0)
    rowid = None
    if layout.rowid_alias:
        rowid, n2 = _varint(buf, rowid_at)
        record = rowid_at + n2
    record_end = record + payload
    if np.any(record_end > page_end):
        raise Damaged("record past its page")
    header_size, n3 = _varint(buf, record)
    if np.any((header_size < n3) | (record + header_size > record_end)):
        raise Damaged("record header past its record")
    columns = max(layout.positions.values(), default=-1) + 1
    if bool(np.all(n3 == 1)) and columns + 2 <= _PAD:
        walked = _walk_one_byte_types(buf, record, header_size, columns)
    else:
        walked = None
    if walked is None:
        walked = _walk_varint_types(buf, record + n3, record + header_size, columns)
    serials, offsets = walked
    if offsets[-1] is not None and np.any(offsets[-1] > record_end):
        raise Damaged("record values past its record")
    last_at = rowid_at[-1:]
    keep: npt.NDArray[np.bool_] | slice = slice(None)
    out: dict[str, Int64s] = {}
    if where is not None:  # the filter column first, then the others of the rows kept only
        out[where.column] = _column(buf, layout, where.column, serials, offsets, rowid, slice(None))
        keep = where.keep(out[where.column])
        out[where.column] = out[where.column][keep]
    for name in layout.positions:
        if name not in out:
            out[name] = _column(buf, layout, name, serials, offsets, rowid, keep)
    last = None if len(cell) == 0 else int(_varint(buf, last_at)[0][0])
    return out, last


def _column(
    buf: Bytes,
    layout: TableLayout,
    name: str,
    serials: list[Int64s],
    offsets: list[Int64s],
    rowid: Int64s | None,
    rows: npt.NDArray[np.bool_] | slice,
) -> Int64s:
    if name in layout.rowid_alias:
        assert rowid is not None
        return rowid[rows]
    position = layout.positions[name]
    return _integers(buf, serials[position][rows], offsets[position][rows], name)


Walk = tuple[list[Int64s], list[Int64s]]  # per column: serial types, value offsets (+ end)


def _walk_one_byte_types(buf: Bytes, record: Int64s, header_size: Int64s, columns: int) -> Walk | None:
    """Serial types and value offsets of columns 0..columns-1 when every type is one byte (so column
    c's type is byte c + 1 of the record): the integer tables of an nsys export. None otherwise."""
    serials: list[Int64s] = []
    offsets: list[Int64s] = []
    at = record + header_size
    types_at = record + 1
    shortest = int(header_size.min(initial=0))
    for c in range(columns):
        serial = buf[types_at + c].astype(np.int64)
        if c + 1 >= shortest:  # a record shorter than the table: NULL past its end
            serial[header_size <= c + 1] = 0
        if int(serial.max(initial=0)) >= 0x80:
            return None
        serials.append(serial)
        offsets.append(at)
        at = at + _SIZE_OF.take(serial)
    offsets.append(at)
    return serials, offsets


def _walk_varint_types(buf: Bytes, cursor: Int64s, header_end: Int64s, columns: int) -> Walk:
    """The same for any record: types read as varints one column at a time."""
    serials: list[Int64s] = []
    offsets: list[Int64s] = []
    at = header_end.copy()
    for _ in range(columns):
        present = cursor < header_end
        serial, length = _varint(buf, np.where(present, cursor, header_end))
        serial = np.where(present, serial, 0)
        if np.any(cursor + length > header_end + 9 * ~present):
            raise Damaged("record header past its record")
        serials.append(serial)
        offsets.append(at)
        at = at + np.where(serial < 12, _SIZE_OF[np.clip(serial, 0, 11)], (serial - 12) // 2)
        cursor = cursor + np.where(present, length, 0)
    offsets.append(at)
    return serials, offsets


def _integers(buf: Bytes, serial: Int64s, at: Int64s, column: str) -> Int64s:
    """Integer values of the given serial types at the given offsets (NULL: -1)."""
    unusual = len(serial) > 0 and (int(serial.min()) == 0 or int(serial.max()) >= 7)
    if unusual and bool(np.any((serial == 7) | (serial >= 10))):
        raise Unreadable(f"a non-integer value in column {column}")
    # eight bytes from each value's first: big-endian, so the value sits in the top bytes, and an
    # arithmetic right shift both drops the bytes after it and extends its sign
    wide = np.ndarray((len(buf) - 8,), dtype=">u8", buffer=buf, strides=(1,))
    value: Int64s = wide[at].astype(np.int64)
    value >>= _SHIFT.take(serial)
    if unusual:
        constant = np.flatnonzero(_SIZE_OF.take(serial) == 0)  # NULL and the constants 0 and 1
        value[constant] = _CONSTANT.take(serial[constant])
    return value
