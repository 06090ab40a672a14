"""Untrusted exports through the real CLI: timestamps that cannot be (text, NULL, negative, end before
start, near INT64_MAX, real), ids that are no integers, sums past int64. A few bad rows in a good
export are left out and said, one warning per table, and every other figure equals the analysis of a
copy where those rows were deleted, and `nsys stats` on that copy; more bad rows, or an id the
analysis needs that is no integer, refuse the export: exit 2 and one line. Never a traceback, the
export never changed (sha256), no negative duration in any figure.

The export is the real H200 capture of the tiny DeepSeek-OCR-2 (tests/fixtures/h200-tiny-ocr2),
changed on a copy through SQLite itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import decompress_fixture
from nsys_reference import perfctl_nvtx_totals, perfctl_totals, run_kern_sum, run_nvtx_sum
from untrusted_support import (
    allow_null_timestamps,
    analyze_json,
    copy,
    delete_rows,
    negative_durations,
    refused,
    update,
    without_path_and_warnings,
)

KERNEL = "CUPTI_ACTIVITY_KIND_KERNEL"
RUNTIME = "CUPTI_ACTIVITY_KIND_RUNTIME"
MEMCPY = "CUPTI_ACTIVITY_KIND_MEMCPY"
NVTX = "NVTX_EVENTS"
NEAR_INT64_MAX = 2**63 - 10

# Decode ranges (NVTX rowids 16-22 and 30-36 are page 0's and page 1's decode steps) and kernels made bad:
# (table, rowid, SET clause, parameters, what the warning says of it)
BAD_ROWS: list[tuple[str, int, str, tuple[Any, ...]]] = [
    (NVTX, 17, "start = ?", ("soon",)),  # text
    (NVTX, 18, "start = NULL", ()),
    (NVTX, 19, "start = -5", ()),
    (NVTX, 20, '"end" = start - 1', ()),
    (NVTX, 21, '"end" = ?', (NEAR_INT64_MAX,)),
    (NVTX, 31, 'start = ?, "end" = ?', (NEAR_INT64_MAX - 100, NEAR_INT64_MAX)),
    (NVTX, 32, "start = start + 0.5", ()),  # real
    (KERNEL, 100, "start = ?", ("12:00",)),
    (KERNEL, 1000, '"end" = NULL', ()),
    (KERNEL, 2000, "start = -1000", ()),
    (KERNEL, 3000, '"end" = start - 1', ()),
    (KERNEL, 4000, '"end" = ?', (NEAR_INT64_MAX,)),
    (KERNEL, 5000, '"end" = "end" + 0.25', ()),
    (MEMCPY, 50, '"end" = start - 7', ()),
]


@pytest.fixture(scope="module")
def original(export_dir: Path) -> Path:
    return decompress_fixture("h200-tiny-ocr2.sqlite.xz", export_dir)


def _launch_rows(export: Path, kernel_rowids: list[int]) -> list[int]:
    """The API rows that launched the given kernels."""
    with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
        return [
            conn.execute(
                f"SELECT r.rowid FROM {RUNTIME} r JOIN {KERNEL} k ON k.correlationId = r.correlationId "
                "AND k.rowid = ?",
                (k,),
            ).fetchone()[0]
            for k in kernel_rowids
        ]


@pytest.fixture(scope="module")
def damaged(original: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[int]]:
    """(the export with BAD_ROWS and three bad launch calls, a copy with those rows deleted, the
    launch calls' rowids)."""
    folder = tmp_path_factory.mktemp("damaged")
    bad = copy(original, folder / "bad.sqlite")
    launches = _launch_rows(original, [1500, 2500, 3500])
    for table in (NVTX, KERNEL):
        allow_null_timestamps(bad, table)
    launch_damage = [
        (launches[0], '"end" = start - 1', ()),
        (launches[1], '"end" = ?', ("later",)),
        (launches[2], "start = -3", ()),
    ]
    update(
        bad,
        *[(f"UPDATE {t} SET {s} WHERE rowid = {r}", a) for t, r, s, a in BAD_ROWS],
        *[(f"UPDATE {RUNTIME} SET {s} WHERE rowid = {r}", a) for r, s, a in launch_damage],
    )
    deleted = copy(original, folder / "deleted.sqlite")
    rows: dict[str, list[int]] = {RUNTIME: launches}
    for table, rowid, *_ in BAD_ROWS:
        rows.setdefault(table, []).append(rowid)
    delete_rows(deleted, rows)
    return bad, deleted, launches


@pytest.fixture(scope="module")
def analyses(
    damaged: tuple[Path, Path, list[int]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], dict[str, Any]]:
    bad, deleted, _ = damaged
    folder = tmp_path_factory.mktemp("out")
    proc, analysis = analyze_json(bad, folder / "bad")
    assert proc.returncode == 0, proc.stderr
    proc, expected = analyze_json(deleted, folder / "deleted")
    assert proc.returncode == 0, proc.stderr
    return analysis, expected


def test_a_few_bad_rows_are_left_out_and_said_once_per_table(
    analyses: tuple[dict[str, Any], dict[str, Any]], damaged: tuple[Path, Path, list[int]]
) -> None:
    analysis, expected = analyses
    launches = damaged[2]
    added = [w for w in analysis["warnings"] if w not in expected["warnings"]]
    left_out = [w for w in added if "left out of every figure" in w]
    assert left_out == [
        f"{KERNEL}: 6 of 6,101 rows have timestamps that cannot be (2 not an integer, 1 NULL, 1 negative, "
        f"1 end before start, 1 past 2^62 ns; the first, rowid 100: start is text, not an integer): left "
        "out of every figure",
        f"{MEMCPY}: 1 of 359 rows have timestamps that cannot be (1 end before start; the first, rowid 50: "
        f"end {_value(damaged[0], MEMCPY, 50, 'end')} is before start "
        f"{_value(damaged[0], MEMCPY, 50, 'start')}): left out of every figure",
        f"{RUNTIME}: 3 of {_launch_calls(damaged[1]) + 3:,} launch calls have timestamps that cannot be "
        f"(1 not an integer, 1 negative, 1 end before start; the first, rowid {min(launches)}: "
        f"{_launch_problem(damaged[0], min(launches))}): left out of every figure",
        f"{NVTX}: 7 of 34 NVTX ranges have timestamps that cannot be (2 not an integer, 2 past 2^62 ns, "
        "1 NULL, 1 negative, 1 end before start; the first, rowid 17: start is text, not an integer): "
        "left out of every figure",
    ]
    # besides: the kernel table read through SQLite from the text value's chunk on (slower, said)
    assert [w for w in added if w not in left_out] == [
        w for w in added if "read through SQLite instead, slower" in w
    ]


def _value(export: Path, table: str, rowid: int, column: str) -> int:
    with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
        return int(conn.execute(f'SELECT "{column}" FROM {table} WHERE rowid = ?', (rowid,)).fetchone()[0])


def _launch_calls(export: Path) -> int:
    """The launch-API rows of the API table (the ones the analysis reads)."""
    with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
        return int(
            conn.execute(
                f"SELECT count(*) FROM {RUNTIME} WHERE nameId IN (SELECT id FROM StringIds WHERE "
                "value GLOB 'cu*Launch*' OR value GLOB 'cu*Memcpy*' OR value GLOB 'cu*Memset*' "
                "OR value GLOB 'cu*Prefetch*')"
            ).fetchone()[0]
        )


def _launch_problem(export: Path, rowid: int) -> str:
    """What the damage done to launch call `rowid` (see `damaged`) is called."""
    with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
        start, end = conn.execute(f'SELECT start, "end" FROM {RUNTIME} WHERE rowid = ?', (rowid,)).fetchone()
    if isinstance(end, str):
        return "end is text, not an integer"
    return f"start {start} is negative" if start < 0 else f"end {end} is before start {start}"


def test_every_other_figure_equals_the_analysis_without_those_rows(
    analyses: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    analysis, expected = analyses
    assert without_path_and_warnings(analysis) == without_path_and_warnings(expected)
    assert analysis["totals"]["kernels"] == 6101 - 6 and analysis["totals"]["nvtx_ranges"] == 34 - 7
    assert not list(negative_durations(analysis))
    # the three kernels whose launch calls were left out cannot be attributed, and say so
    assert "3 kernels have no matching CUDA API launch and cannot be attributed" in analysis["warnings"]


def test_the_good_rows_equal_nsys_stats_on_a_copy_without_the_bad_ones(
    analyses: tuple[dict[str, Any], dict[str, Any]],
    damaged: tuple[Path, Path, list[int]],
    reference_nsys: str,
    tmp_path: Path,
) -> None:
    analysis, _ = analyses
    deleted = damaged[1]
    assert perfctl_totals(analysis) == run_kern_sum(reference_nsys, deleted, tmp_path)
    assert perfctl_nvtx_totals(analysis) == run_nvtx_sum(reference_nsys, deleted, tmp_path)


def _bad_kernels(export: Path, rowids: range, set_clause: str) -> None:
    with sqlite3.connect(export) as conn:
        conn.executemany(f"UPDATE {KERNEL} SET {set_clause} WHERE rowid = ?", [(r,) for r in rowids])
    conn.close()


def test_more_than_a_few_bad_kernels_refuse_the_export(original: Path, tmp_path: Path) -> None:
    """100 of 6,101 kernels ending before they start: more than a few (16, or 0.1 % of a table)."""
    export = copy(original, tmp_path / "bad.sqlite")
    _bad_kernels(export, range(201, 301), '"end" = start - 1')
    line = refused(export, tmp_path / "out")
    assert f"{export} is not a usable nsys export: {KERNEL}: " in line
    assert "have timestamps that cannot be (" in line and "end before start" in line
    assert "the first, rowid 201: end " in line and "is before start" in line


def test_more_than_a_few_bad_ranges_refuse_the_export(original: Path, tmp_path: Path) -> None:
    """20 of the 34 ranges ending before they start: more than a few, and more than half."""
    export = copy(original, tmp_path / "bad.sqlite")
    with sqlite3.connect(export) as conn:
        rows = [r for (r,) in conn.execute(f"SELECT rowid FROM {NVTX} WHERE eventType = 59 LIMIT 20")]
        conn.executemany(f'UPDATE {NVTX} SET "end" = start - 1 WHERE rowid = ?', [(r,) for r in rows])
    conn.close()
    line = refused(export, tmp_path / "out")
    assert f"{NVTX}: 20 of 34 NVTX ranges have timestamps that cannot be (20 end before start; " in line
    assert f"the first, rowid {rows[0]}: end " in line


@pytest.mark.parametrize(
    "table, rowid, column, value, said",
    [
        (KERNEL, 10, "correlationId", "abc", "correlationId is text, not an integer"),
        (KERNEL, 10, "correlationId", 2**40, f"correlationId is {2**40}"),
        (KERNEL, 11, "globalPid", b"\x01\x02", "globalPid is blob, not an integer"),
        (KERNEL, 12, "demangledName", "kernel", "demangledName is text, not an integer"),
        (KERNEL, 13, "shortName", 2**40, f"shortName is {2**40}"),
        (MEMCPY, 14, "bytes", "many", "bytes is text, not an integer"),
        (MEMCPY, 15, "bytes", -5, "bytes is -5"),
        (RUNTIME, None, "correlationId", "x", "correlationId is text, not an integer"),
        (RUNTIME, None, "globalTid", 1.5, "globalTid is real, not an integer"),
        (NVTX, 16, "globalTid", "main", "globalTid is text, not an integer"),
        (NVTX, 16, "globalTid", None, "globalTid is null, not an integer"),
        (NVTX, 17, "domainId", "perfctl", "domainId is text, not an integer"),
        ("TARGET_INFO_GPU", 1, "smCount", "many", "smCount is text, not an integer"),
    ],
)
def test_an_id_that_is_no_integer_refuses_the_export(
    original: Path, tmp_path: Path, table: str, rowid: int | None, column: str, value: Any, said: str
) -> None:
    export = copy(original, tmp_path / "bad.sqlite")
    if rowid is None:  # the launch call of kernel 10
        (rowid,) = _launch_rows(original, [10])
    update(export, (f'UPDATE {table} SET "{column}" = ? WHERE rowid = {rowid}', (value,)))
    line = refused(export, tmp_path / "out")
    assert f"{export} is not a usable nsys export: {table} rowid {rowid}: {said}" in line


def test_kernel_durations_summing_past_int64_refuse_the_export(original: Path, tmp_path: Path) -> None:
    """Three kernels each running 2^61 ns: each sound, together past what int64 sums hold (numpy
    would wrap round to a negative kernel time)."""
    export = copy(original, tmp_path / "long.sqlite")
    _bad_kernels(export, range(6099, 6102), f'"end" = start + {2**61}')
    line = refused(export, tmp_path / "out")
    assert f"the durations of {KERNEL} add up past 2^62" in line


def test_range_walls_summing_past_int64_refuse_the_export(original: Path, tmp_path: Path) -> None:
    """Every decode range lasting 2^61 ns: each sound, their sum per name past int64."""
    export = copy(original, tmp_path / "long.sqlite")
    with sqlite3.connect(export) as conn:
        decode = conn.execute("SELECT id FROM StringIds WHERE value = 'decode'").fetchone()[0]
        conn.execute(f'UPDATE {NVTX} SET "end" = start + {2**61} WHERE textId = ?', (decode,))
    conn.close()
    line = refused(export, tmp_path / "out")
    assert "the wall times of an NVTX range name's instances add up past 2^62" in line


def test_a_kernel_of_73_years_is_analyzed_exactly_as_nsys_stats_counts_it(
    original: Path, tmp_path: Path, nsys_bin: str
) -> None:
    """One decode kernel running 2^61 ns: sound, if absurd. Its busy-time union spans more than any
    one key of (range, time) can hold (it used to raise OverflowError), and its figures pass 2^53
    (where float64 sums round): perfctl gives nsys stats' figures, exactly."""
    export = copy(original, tmp_path / "long.sqlite")
    with sqlite3.connect(export) as conn:
        (rowid,) = conn.execute(
            f"SELECT k.rowid FROM {KERNEL} k JOIN {RUNTIME} r ON r.correlationId = k.correlationId "
            f'JOIN {NVTX} e ON e.rowid = 16 AND r.start >= e.start AND r."end" <= e."end" '
            "ORDER BY k.rowid LIMIT 1"
        ).fetchone()
    conn.close()
    _bad_kernels(export, range(rowid, rowid + 1), f'"end" = start + {2**61}')
    proc, analysis = analyze_json(export, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert perfctl_totals(analysis) == run_kern_sum(nsys_bin, export, tmp_path)
    decode = next(s for s in analysis["stages"] if s["stage"] == "decode")
    assert decode["kernel_time_ns"] > 2**61 and decode["gpu_busy_ns"] >= 2**61
    page = analysis["pages"][0]["stages"]["decode"]
    assert page["kernel_time_ns"] > 2**61  # (summed exactly per page too)


def test_an_export_with_one_range_is_analyzed(original: Path, tmp_path: Path, nsys_bin: str) -> None:
    """(pandas 3 once made a single range a KeyError.)"""
    export = copy(original, tmp_path / "one.sqlite")
    with sqlite3.connect(export) as conn:
        conn.execute(f"DELETE FROM {NVTX} WHERE eventType IN (59, 60) AND rowid != 11")  # vision
    conn.close()
    proc, analysis = analyze_json(export, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert [(r["name"], r["instances"]) for r in analysis["ranges"]] == [("vision", 1)]
    assert perfctl_totals(analysis) == run_kern_sum(nsys_bin, export, tmp_path)
