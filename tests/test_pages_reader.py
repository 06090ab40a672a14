"""The page reader (perfctl.nsys_export.pages) against SQLite itself: every integer table of the real
exports, then small databases with what nsys does not write but a file may hold (every integer
width, NULLs, short records, texts, floats, overflow pages, a write-ahead log), where the reader
either decodes exactly what SQLite returns or leaves the table to SQLite with the same result."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from conftest import decompress_fixture
from perfctl.nsys_export import columns, pages

TABLES = (
    "CUPTI_ACTIVITY_KIND_KERNEL",
    "CUPTI_ACTIVITY_KIND_RUNTIME",
    "CUPTI_ACTIVITY_KIND_MEMCPY",
    "CUPTI_ACTIVITY_KIND_MEMSET",
    "OSRT_API",
)
EXPORTS = ("h200-tiny-ocr2", "h200-nvtx-matmul", "h200-nsys2023-threads-graphs")


def _sqlite(path: Path, table: str, cols: list[str]) -> dict[str, list[int]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute(f'SELECT {", ".join(cols)} FROM "{table}" ORDER BY rowid').fetchall()
    return {c: [-1 if r[i] is None else r[i] for r in rows] for i, c in enumerate(cols)}


def _chunks(
    path: Path,
    table: str,
    cols: list[str],
    where: pages.RowFilter | None = None,
    fallbacks: list[str] | None = None,
) -> dict[str, list[int]]:
    """table_chunks' rows; with no `fallbacks` list given, the page reader must read them all."""
    notes: list[str] = []
    got = list(columns.table_chunks(path, table, {c: c for c in cols}, where, notes))
    if fallbacks is None:
        assert notes == []
    else:
        fallbacks += notes
    return {c: np.concatenate([g[c] for g in got]).tolist() if got else [] for c in cols}


@pytest.mark.parametrize("name", EXPORTS)
def test_every_integer_table_of_real_exports(
    name: str, export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "CHUNK_PAGES", 3)  # many chunks, decoded ahead in threads
    export = decompress_fixture(f"{name}.sqlite.xz", export_dir)
    with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
        for table in TABLES:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone():
                continue
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            layout = pages.table_layout(conn, table, cols)
            decoded = list(pages.read_chunks(export, layout))
            got = {c: np.concatenate([d[c] for d in decoded]).tolist() for c in cols}
            assert got == _sqlite(export, table, cols), table
    runtime_ids = _sqlite(export, "CUPTI_ACTIVITY_KIND_RUNTIME", ["nameId"])["nameId"]
    some = np.array(sorted(set(runtime_ids))[::2], dtype=np.int64)
    for inside in (True, False):
        kept = _chunks(
            export,
            "CUPTI_ACTIVITY_KIND_RUNTIME",
            ["start", "nameId"],
            pages.RowFilter("nameId", some, inside),
        )
        every = _sqlite(export, "CUPTI_ACTIVITY_KIND_RUNTIME", ["start", "nameId"])
        mask = [(n in set(some.tolist())) == inside for n in every["nameId"]]
        assert kept == {c: [v for v, m in zip(every[c], mask, strict=True) if m] for c in every}


WIDTHS = [
    0,
    1,
    -1,
    127,
    -128,
    300,
    -300,
    70_000,
    -70_000,
    2**31 - 1,
    -(2**31),
    2**40,
    -(2**40),
    2**62,
    -(2**63),
]


def _database(path: Path, extra_rows: list[tuple[object, ...]] = ()) -> None:  # type: ignore[assignment]
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT, a INTEGER, b INTEGER)")
        rows = [(None, None, v, WIDTHS[(i + 3) % len(WIDTHS)]) for i, v in enumerate(WIDTHS * 40)]
        rows += [(None, "x" * 200, 5, None), (None, "y", None, 7)]  # a two-byte text type; NULLs
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows + list(extra_rows))
        conn.execute("ALTER TABLE t ADD COLUMN c INTEGER")  # older records stop before c
        conn.execute("INSERT INTO t (note, a, b, c) VALUES ('z', 1, 2, 3)")


def test_integer_widths_nulls_texts_and_short_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "CHUNK_PAGES", 1)
    path = tmp_path / "widths.sqlite"
    _database(path)
    with sqlite3.connect(path) as conn:
        layout = pages.table_layout(conn, "t", ["id", "a", "b", "c"])
    assert layout.rowid_alias == {"id"}
    decoded = list(pages.read_chunks(path, layout))
    got = {c: np.concatenate([d[c] for d in decoded]).tolist() for c in ("id", "a", "b", "c")}
    assert got == _sqlite(path, "t", ["id", "a", "b", "c"])
    assert len(decoded) > 1


@pytest.mark.parametrize(
    "extra, reason",
    [
        ([(None, "w" * 9000, 1, 2)], "overflow pages"),  # a record longer than a page
        ([(None, None, 1.5, 2)], "non-integer"),  # a float in an integer column
    ],
)
def test_what_the_reader_leaves_to_sqlite(
    extra: list[tuple[object, ...]], reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader refuses, and table_chunks goes on through SQLite from the first row not yet read:
    the whole table still arrives once, in order."""
    monkeypatch.setattr(pages, "CHUNK_PAGES", 1)
    path = tmp_path / "odd.sqlite"
    _database(path, extra)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO t (note, a, b) SELECT note, a, b FROM t WHERE rowid <= 100")
        layout = pages.table_layout(conn, "t", ["a", "b"])
    with pytest.raises(pages.Unreadable, match=reason):
        list(pages.read_chunks(path, layout))
    expected = _sqlite(path, "t", ["id", "b"])
    notes: list[str] = []
    assert _chunks(path, "t", ["id", "b"], fallbacks=notes) == expected
    if reason == "non-integer":  # read through SQLite, a float in an integer column is no integer
        assert notes == []  # (column a not read)
        odd = int(pages.NOT_AN_INTEGER)  # never cut to an integer: nsys_export.checks judges it
        assert _chunks(path, "t", ["a"], fallbacks=notes)["a"] == [
            odd if isinstance(v, float) else v for v in _sqlite(path, "t", ["a"])["a"]
        ]
        assert odd in _chunks(path, "t", ["a"], fallbacks=[])["a"]
    # said once, with the table, the reason and the rows left to SQLite (those after the pages read)
    (note,) = notes
    assert note.startswith("t: the page reader cannot read it past rowid ") and reason in note
    assert note.endswith("the rest read through SQLite instead, slower")


def test_write_ahead_log_is_read_through_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite"
    _database(path)
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("INSERT INTO t (a, b) VALUES (41, 42)")
    writer.commit()  # the row sits in the -wal file only while the writer stays open
    try:
        assert Path(f"{path}-wal").stat().st_size > 0
        notes: list[str] = []
        got = _chunks(path, "t", ["a", "b"], fallbacks=notes)
        assert got == _sqlite(path, "t", ["a", "b"]) and got["a"][-1] == 41
        assert notes == [
            "t: the page reader cannot read it (the database has a write-ahead log); "
            "read through SQLite instead, slower"
        ]
    finally:
        writer.close()


def test_a_damaged_page_is_damage(tmp_path: Path, tiny_gpu_export: Path) -> None:
    data = bytearray(tiny_gpu_export.read_bytes())
    with sqlite3.connect(f"file:{tiny_gpu_export}?mode=ro", uri=True) as conn:
        layout = pages.table_layout(conn, "CUPTI_ACTIVITY_KIND_KERNEL", ["start"])
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    leaf = pages.leaf_pages(pages.open_file(tiny_gpu_export), layout.root)[1]
    data[(leaf - 1) * page_size] = 0x42  # not a b-tree page kind
    path = tmp_path / "damaged.sqlite"
    path.write_bytes(bytes(data))
    with pytest.raises(pages.Damaged):
        list(pages.read_chunks(path, layout))
