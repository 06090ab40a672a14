"""Open an nsys SQLite export read-only and learn its schema from the file itself.

The export says what it is: its schema version sits in `EXPORT_META_DATA` (schema 3.0.0, nsys 2022.4)
or `META_DATA_EXPORT` (3.7.2 from nsys 2023.4; 3.11+ from nsys 2024-2025), and the numeric event
types of NVTX rows are named in `ENUM_NSYS_EVENT_TYPE`. Tables are created lazily by nsys, so a
missing table means "no such events", not a broken file.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from perfctl.errors import BadInput
from perfctl.nsys_export.names import head_sql, read_name, size_sql

# Schema versions whose tables and columns perfctl has been checked against: real exports, with
# kernel attribution and NVTX ranges equal to that nsys's own stats reports (tests/test_nsys_stats_parity.py,
# tests/test_nsys_generations.py). 3.0.0: nsys 2022.4; 3.7.2: 2023.4; 3.11.1: 2024.2. The tables and
# columns perfctl reads are the same in all three (NVTX_EVENTS, StringIds, ENUM_NSYS_EVENT_TYPE with the
# same ids, the CUPTI kernel/runtime/memcpy/memset tables, the kernels' graphNodeId among them,
# TARGET_INFO_GPU); what changed around them (3.7 added greenContextId, 3.11 split CUDA_GRAPH_EVENTS
# into graph and graph-node events) is not read.
KNOWN_SCHEMA_VERSIONS = {"3.0.0", "3.7.2", "3.11.1"}

# Event-type ids as nsys 2022.4 - 2025 number them; used only when the export has no
# ENUM_NSYS_EVENT_TYPE table to read them from.
_DEFAULT_EVENT_TYPES = {
    "NvtxMark": 34,
    "NvtxPushPopRange": 59,
    "NvtxStartEndRange": 60,
    "NvtxtPushPopRange": 70,
    "NvtxtStartEndRange": 71,
    "NvtxDomainCreate": 75,
}


@dataclass(frozen=True)
class ExportSchema:
    """What one export holds: its version stamp, its tables and their columns, NVTX event-type ids."""

    path: Path
    schema_version: str | None
    product_version: str | None
    tables: dict[str, frozenset[str]]
    event_types: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    def has(self, table: str) -> bool:
        return table in self.tables

    def has_column(self, table: str, column: str) -> bool:
        return column in self.tables.get(table, frozenset())

    def event_type(self, name: str) -> int:
        return self.event_types.get(name, _DEFAULT_EVENT_TYPES[name])


def readonly_uri(path: Path) -> str:
    """The SQLite URI that opens `path` read-only. The path is percent-encoded: in a bare URI a '#' or
    '?' in a file name would end the path early, drop `mode=ro`, and open (or create) another file."""
    return f"file:{quote(path.resolve().as_posix())}?mode=ro"


def quote_identifier(name: str) -> str:
    """A table or column name read from a user's file, as an SQL identifier (never as SQL text)."""
    return '"' + name.replace('"', '""') + '"'


def connect_readonly(path: Path) -> sqlite3.Connection:
    """Open `path` read-only (never modify a user's export), with a clean error for non-databases."""
    if not path.exists():
        raise BadInput(f"no such file: {path}")
    if not path.is_file():
        raise BadInput(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise BadInput(f"{path} is empty (0 bytes), not an nsys SQLite export")
    try:
        conn = sqlite3.connect(readonly_uri(path), uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is not an SQLite database ({exc})") from None
    return conn


def read_schema(conn: sqlite3.Connection, path: Path) -> ExportSchema:
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables = {
            name: frozenset(r[0] for r in conn.execute("SELECT name FROM pragma_table_info(?)", (name,)))
            for name in names
        }
    except sqlite3.DatabaseError as exc:
        raise BadInput(f"{path} is a damaged SQLite file ({exc})") from None

    meta = _read_meta(conn, tables)
    if "StringIds" not in tables or not (meta or "NVTX_EVENTS" in tables or "TARGET_INFO_GPU" in tables):
        raise BadInput(
            f"{path} is an SQLite file but not an Nsight Systems export (no StringIds/meta tables)"
        )

    version = meta.get("EXPORT_SCHEMA_VERSION") or meta.get("SCHEMA_VERSION")
    product = meta.get("EXPORT_PRODUCT_VERSION") or meta.get("PRODUCT_VERSION") or meta.get("NSYS_VERSION")
    warnings: list[str] = []
    if version is None:
        warnings.append("the export carries no schema version; reading it as nsys 2022.4+ (schema 3.x)")
    elif version not in KNOWN_SCHEMA_VERSIONS:
        warnings.append(
            f"nsys export schema {version} has not been checked by this perfctl "
            f"(checked: {', '.join(sorted(KNOWN_SCHEMA_VERSIONS))}); results are a best effort"
        )

    event_types: dict[str, int] = {}
    if "ENUM_NSYS_EVENT_TYPE" in tables:
        wanted = tuple(_DEFAULT_EVENT_TYPES)
        marks = ",".join("?" * len(wanted))
        for ident, name in conn.execute(
            f"SELECT id, name FROM ENUM_NSYS_EVENT_TYPE WHERE name IN ({marks})", wanted
        ):
            event_types[str(name)] = int(ident)
    return ExportSchema(path, version, product, tables, event_types, warnings)


def _read_meta(conn: sqlite3.Connection, tables: dict[str, frozenset[str]]) -> dict[str, str]:
    """Key/value rows of whichever meta table this schema generation writes."""
    for table in ("EXPORT_META_DATA", "META_DATA_EXPORT"):
        cols = tables.get(table)
        if not cols:
            continue
        key_col = "name" if "name" in cols else next(iter(sorted(cols)))
        val_col = "value" if "value" in cols else None
        if val_col is None:
            continue
        key, value = quote_identifier(key_col), quote_identifier(val_col)
        rows = conn.execute(
            f"SELECT rowid, {head_sql(key)}, {head_sql(value)}, {size_sql(value)} FROM {table}"
        ).fetchall()
        # values bounded as names are (a version string shown in every output is untrusted text)
        return {
            read_name(conn, k, None, table, key_col, rowid): read_name(conn, v, size, table, val_col, rowid)
            for rowid, k, v, size in rows
        }
    return {}
