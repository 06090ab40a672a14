"""Where the analysis engine leaves its fast path, it says so: a table the page reader leaves to
SQLite (a write-ahead log, a non-integer value) and an export that cannot be cut into GPU-idle
windows each add one warning to analysis.json (and so to the report), and every other figure stays
that of the normal analysis. Real exports, changed on a copy through SQLite itself."""

from __future__ import annotations

import html
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, decompress_fixture
from perfctl.analysis.analyze import analyze_export, analyze_tables, load_export
from perfctl.commands.analyze import analyze_path
from perfctl.commands.analyze_options import AnalyzeOptions
from perfctl.nsys_export import pages
from perfctl.nsys_export.windows import activity_windows

KERNEL = "CUPTI_ACTIVITY_KIND_KERNEL"
ACTIVITY_TABLES = (
    KERNEL,
    "CUPTI_ACTIVITY_KIND_MEMCPY",
    "CUPTI_ACTIVITY_KIND_MEMSET",
    "CUPTI_ACTIVITY_KIND_RUNTIME",
)
SQLITE_INSTEAD = "read through SQLite instead, slower"


@pytest.fixture(scope="module")
def normal(tiny_gpu_export: Path) -> dict[str, Any]:
    return analyze_export(tiny_gpu_export)


def _without_path_and_warnings(analysis: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: v for k, v in analysis.items() if k != "warnings"},
        "export": {**analysis["export"], "path": None},
    }


def _copy(export: Path, target: Path) -> Path:
    shutil.copyfile(export, target)
    return target


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.sqlite.xz")))
def test_a_normal_export_takes_the_fast_path_without_a_word(name: str, export_dir: Path) -> None:
    analysis = analyze_export(decompress_fixture(name, export_dir))
    assert not any(SQLITE_INSTEAD in w or "GPU-idle windows" in w for w in analysis["warnings"])


@pytest.fixture
def export_with_a_write_ahead_log(tiny_gpu_export: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy in WAL mode whose log holds the only right copy of a changed kernel page: the main file
    has that kernel ending 1 ms late, the log (kept by an open writer) its true end."""
    export = _copy(tiny_gpu_export, tmp_path / "wal.sqlite")
    writer = sqlite3.connect(export)
    try:
        writer.execute(f'UPDATE {KERNEL} SET "end" = "end" + 1000000 WHERE rowid = 3000')
        writer.commit()
        assert writer.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute(f'UPDATE {KERNEL} SET "end" = "end" - 1000000 WHERE rowid = 3000')
        writer.commit()
        assert Path(f"{export}-wal").stat().st_size > 0
        yield export
    finally:
        writer.close()


def test_a_write_ahead_log_is_read_through_sqlite_and_said(
    export_with_a_write_ahead_log: Path, normal: dict[str, Any], tmp_path: Path
) -> None:
    analysis = analyze_export(export_with_a_write_ahead_log)
    assert _without_path_and_warnings(analysis) == _without_path_and_warnings(normal)
    added = analysis["warnings"][len(normal["warnings"]) :]
    assert analysis["warnings"][: len(normal["warnings"])] == normal["warnings"]
    # one line per table the readers read (each activity table, and the API table's launch rows)
    assert [w.split(":")[0] for w in added] == sorted(ACTIVITY_TABLES)
    assert all("write-ahead log" in w and w.endswith(SQLITE_INSTEAD) for w in added), added
    # and the written analysis.json and report carry them
    result = analyze_path(export_with_a_write_ahead_log, AnalyzeOptions(out_dir=tmp_path / "out"))
    assert json.loads(result.json_path.read_text())["warnings"][-len(added) :] == added
    report = result.html_path.read_text()
    assert all(f'<div class="warn">{html.escape(w)}</div>' in report for w in added)


def test_a_non_integer_value_is_read_through_sqlite_from_its_chunk_on(
    tiny_gpu_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel start stored as a float (integer start + 0.5): the kernel table is decoded from its
    pages up to the chunk holding it (in the background reader process, whose note reaches the
    analysis), read through SQLite from there on. A start that is no integer is a bad row (issue 14:
    it used to be cut to an integer): that kernel is left out and said, and every figure equals the
    analysis of a copy without it."""
    monkeypatch.setattr(pages, "CHUNK_PAGES", 8)  # many chunks (the forked reader inherits it)
    export = _copy(tiny_gpu_export, tmp_path / "float.sqlite")
    without = _copy(tiny_gpu_export, tmp_path / "without.sqlite")
    with sqlite3.connect(export) as conn:
        conn.execute(f"UPDATE {KERNEL} SET start = start + 0.5 WHERE rowid = 3000")
        assert conn.execute(f"SELECT typeof(start) FROM {KERNEL} WHERE rowid = 3000").fetchone() == ("real",)
    with sqlite3.connect(without) as conn:
        conn.execute(f"DELETE FROM {KERNEL} WHERE rowid = 3000")
    analysis, expected = analyze_export(export), analyze_export(without)
    assert _without_path_and_warnings(analysis) == _without_path_and_warnings(expected)
    fallback, left_out = analysis["warnings"][len(expected["warnings"]) :]
    assert fallback.startswith(f"{KERNEL}: the page reader cannot read it past rowid ")
    assert "(a non-integer value in column start)" in fallback and fallback.endswith(SQLITE_INSTEAD)
    past = int(fallback.split("past rowid ")[1].split()[0])
    assert 0 < past < 3000
    assert left_out == (
        f"{KERNEL}: 1 of 6,101 rows have timestamps that cannot be (1 not an integer; the first, "
        "rowid 3000: start is real, not an integer): left out of every figure"
    )


def test_a_record_on_overflow_pages_is_read_through_sqlite_to_the_same_figures(
    tiny_gpu_export: Path, normal: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel row longer than a page (a 9,000-character text in a column the analysis does not
    read): from its chunk on, SQLite reads the table, to the same figures, and says so once."""
    monkeypatch.setattr(pages, "CHUNK_PAGES", 8)
    export = _copy(tiny_gpu_export, tmp_path / "overflow.sqlite")
    with sqlite3.connect(export) as conn:
        conn.execute(f"UPDATE {KERNEL} SET gridId = ? WHERE rowid = 3000", ("g" * 9000,))
    analysis = analyze_export(export)
    assert _without_path_and_warnings(analysis) == _without_path_and_warnings(normal)
    (added,) = analysis["warnings"][len(normal["warnings"]) :]
    assert added.startswith(f"{KERNEL}: the page reader cannot read it past rowid ")
    assert "(records on overflow pages)" in added and added.endswith(SQLITE_INSTEAD)


def test_an_export_out_of_start_order_is_analyzed_at_once_and_said(
    tiny_gpu_export: Path, normal: dict[str, Any], tmp_path: Path
) -> None:
    """The first two kernels' rows swapped: the same kernels, no longer in start order, which windows
    rely on. The export is analyzed at once, to the same figures as the original's windows."""
    export = _copy(tiny_gpu_export, tmp_path / "swapped.sqlite")
    with sqlite3.connect(export) as conn:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({KERNEL})")]
        select = ", ".join(f'"{c}"' for c in columns)
        first, second = conn.execute(f"SELECT {select} FROM {KERNEL} WHERE rowid IN (1, 2) ORDER BY rowid")
        assert first[0] < second[0]
        assign = ", ".join(f'"{c}" = ?' for c in columns)
        conn.execute(f"UPDATE {KERNEL} SET {assign} WHERE rowid = 1", second)
        conn.execute(f"UPDATE {KERNEL} SET {assign} WHERE rowid = 2", first)
    analysis = analyze_export(export)
    assert analysis["warnings"] == [
        *normal["warnings"],
        f"the export could not be cut into GPU-idle windows ({KERNEL} is not in start order): it was "
        "analyzed at once instead, slower and with memory growing with the export",
    ]
    tables = load_export(tiny_gpu_export)
    windowed = analyze_tables(tables, activity_windows(tables.schema, 500))  # ~12 windows
    assert analysis["stages"] == windowed["stages"] and analysis["totals"] == windowed["totals"]
    assert _without_path_and_warnings(analysis) == _without_path_and_warnings(normal)
