"""A full disk, for real: small tmpfs filesystems (mounting needs root; skipped where it is refused).
perfctl says so in one line, presents no half-written file as complete (everything is written to a
temporary name and renamed; page records are appended whole or not at all), leaves no temporary file
behind, and keeps what was there. Once there is room again, `perfctl analyze` finishes the job."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_perfctl
from faults_support import Capture, fill, resize, small_filesystem
from perfctl.records import append_page_record, read_page_records


def test_analyze_into_a_full_disk_keeps_the_old_results(tmp_path: Path, matmul_export: Path) -> None:
    with small_filesystem(tmp_path / "fs", "1m") as fs:
        out = fs / "out"
        out.mkdir()
        (out / "analysis.json").write_text('{"previous": true}\n')
        (out / "report.html").write_text("<p>previous</p>\n")
        fill(fs)
        proc = run_perfctl("analyze", str(matmul_export), "--out-dir", str(out))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert proc.stderr.startswith(
            f"perfctl: error: cannot write {out / 'analysis.json'}: No space left on device"
        )
        assert "the disk is full (0 KiB free in" in proc.stderr
        assert json.loads((out / "analysis.json").read_text()) == {"previous": True}
        assert (out / "report.html").read_text() == "<p>previous</p>\n"
        assert sorted(p.name for p in out.iterdir()) == ["analysis.json", "report.html"]
        # room again: the same command writes both files whole
        (fs / "filler").unlink()
        assert run_perfctl("analyze", str(matmul_export), "--out-dir", str(out)).returncode == 0
        assert json.loads((out / "analysis.json").read_text())["stages"]


def test_page_records_are_appended_whole_or_not_at_all(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "fs", "64k") as fs:
        records = fs / "pages.jsonl"
        append_page_record(records, {"sequence": 0, "wall_ns": 1})
        before = records.read_bytes()
        fill(fs)
        with pytest.raises(OSError, match="No space left on device"):
            append_page_record(records, {"sequence": 1, "decode_step_ns": list(range(3000))})
        assert records.read_bytes() == before
        assert [r["sequence"] for r in read_page_records(records)] == [0]


def test_a_torn_last_record_is_not_a_finished_page(tmp_path: Path) -> None:
    records = tmp_path / "pages.jsonl"
    records.write_text('{"sequence": 0}\n{"sequence": 1}\n{"sequence": 2, "wall')
    assert [r["sequence"] for r in read_page_records(records)] == [0, 1]


@pytest.mark.nsys
@pytest.mark.slow
def test_capture_onto_a_full_disk_says_so_then_analyze_recovers(tmp_path: Path, nsys_bin: str) -> None:
    """1 MiB holds the run's small files and nsys's report, not its SQLite export: nsys says
    'Generated' over an empty run.sqlite (and exits 0); perfctl notices, exports again to a temporary
    name, and says the disk is full. With room again, `perfctl analyze` exports and analyzes."""
    with small_filesystem(tmp_path / "fs", "1m") as fs:
        run = fs / "run"
        capture = Capture("--out", str(run), "--num-pages", "1", "--max-new-tokens", "4", "--warmup", "0",
                          "--device", "cpu", "--nsys", nsys_bin)  # fmt: skip
        assert capture.finish() == 1, capture.stdout + capture.stderr
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["status"] == "failed"
        assert manifest["reason"].startswith(f"nsys could not export {run / 'run.nsys-rep'} to SQLite:")
        assert "database or disk is full" in manifest["reason"] and "the disk is full (" in manifest["reason"]
        assert f"status: failed ({manifest['reason']})" in capture.stdout
        assert not (run / "run.sqlite").exists(), "an empty export was left as the run's export"
        assert not [p.name for p in run.iterdir() if p.name.startswith(".")], "temporary files left"
        assert (run / "run.nsys-rep").is_file() and manifest["pages_completed"] == 1
        assert capture.processes() == {}
        resize(fs, "64m")
        analyzed = run_perfctl("analyze", str(run), "--format", "json", "--nsys", nsys_bin)
        assert analyzed.returncode == 0, analyzed.stderr
        assert json.loads(analyzed.stdout)["completion"]["complete"] == [0]


@pytest.mark.nsys
@pytest.mark.slow
def test_capture_onto_a_disk_too_full_for_the_report_keeps_the_stream(tmp_path: Path, nsys_bin: str) -> None:
    """300 KiB do not hold nsys's stream: nsys leaves it in its temporary folder and names it; the
    capture says where it is, and `perfctl analyze` imports it from there once there is room."""
    stream = None
    try:
        with small_filesystem(tmp_path / "fs", "300k") as fs:
            run = fs / "run"
            capture = Capture("--out", str(run), "--num-pages", "1", "--max-new-tokens", "4",
                              "--warmup", "0", "--device", "cpu", "--nsys", nsys_bin)  # fmt: skip
            assert capture.finish() == 1, capture.stdout + capture.stderr
            manifest = json.loads((run / "manifest.json").read_text())
            stream = Path(manifest["nsys"]["stream_left_at"])
            assert stream.suffix == ".qdstrm" and stream.is_file() and stream.parent != run
            assert manifest["reason"].startswith("nsys wrote no report into the run folder (")
            assert (
                "No space left on device" in manifest["reason"] and f"kept at {stream}" in manifest["reason"]
            )
            assert not (run / "run.nsys-rep").exists() and not (run / "run.sqlite").exists()
            assert capture.processes() == {}
            resize(fs, "64m")
            analyzed = run_perfctl("analyze", str(run), "--format", "json", "--nsys", nsys_bin)
            assert analyzed.returncode == 0, analyzed.stderr
            assert (run / "run.nsys-rep").is_file()
            assert json.loads(analyzed.stdout)["completion"]["complete"] == [0]
    finally:
        if stream is not None:
            stream.unlink(missing_ok=True)  # nsys's leftover in its temporary folder


def test_no_temporary_file_survives_a_failed_atomic_write(tmp_path: Path) -> None:
    from perfctl.errors import OutputFailed
    from perfctl.files import write_json_atomic

    with small_filesystem(tmp_path / "fs", "64k") as fs:
        target = fs / "manifest.json"
        write_json_atomic(target, {"status": "running"})
        fill(fs)
        with pytest.raises(OutputFailed, match="No space left on device"):
            write_json_atomic(target, {"status": "ok", "files": ["x" * 100] * 1000})
        assert json.loads(target.read_text()) == {"status": "running"}
        assert sorted(p.name for p in fs.iterdir()) == ["filler", "manifest.json"]
    shutil.rmtree(tmp_path / "fs", ignore_errors=True)
