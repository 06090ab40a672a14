"""An export whose session stop nsys did not record: its never-ended ranges end past the recorded end.

The fixture is a real capture (nsys 2024.2.3.38, scripts/probe_unended_range_ends.py --beside-nsys:
scripts/fixture_programs/unended_ranges.py with a second nsys session profiling beside it). nsys wrote
"Profiling has started." but no "Profiling has stopped." into DIAGNOSTIC_EVENT, recorded a session of
1.51 s (ANALYSIS_DETAILS.duration) for a program that ran 3.1 s, and ended the three perfctl ranges
the program never ended at its real end, 1.6 s past that duration (and lost the other domain's range).
Nothing in the export tells those ranges from ended ones, so perfctl counts them as `nsys stats` does
and says why the export is inconsistent, naming the stop that is missing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conftest import FIXTURES, decompress_fixture
from nsys_reference import nvtx_sum_totals, perfctl_nvtx_totals, run_nvtx_sum
from perfctl.nsys_export.nvtx import SESSION_STARTED, SESSION_STOPPED
from untrusted_support import analyze_json

STOPLESS = "cpu-nsys2024-stop-unrecorded"
NO_KERNELS = "--allow-no-kernels"  # (the program is a CPU one)


@pytest.fixture(scope="module")
def stopless(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return decompress_fixture(f"{STOPLESS}.sqlite.xz", tmp_path_factory.mktemp("stopless"))


def _recorded(export: Path) -> tuple[int, list[str], list[int]]:
    """(ANALYSIS_DETAILS.duration, the diagnostic messages, the ends of ranges past the duration)."""
    with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
        (duration,) = conn.execute("SELECT duration FROM ANALYSIS_DETAILS").fetchone()
        texts = [r[0] for r in conn.execute("SELECT text FROM DIAGNOSTIC_EVENT")]
        past = [r[0] for r in conn.execute('SELECT "end" FROM NVTX_EVENTS WHERE "end" > ?', (duration,))]
    conn.close()
    return int(duration), texts, past


def test_the_fixture_is_what_its_docstring_says(stopless: Path) -> None:
    duration, texts, past = _recorded(stopless)
    assert SESSION_STARTED in texts and SESSION_STOPPED not in texts
    assert duration == 1_511_655_146 and len(past) == 3 and len(set(past)) == 1  # one shared end
    assert past[0] - duration == 1_601_800_380


def test_its_ranges_are_counted_as_nsys_stats_counts_them_and_the_missing_stop_is_named(
    stopless: Path, tmp_path: Path
) -> None:
    proc, analysis = analyze_json(stopless, tmp_path / "out", NO_KERNELS)
    assert proc.returncode == 0, proc.stderr
    recorded = nvtx_sum_totals((FIXTURES / f"{STOPLESS}.nvtx_sum.csv").read_text())
    assert perfctl_nvtx_totals(analysis) == recorded  # nsys 2024.2's own nvtx_sum of this export
    assert [w for w in analysis["warnings"] if "inconsistent" in w] == [
        "the export is inconsistent: nsys did not record the stop of this session (no 'Profiling has "
        "stopped.' in DIAGNOSTIC_EVENT; seen with nsys 2024.2 when another nsys session ran at the same "
        "time), and 3 NVTX ranges and 0 GPU activities end after the session's end it recorded in "
        "ANALYSIS_DETAILS (1,511,655,146 ns from its start); they are analyzed as recorded, as nsys "
        "stats counts them, and ranges the program never ended cannot be told from ended ones here"
    ]
    assert not [
        w for w in analysis["warnings"] if "never ended (the program stopped inside)" in w
    ]  # none set aside


@pytest.mark.nsys
def test_every_reference_nsys_counts_them_alike(stopless: Path, reference_nsys: str, tmp_path: Path) -> None:
    proc, analysis = analyze_json(stopless, tmp_path / "out", NO_KERNELS)
    assert proc.returncode == 0, proc.stderr
    assert perfctl_nvtx_totals(analysis) == run_nvtx_sum(reference_nsys, stopless, tmp_path)
