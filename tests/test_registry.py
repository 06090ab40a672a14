"""The run registry (profiles/index.db) with real run folders: the H100 fixtures' manifests and an
analysis of the tiny-model H100 run. Real captures recording themselves: test_compare_captures.py."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, copy_run_fixture, run_perfctl
from perfctl import registry

TINY = FIXTURES / "h100-tiny-ocr2-all"


def _copy_run(source: Path, target: Path) -> Path:
    return copy_run_fixture(source.name, target)


def _manifest(run: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run / "manifest.json").read_text())
    return data


def _rows(profiles: Path) -> dict[str, dict[str, Any]]:
    return {r["run_id"]: r for r in registry.list_runs(profiles)}


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A profiles folder holding the tiny H100 run (analyzed through the CLI) and the two full-size
    H100 runs (recorded from their manifests, as their captures recorded them at the end)."""
    root = tmp_path_factory.mktemp("profiles")
    tiny = _copy_run(TINY, root / "tiny-h100")
    proc = run_perfctl("analyze", str(tiny), "--profiles", str(root))
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    for name in ("h100-full-ocr2-run", "h100-full-ocr2-clean10"):
        run = _copy_run(FIXTURES / name, root / name)
        assert registry.record_capture(run, _manifest(run), root)
    return root


def test_analysis_records_its_headline_metrics(profiles: Path) -> None:
    row = _rows(profiles)["tiny-h100"]
    analysis = json.loads((profiles / "tiny-h100" / "analysis.json").read_text())
    stats, eff = analysis["timing"]["statistics"], analysis["efficiency"]
    assert row["status"] == "ok" and row["reason"] is None
    assert (
        row["model"] == "deepseek-ocr2-tiny"
        and row["gpu"] == "NVIDIA H100 80GB HBM3"
        and row["device"] == "cuda"
    )
    assert row["path"] == str((profiles / "tiny-h100").resolve())
    assert row["analysis_path"] == str((profiles / "tiny-h100" / "analysis.json").resolve())
    assert row["started_at"] == "2026-11-27T01:55:57.134+00:00" and row["analyzed_at"] > row["finished_at"]
    assert row["time_source"] == "clean" and (row["pages_completed"], row["pages_expected"]) == (2, 2)
    for stage in ("vision", "prefill", "decode"):
        assert row[f"{stage}_mean_ns"] == pytest.approx(stats["stages"][stage]["mean"])
        assert row[f"{stage}_mfu"] == pytest.approx(eff["stages"][stage]["mfu"])
    assert row["page_mean_ns"] == pytest.approx(stats["page"]["mean"])
    assert row["page_mfu"] == pytest.approx(eff["page"]["mfu"])
    assert row["kernel_count"] == analysis["totals"]["kernels"] == 6101
    assert row["wall_ns"] == sum(p["wall_ns"] for p in analysis["pages"])


def test_runs_lists_and_filters(profiles: Path) -> None:
    def listed(*args: str) -> list[str]:
        proc = run_perfctl("runs", "--profiles", str(profiles), "--format", "json", *args)
        assert proc.returncode == 0, proc.stderr
        return [r["run_id"] for r in json.loads(proc.stdout)]

    everything = listed()
    # newest first: the tiny run started at 01:55, the full-size ones at 01:01 and later that night
    assert set(everything) == {"tiny-h100", "h100-full-ocr2-run", "h100-full-ocr2-clean10"}
    assert everything == sorted(everything, key=lambda r: _rows(profiles)[r]["started_at"], reverse=True)
    assert set(listed("--model", "deepseek-ocr2")) == {"h100-full-ocr2-run", "h100-full-ocr2-clean10"}
    assert listed("--model", "deepseek-ocr2-tiny") == ["tiny-h100"]
    assert len(listed("--gpu", "h100")) == 3 and listed("--gpu", "H200") == []
    assert len(listed("--status", "ok")) == 3 and listed("--status", "failed") == []
    since = _rows(profiles)["tiny-h100"]["started_at"]
    assert listed("--since", since) == ["tiny-h100"] and len(listed("--since", "2026-11-27")) == 3
    assert listed("--since", "2030-01-01") == []
    text = run_perfctl("runs", "--profiles", str(profiles))
    assert text.returncode == 0 and "tiny-h100" in text.stdout and "23.654 ms" in text.stdout  # decode mean
    none = run_perfctl("runs", "--profiles", str(profiles), "--gpu", "B200")
    assert none.returncode == 0 and "matches" in none.stdout


def test_runs_bad_input(profiles: Path, tmp_path: Path) -> None:
    for args, needle in (
        (["--profiles", str(tmp_path / "nope")], "no such profiles folder"),
        (["--profiles", str(profiles), "--since", "yesterday"], "--since"),
        (["--profiles", str(profiles), "--status", "done"], "--status must be one of"),
        (["--profiles", str(profiles), "--format", "xml"], "--format"),
    ):
        proc = run_perfctl("runs", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and needle in proc.stderr, proc.stderr
    empty = run_perfctl("runs", "--profiles", str(tmp_path))
    assert empty.returncode == 0 and "no runs recorded" in empty.stdout
    assert not (tmp_path / "index.db").exists(), "listing never creates a registry"


def test_a_registry_that_cannot_be_written_is_a_warning(tmp_path: Path) -> None:
    run = _copy_run(TINY, tmp_path / "tiny")
    garbage = b"not a database, whatever it is " * 64
    (tmp_path / "index.db").write_bytes(garbage)
    proc = run_perfctl("analyze", str(run), "--profiles", str(tmp_path))
    assert proc.returncode == 0 and (run / "analysis.json").is_file()
    assert "perfctl: warning: run registry" in proc.stderr and "not updated" in proc.stderr
    assert (tmp_path / "index.db").read_bytes() == garbage, "a damaged registry is left as it was"
    listing = run_perfctl("runs", "--profiles", str(tmp_path))
    assert listing.returncode == 2 and "not a readable run registry" in listing.stderr
    assert len(listing.stderr.strip().splitlines()) == 1


def test_a_new_capture_of_a_run_id_starts_a_fresh_row(tmp_path: Path) -> None:
    run = _copy_run(FIXTURES / "h100-full-ocr2-run", tmp_path / "full")
    manifest = _manifest(run)
    assert registry.record_capture(run, manifest, tmp_path)
    analysis = {"run": manifest} | _clean_only(run)
    assert registry.record_analysis(run, analysis, run / "analysis.json", tmp_path)
    assert _rows(tmp_path)["full"]["decode_mean_ns"] is not None
    restarted = manifest | {"status": "running", "reason": None, "finished_at": None}
    assert registry.record_capture(run, restarted, tmp_path, started=True)  # what --force does
    row = _rows(tmp_path)["full"]
    assert row["status"] == "running" and row["decode_mean_ns"] is None and row["analyzed_at"] is None


def _clean_only(run: Path) -> dict[str, Any]:
    from perfctl.commands.compare import clean_pass_only

    partial = clean_pass_only(run)
    assert partial is not None
    return partial


def test_a_capture_ended_by_an_exception(tmp_path: Path) -> None:
    run = _copy_run(FIXTURES / "h100-full-ocr2-run", tmp_path / "full")
    running = _manifest(run) | {"status": "running", "reason": None}
    (run / "manifest.json").write_text(json.dumps(running))
    assert registry.record_capture_failure(run, running, KeyboardInterrupt(), tmp_path)
    assert _rows(tmp_path)["full"]["status"] == "interrupted"
    assert registry.record_capture_failure(run, running, OSError(28, "No space left on device"), tmp_path)
    row = _rows(tmp_path)["full"]
    assert row["status"] == "failed" and row["reason"] == "OSError: [Errno 28] No space left on device"
    # a manifest that already says how the run ended is the truth
    ended = running | {"status": "interrupted", "reason": "stopped by SIGTERM"}
    (run / "manifest.json").write_text(json.dumps(ended))
    assert registry.record_capture_failure(run, running, RuntimeError("late"), tmp_path)
    assert _rows(tmp_path)["full"]["reason"] == "stopped by SIGTERM"


WRITER = """
import json, sys
from pathlib import Path
from perfctl import registry
root, tag, count = Path(sys.argv[1]), sys.argv[3], int(sys.argv[4])
source = json.loads(Path(sys.argv[2]).read_text())
for i in range(count):
    run = root / f"{tag}-{i}"
    run.mkdir()
    ok = registry.record_capture(run, source | {"run_id": run.name}, root, started=True)
    failed = source | {"run_id": run.name, "status": "failed", "reason": tag}
    ok = ok and registry.record_capture(run, failed, root)
    if not ok:
        sys.exit(1)
"""


def test_concurrent_writers(tmp_path: Path) -> None:
    """Six processes record 15 runs each, twice per run, into one registry at the same time."""
    source = FIXTURES / "h100-full-ocr2-clean10" / "manifest.json"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(source), f"w{n}", "15"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(6)
    ]
    for w in writers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0 and "warning" not in err, err
    rows = _rows(tmp_path)
    assert len(rows) == 90 and all(
        r["status"] == "failed" and r["run_id"].startswith(r["reason"]) for r in rows.values()
    )
    with sqlite3.connect(tmp_path / "index.db") as conn:
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)


# --- where the registry is written: only in a profiles folder perfctl was pointed to or made ---


def _notes(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("perfctl: note: run registry not updated")]


def test_a_run_folder_outside_any_profiles_folder_writes_no_registry(tmp_path: Path) -> None:
    """Before: analyze created index.db in the run folder's parent, whatever that was."""
    elsewhere = tmp_path / "copies"
    run = _copy_run(TINY, elsewhere / "tiny")
    proc = run_perfctl("analyze", str(run), cwd=tmp_path)  # --profiles: ./profiles, not `copies`
    assert proc.returncode == 0, proc.stderr
    (note,) = _notes(proc.stderr)
    assert f"{run} is not in the profiles folder profiles (--profiles)" in note
    assert f"{elsewhere} holds no index.db" in note
    assert list(tmp_path.rglob("index.db")) == [] and (run / "analysis.json").is_file()


def test_a_folder_holding_perfcts_registry_is_a_profiles_folder(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    first, second = _copy_run(TINY, root / "first"), _copy_run(TINY, root / "second")
    assert run_perfctl("analyze", str(first), "--profiles", str(root)).returncode == 0
    # pointed elsewhere, but `lab` already holds perfctl's registry: the second run is recorded there
    proc = run_perfctl("analyze", str(second), "--profiles", str(tmp_path / "other"))
    assert proc.returncode == 0 and _notes(proc.stderr) == [] and "warning" not in proc.stderr
    assert set(_rows(root)) == {"first", "second"} and not (tmp_path / "other").exists()


def test_an_index_db_that_is_not_perfcts_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    run = _copy_run(TINY, folder / "tiny")
    with sqlite3.connect(folder / "index.db") as conn:  # someone else's database of that name
        conn.execute("create table books (title text)")
    before = (folder / "index.db").read_bytes()
    proc = run_perfctl("analyze", str(run), "--profiles", str(tmp_path / "profiles"))
    assert proc.returncode == 0, proc.stderr
    (note,) = _notes(proc.stderr)
    assert "holds an index.db that is no perfctl registry (no 'runs' table of runs)" in note
    assert (folder / "index.db").read_bytes() == before


# --- `perfctl runs` on a registry it cannot trust: one line, exit 2 ---


def _runs_refused(profiles: Path, *needles: str) -> None:
    from input_integrity import assert_one_line_error

    assert_one_line_error(run_perfctl("runs", "--profiles", str(profiles)), 2, *needles)
    assert_one_line_error(run_perfctl("runs", "--profiles", str(profiles), "--format", "json"), 2, *needles)


def test_runs_on_a_registry_with_text_in_an_integer_column(profiles: Path, tmp_path: Path) -> None:
    copy = tmp_path / "profiles"
    copy.mkdir()
    shutil.copy(profiles / "index.db", copy / "index.db")
    with sqlite3.connect(copy / "index.db") as conn:
        conn.execute("update runs set pages_completed = 'two' where run_id = 'tiny-h100'")
    before = (copy / "index.db").read_bytes()
    _runs_refused(copy, "is not a readable run registry", "run 'tiny-h100'", "pages_completed", "'two'")
    assert (copy / "index.db").read_bytes() == before
    with sqlite3.connect(copy / "index.db") as conn:  # bytes (a BLOB) where the column is text
        conn.execute("update runs set pages_completed = 2, started_at = x'00ff' where run_id = 'tiny-h100'")
    _runs_refused(copy, "has b'\\x00\\xff' in started_at, a text column")


def test_runs_on_an_empty_file_a_folder_or_another_database(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "index.db").write_bytes(b"")
    _runs_refused(empty, f"{empty / 'index.db'} is not a readable run registry: an empty file (0 bytes)")
    assert (empty / "index.db").read_bytes() == b""
    folder = tmp_path / "folder"
    (folder / "index.db").mkdir(parents=True)
    _runs_refused(folder, "is not a readable run registry: a folder, not a file")
    other = tmp_path / "other"
    other.mkdir()
    with sqlite3.connect(other / "index.db") as conn:
        conn.execute("create table books (title text)")
    _runs_refused(other, "is not a readable run registry: no 'runs' table of runs")
