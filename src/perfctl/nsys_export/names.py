"""Names read from an export (kernels, NVTX ranges and domains, GPUs), bounded where they are read.

A name is untrusted text of any length: eight kernel names of 100 MB each once made `perfctl analyze`
use 12.3 GB and write a 2.9 GB report, every copy of a name (pandas, JSON, HTML, Markdown) paying
for its length. So a name of more than NAME_BYTES bytes (UTF-8) is read as its first NAME_BYTES
bytes (cut back to a whole character), its full size and a hash of its full value (`bounded`):
distinct names stay distinct (their hashes differ), equal names stay equal, and nothing downstream
grows with the size.

SQLite cuts the value (`head_sql`, `size_sql`) as bytes: its text functions stop at a NUL character,
which a hostile name may hold (and which the report must show, escaped). Python never holds more
than NAME_BYTES of a name; the hash of a long one is streamed from its cell in blocks (`cell_digest`,
sqlite3's incremental blob reading, which reads TEXT cells too). `bound_name` bounds a name already
in memory the same way, to the same text (nsys's exports are UTF-8).
"""

from __future__ import annotations

import codecs
import hashlib
import sqlite3
from typing import Any

from perfctl.errors import BadInput

# Bytes of a name kept whole. Real demangled CUTLASS / cuBLAS / CUTE kernel names reach several KB
# (the longest in tests/fixtures has 2,932 characters); a name beyond 8 KiB is generated text, and
# a thousand such names still fit in 8 MB of output.
NAME_BYTES = 8192
DIGEST_HEX = 16  # hex digits of sha256 kept: 64 bits, no collision among any export's names
_BLOCK = 1 << 20  # bytes of a long cell hashed at a time


def bounded(head: str, size: int, digest: str) -> str:
    """The bounded form of a name of `size` bytes that begins with `head` and whose bytes hash to
    `digest` (sha256, hex)."""
    return f"{head}… [{size:,} bytes, sha256 {digest[:DIGEST_HEX]}]"


def _whole_characters(data: bytes) -> str:
    """The UTF-8 text of `data`, less a character cut at its end (an invalid byte elsewhere raises)."""
    return codecs.getincrementaldecoder("utf-8")().decode(data, final=False)


def bound_name(text: str) -> str:
    """`text` itself when it has at most NAME_BYTES bytes of UTF-8, else its bounded form."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= NAME_BYTES:
        return text
    head = _whole_characters(data[:NAME_BYTES])
    return bounded(head, len(data), hashlib.sha256(data).hexdigest())


def bound_strings(value: Any) -> Any:
    """A JSON value (a run folder's record file: manifest.json, operators.json) with every string in
    it, keys included, bounded as `bound_name` bounds a name: what the outputs copy of an untrusted
    record does not grow with the length of its texts."""
    if isinstance(value, str):
        return bound_name(value)
    if isinstance(value, list):
        return [bound_strings(v) for v in value]
    if isinstance(value, dict):
        return {bound_name(k) if isinstance(k, str) else k: bound_strings(v) for k, v in value.items()}
    return value


def head_sql(expr: str) -> str:
    """SQL for the first NAME_BYTES bytes of a text expression (NULL stays NULL)."""
    return f"substr(CAST({expr} AS BLOB), 1, {NAME_BYTES})"


def size_sql(expr: str) -> str:
    """SQL for the size in bytes of a text expression."""
    return f"length(CAST({expr} AS BLOB))"


def cell_digest(conn: sqlite3.Connection, table: str, column: str, rowid: int) -> str:
    """sha256 (hex) of one TEXT or BLOB cell's bytes, read in blocks: never the whole value at once."""
    digest = hashlib.sha256()
    with conn.blobopen(table, column, rowid, readonly=True) as cell:
        while block := cell.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def read_name(
    conn: sqlite3.Connection,
    head: bytes | None,
    size: int | None,
    table: str,
    column: str,
    rowid: int,
) -> str:
    """A name read as (`head_sql`, `size_sql`) from `table`.`column` of row `rowid`: itself, or its
    bounded form when it is longer than its head. NULL reads as the empty name; bytes that are not
    UTF-8 refuse the export (BadInput), as SQLite's own decoding would."""
    if head is None:
        return ""
    data = bytes(head)
    try:
        if size is None or size <= NAME_BYTES:
            return data.decode("utf-8")
        text = _whole_characters(data)
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"{table} rowid {rowid}: its {column} is not UTF-8 text ({exc.reason} at byte {exc.start}): "
            "a damaged nsys export"
        ) from None
    return bounded(text, size, cell_digest(conn, table, column, rowid))
