"""The session's end recorded in an export, and the ranges and activities measured against it.

What nsys writes for a range the program never ended, found from real captures of a program that stops
inside its ranges (scripts/fixture_programs/unended_ranges.py, under the installed nsys; it exits with
them open, which keeps every event whatever the machine's load, or is killed, which may lose the last
ones still buffered): its end is exactly the session's end, ANALYSIS_DETAILS.duration on the events'
clock (nsys 2022.4, 2023.4 and 2024.2 alike; an export written with --ts-normalize shifts both by
EXPORT_CONFIG_TIME_SHIFT). So a range ending exactly there never ended, and perfctl sets perfctl's own
aside; a range or an activity ending *past* it is a real event of an inconsistent export (a tiled one:
scripts/tile_export.py), which `nsys stats` counts, and so does perfctl, with one warning saying how
many.

One exception, not of perfctl's making: nsys now and then records a `duration` short of its session,
and the ranges never ended then end past it. nsys 2024.2 does so while another nsys session runs on
the machine (one the machine-wide lock cannot see, a user's or another suite's), and records no stop
of its session ("Profiling has stopped." missing from DIAGNOSTIC_EVENT; test_session_stop.py holds
such an export); nsys 2023.4, which exports no DIAGNOSTIC_EVENT, did so alone once in 35 captures of
the exiting program on this 2-core box. The captures here then take another attempt, at most ATTEMPTS
in all, so that the suite depends neither on no other nsys running nor on luck; every assertion holds
for the attempt whose session end was recorded."""

from __future__ import annotations

import importlib.util
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import REPO, decompress_fixture, find_nsys
from faults_support import own_nsys_session
from nsys_reference import (
    nsys_version,
    perfctl_nvtx_totals,
    perfctl_totals,
    run_kern_sum,
    run_nvtx_sum,
)
from untrusted_support import analyze_json, copy

pytestmark = pytest.mark.nsys

PROGRAM = REPO / "scripts" / "fixture_programs" / "unended_ranges.py"
RANGE_TYPES = "(59, 60, 70, 71)"  # NVTX push/pop and start/end ranges, registered or not
NO_KERNELS = "--allow-no-kernels"  # (the program is a CPU one)
ACTIVITY_TABLES = ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET")


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


UNENDED = _module(PROGRAM)


ATTEMPTS = 3  # captures of the program at most, while nsys records a session end short of its session


def _session_end_short(export: Path) -> bool:
    """nsys recorded its session's end short of the session (the module's docstring says when): the
    start of its session but not its stop, or a range of the program's ending past `duration` (every
    range of this program ends by the session's end)."""
    with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        texts = (
            {r[0] for r in conn.execute("SELECT text FROM DIAGNOSTIC_EVENT")}
            if ("DIAGNOSTIC_EVENT" in tables)
            else set()
        )
        (past,) = conn.execute(
            f"SELECT count(*) FROM NVTX_EVENTS WHERE eventType IN {RANGE_TYPES} "
            f'AND "end" > (SELECT duration FROM ANALYSIS_DETAILS)'
        ).fetchone()
    conn.close()
    return ("Profiling has started." in texts and "Profiling has stopped." not in texts) or past > 0


def _capture(nsys: str, folder: Path, ending: str = "exit") -> tuple[Path, Path]:
    """(report, export) of the program stopped inside its ranges (`ending`: exit or kill; nsys
    finalizes when its program ends), taken again while the export's session end falls short (the
    module's docstring says why)."""
    cmd = [nsys, "profile", "--trace=nvtx", "--sample=none", "--cpuctxsw=none", "--force-overwrite=true"]
    for attempt in range(1, ATTEMPTS + 1):
        with own_nsys_session(f"test_session_end: a program stopped inside its ranges ({ending})") as env:
            proc = subprocess.run(
                [*cmd, "-o", str(folder / "run"), sys.executable, str(PROGRAM), ending],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        report = folder / "run.nsys-rep"
        assert report.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
        export = _export(nsys, report, report.with_suffix(".sqlite"))
        if not _session_end_short(export) or attempt == ATTEMPTS:
            assert not _session_end_short(export), f"nsys recorded a short session end in {ATTEMPTS} captures"
            return report, export
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def stopped_capture(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, Path]:
    return _capture(nsys_bin, tmp_path_factory.mktemp("unended"))


@pytest.fixture(scope="module")
def stopped_report(stopped_capture: tuple[Path, Path]) -> Path:
    return stopped_capture[0]


@pytest.fixture(scope="module")
def stopped_export(stopped_capture: tuple[Path, Path]) -> Path:
    return stopped_capture[1]


def _export(nsys: str, report: Path, target: Path, *options: str) -> Path:
    proc = subprocess.run(
        [
            nsys,
            "export",
            "--type",
            "sqlite",
            "--force-overwrite=true",
            *options,
            "-o",
            str(target),
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0 and target.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return target


def _ends(export: Path) -> tuple[int, dict[str, int]]:
    """(ANALYSIS_DETAILS.duration, each range's recorded end by name, in the order they started)."""
    with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
        (duration,) = conn.execute("SELECT duration FROM ANALYSIS_DETAILS").fetchone()
        ends = dict(
            conn.execute(
                f'SELECT coalesce(s.value, e.text), e."end" FROM NVTX_EVENTS e LEFT JOIN StringIds s '
                f"ON s.id = e.textId WHERE e.eventType IN {RANGE_TYPES} ORDER BY e.start"
            ).fetchall()
        )
    conn.close()
    return int(duration), ends


def test_nsys_ends_a_range_never_ended_exactly_at_the_session_end(stopped_export: Path) -> None:
    duration, ends = _ends(stopped_export)
    assert set(ends) == {UNENDED.ENDED, *UNENDED.NEVER_ENDED, UNENDED.OTHER_NEVER_ENDED}
    for name in (*UNENDED.NEVER_ENDED, UNENDED.OTHER_NEVER_ENDED):
        assert ends[name] == duration, name  # not NULL, not later: the session's end itself
    assert ends[UNENDED.ENDED] < duration


def test_a_killed_program_keeps_its_first_ranges_ended_at_the_session_end(
    nsys_bin: str, tmp_path: Path
) -> None:
    """Killed inside its ranges (SIGKILL, as the OOM killer does), the program loses the NVTX events
    nsys's injection still held in its buffers, the last ones opened, and no wait before the kill makes
    that certain on a busy machine; what nsys kept ends as a program's exit leaves it."""
    _, export = _capture(nsys_bin, tmp_path, "kill")
    duration, ends = _ends(export)
    assert list(ends) == list(UNENDED.OPENED[: len(ends)])  # the first opened, in order
    for name in set(ends) - {UNENDED.ENDED}:
        assert ends[name] == duration, name
    if UNENDED.ENDED in list(ends)[:-1]:  # a range kept after it: so was its end
        assert ends[UNENDED.ENDED] < duration


def _ranges(analysis: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int]]:
    return {(r["domain"], r["name"]): (r["instances"], r["wall_ns"]) for r in analysis["ranges"]}


def test_ranges_never_ended_are_set_aside_and_the_rest_counted_as_nsys_does(
    stopped_export: Path, nsys_bin: str, tmp_path: Path
) -> None:
    proc, analysis = analyze_json(stopped_export, tmp_path / "out", NO_KERNELS)
    assert proc.returncode == 0, proc.stderr
    assert set(_ranges(analysis)) == {
        (UNENDED.DOMAIN, UNENDED.ENDED),
        (UNENDED.OTHER_DOMAIN, UNENDED.OTHER_NEVER_ENDED),  # another domain's: counted as nsys does
    }
    kept, expected = perfctl_nvtx_totals(analysis), run_nvtx_sum(nsys_bin, stopped_export, tmp_path)
    assert kept == {k: expected[k] for k in kept}  # (nsys also lists the ones set aside)
    never = ", ".join(sorted(UNENDED.NEVER_ENDED))
    assert (
        f"perfctl ranges {never} never ended (the program stopped inside): left out of every figure"
        in (analysis["warnings"])
    )
    assert not [w for w in analysis["warnings"] if "inconsistent" in w]


def test_an_export_with_normalized_times_is_the_same(
    stopped_report: Path, stopped_export: Path, reference_nsys: str, nsys_bin: str, tmp_path: Path
) -> None:
    """`nsys export --ts-normalize=true` (UTC since 1970: 1.8e18 ns) shifts every time and the
    session's end with it; the analysis is the same (it used to set every range aside)."""
    if nsys_version(reference_nsys)[0] < 2023:
        pytest.skip("nsys 2022.4 has no --ts-normalize")
    if nsys_version(reference_nsys) < nsys_version(nsys_bin):
        pytest.skip("the report is of a newer nsys than this one exports")
    normalized = _export(
        reference_nsys, stopped_report, tmp_path / "normalized.sqlite", "--ts-normalize=true"
    )
    _, ends = _ends(normalized)
    assert min(ends.values()) > 1 << 60  # really shifted
    proc, analysis = analyze_json(normalized, tmp_path / "out", NO_KERNELS)
    assert proc.returncode == 0, proc.stderr
    _, plain = analyze_json(stopped_export, tmp_path / "plain", NO_KERNELS)
    assert _ranges(analysis) == _ranges(plain)
    assert [w for w in analysis["warnings"] if "schema" not in w] == [
        w for w in plain["warnings"] if "schema" not in w
    ]


def test_a_range_ending_past_the_session_end_is_counted_and_said(
    stopped_export: Path, nsys_bin: str, tmp_path: Path
) -> None:
    export = copy(stopped_export, tmp_path / "later.sqlite")
    duration, _ = _ends(export)
    with sqlite3.connect(export) as conn:
        (outer,) = conn.execute(
            "SELECT id FROM StringIds WHERE value = ?", (UNENDED.NEVER_ENDED[0],)
        ).fetchone()
        conn.execute(f'UPDATE NVTX_EVENTS SET "end" = {duration + 1} WHERE textId = ?', (outer,))
    conn.close()
    proc, analysis = analyze_json(export, tmp_path / "out", NO_KERNELS)
    assert proc.returncode == 0, proc.stderr
    key = f"{UNENDED.DOMAIN}:{UNENDED.NEVER_ENDED[0]}"
    assert perfctl_nvtx_totals(analysis)[key] == run_nvtx_sum(nsys_bin, export, tmp_path)[key]
    assert [w for w in analysis["warnings"] if "inconsistent" in w] == [
        "the export is inconsistent: 1 NVTX ranges and 0 GPU activities end after the session's end "
        f"recorded in ANALYSIS_DETAILS ({duration:,} ns from its start); they are analyzed as recorded, "
        "as nsys stats counts them (a range the program never ended ends exactly at the session's end)"
    ]


def test_a_range_left_without_an_end_is_set_aside_as_never_ended(
    stopped_export: Path, nsys_bin: str, tmp_path: Path
) -> None:
    """Some nsys versions leave the end of a range the program never ended NULL instead of ending it at
    the session's end (none installed here does: the real export altered as they write it). perfctl's
    own such ranges are the same never-ended ones, set aside and said; another domain's is counted as
    `nsys stats` counts it (one instance, ended at the export's last NVTX time); no bad-row warning."""
    export = copy(stopped_export, tmp_path / "null-ends.sqlite")
    duration, _ = _ends(export)
    with sqlite3.connect(export) as conn:
        nulled = conn.execute(
            f'UPDATE NVTX_EVENTS SET "end" = NULL WHERE eventType IN {RANGE_TYPES} AND "end" = ?', (duration,)
        ).rowcount
    conn.close()
    assert nulled == len(UNENDED.NEVER_ENDED) + 1  # perfctl's never-ended ranges and the other domain's
    proc, analysis = analyze_json(export, tmp_path / "out", NO_KERNELS)
    assert proc.returncode == 0, proc.stderr
    assert set(_ranges(analysis)) == {
        (UNENDED.DOMAIN, UNENDED.ENDED),
        (UNENDED.OTHER_DOMAIN, UNENDED.OTHER_NEVER_ENDED),
    }
    kept, expected = perfctl_nvtx_totals(analysis), run_nvtx_sum(nsys_bin, export, tmp_path)
    assert kept == {k: expected[k] for k in kept}
    # nsys ends a NULL-ended range at the last time NVTX_EVENTS records (here the domains' destruction
    # as the program exits), and so does perfctl: one instance that long
    last = _count(export, 'SELECT max(max(start), max(coalesce("end", start))) FROM NVTX_EVENTS')
    opened = _count(
        export,
        f"SELECT e.start FROM NVTX_EVENTS e JOIN StringIds s ON s.id = e.textId "
        f"WHERE s.value = '{UNENDED.OTHER_NEVER_ENDED}'",
    )
    assert _ranges(analysis)[(UNENDED.OTHER_DOMAIN, UNENDED.OTHER_NEVER_ENDED)] == (1, last - opened)
    never = ", ".join(sorted(UNENDED.NEVER_ENDED))
    assert (
        f"perfctl ranges {never} never ended (the program stopped inside): left out of every figure"
        in analysis["warnings"]
    )
    assert not [w for w in analysis["warnings"] if "cannot be" in w or "inconsistent" in w], analysis[
        "warnings"
    ]


def _count(export: Path, sql: str) -> int:
    with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
        return int(conn.execute(sql).fetchone()[0])


@pytest.fixture(scope="module")
def tiled(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real tiny-model H200 export tiled three times in time (scripts/tile_export.py, as the
    benchmark makes its exports): ANALYSIS_DETAILS still holds the first copy's session."""
    tile = _module(REPO / "scripts" / "tile_export.py")
    base = decompress_fixture("h200-tiny-ocr2.sqlite.xz", export_dir)
    out = tmp_path_factory.mktemp("tiled") / "tiled.sqlite"
    assert tile.tile(base, out, 3) == 3 * 6101
    return out


def test_a_tiled_export_equals_nsys_stats_and_is_said_to_be_inconsistent(
    tiled: Path, reference_nsys: str, tmp_path: Path
) -> None:
    proc, analysis = analyze_json(tiled, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert perfctl_totals(analysis) == run_kern_sum(reference_nsys, tiled, tmp_path)
    assert perfctl_nvtx_totals(analysis) == run_nvtx_sum(reference_nsys, tiled, tmp_path)
    assert analysis["totals"]["kernels"] == 3 * 6101
    assert [p["sequence"] for p in analysis["pages"]] == [0, 1] * 3  # every copy's pages
    duration = _count(tiled, "SELECT duration FROM ANALYSIS_DETAILS")
    ranges = _count(
        tiled, f'SELECT count(*) FROM NVTX_EVENTS WHERE eventType IN {RANGE_TYPES} AND "end" > {duration}'
    )
    activities = sum(
        _count(tiled, f'SELECT count(*) FROM {t} WHERE "end" > {duration}') for t in ACTIVITY_TABLES
    )
    assert ranges == 2 * 34 and activities == 2 * (6101 + 359 + 23)  # the two later copies
    assert [w for w in analysis["warnings"] if "inconsistent" in w] == [
        f"the export is inconsistent: {ranges:,} NVTX ranges and {activities:,} GPU activities end after "
        f"the session's end recorded in ANALYSIS_DETAILS ({duration:,} ns from its start); they are "
        "analyzed as recorded, as nsys stats counts them (a range the program never ended ends exactly "
        "at the session's end)"
    ]


def test_every_reference_nsys_ends_ranges_at_the_session_end(tmp_path: Path, reference_nsys: str) -> None:
    """The same capture under each installed nsys generation: their exports agree on what a range
    never ended looks like."""
    if find_nsys("primary") == reference_nsys:
        pytest.skip("the primary nsys: test_nsys_ends_a_range_never_ended_exactly_at_the_session_end")
    _, export = _capture(reference_nsys, tmp_path)
    duration, ends = _ends(export)
    assert all(ends[n] == duration for n in UNENDED.NEVER_ENDED) and ends[UNENDED.ENDED] < duration
