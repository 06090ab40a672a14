"""`.nsys-rep` inputs through the real command line, with real reports of two tiny CPU captures: a
report nsys cannot read is bad input (exit 2, one line naming the file and nsys's reason, nothing
written); a `.sqlite` beside a report is read only when something ties it to that report (the
capture's manifest, or perfctl's own `.source.json` record of its export), else the report is
exported again under perfctl's own name, the other file left byte for byte; `--out-dir` takes the
export too and the input folder is only read. Figures of what is analyzed equal `nsys stats`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import decompress_fixture, run_perfctl
from input_integrity import assert_one_line_error, sha256, tree_digest
from nsys_reference import perfctl_nvtx_totals, run_nvtx_sum

pytestmark = [pytest.mark.nsys, pytest.mark.slow]

TINY_CAPTURE = ("--device", "cpu", "--num-pages", "1", "--warmup", "0")


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> dict[str, Path]:
    """Two real run folders (2 and 3 new tokens: different reports) made by perfctl capture."""
    root = tmp_path_factory.mktemp("profiles")
    runs = {}
    for name, tokens in (("two", "2"), ("three", "3")):
        proc = run_perfctl(
            "capture", *TINY_CAPTURE, "--max-new-tokens", tokens, "--profiles", str(root),
            "--run-id", name, "--nsys", nsys_bin,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[name] = root / name
    return runs


def _analyze(target: Path, *args: str, nsys: str) -> dict[str, Any]:
    proc = run_perfctl(
        "analyze", str(target), "--format", "json", "--allow-no-kernels", "--nsys", nsys, *args
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    analysis: dict[str, Any] = json.loads(proc.stdout)
    return analysis


@pytest.mark.parametrize("damage", ["random-bytes", "truncated", "empty"])
def test_a_report_nsys_cannot_read_is_bad_input(
    tmp_path: Path, captures: dict[str, Path], nsys_bin: str, damage: str
) -> None:
    real = (captures["two"] / "run.nsys-rep").read_bytes()
    data = {"random-bytes": os.urandom(8192), "truncated": real[: len(real) // 2], "empty": b""}[damage]
    report = tmp_path / "broken.nsys-rep"
    report.write_bytes(data)
    before = tree_digest(tmp_path)
    proc = run_perfctl("analyze", str(report), "--nsys", nsys_bin)
    assert_one_line_error(proc, 2, f"nsys could not export {report} to SQLite:", "(nsys exit 1)")
    assert tree_digest(tmp_path) == before, "nothing written beside a report nsys refused"
    # the same report as a run folder's, with no export beside it
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(report, run / "run.nsys-rep")
    before = tree_digest(run)
    proc = run_perfctl("analyze", str(run), "--nsys", nsys_bin)
    assert_one_line_error(proc, 2, f"nsys could not export {run / 'run.nsys-rep'} to SQLite:")
    assert tree_digest(run) == before


def test_the_captures_own_export_is_read_as_it_is(
    tmp_path: Path, captures: dict[str, Path], nsys_bin: str
) -> None:
    run = captures["two"]
    export_before = sha256(run / "run.sqlite")
    analysis = _analyze(run, "--out-dir", str(tmp_path / "out"), nsys=nsys_bin)
    assert analysis["export"]["path"] == str(run / "run.sqlite")
    assert "the run's own export" in analysis["export"]["source"]
    assert sha256(run / "run.sqlite") == export_before and not list(run.glob("*.source.json"))


def test_an_unrelated_sqlite_beside_a_report_is_not_read(
    tmp_path: Path, captures: dict[str, Path], nsys_bin: str
) -> None:
    """Before: x.sqlite newer than x.nsys-rep was analyzed as its export, silently."""
    report = tmp_path / "x.nsys-rep"
    shutil.copy(captures["two"] / "run.nsys-rep", report)
    stale = tmp_path / "x.sqlite"
    decompress_fixture("h200-tiny-ocr2.sqlite.xz", tmp_path)
    (tmp_path / "h200-tiny-ocr2.sqlite").rename(stale)  # a real export, of another program entirely
    os.utime(stale, ns=(report.stat().st_mtime_ns + 10**9,) * 2)
    stale_before = sha256(stale)
    analysis = _analyze(report, nsys=nsys_bin)
    own = tmp_path / "x.perfctl.sqlite"
    assert analysis["export"]["path"] == str(own)
    assert "exported now from" in analysis["export"]["source"]
    assert "x.sqlite there not read" in analysis["export"]["source"]
    assert sha256(stale) == stale_before and (tmp_path / "x.perfctl.sqlite.source.json").is_file()
    # what was read is the report's own content: the run's ranges, as nsys stats counts them
    reference = _analyze(captures["two"], "--out-dir", str(tmp_path / "ref"), nsys=nsys_bin)
    assert analysis["ranges"] == reference["ranges"]
    assert perfctl_nvtx_totals(analysis) == run_nvtx_sum(nsys_bin, own, tmp_path)
    # the next analysis reads perfctl's export again, without exporting
    mtime = own.stat().st_mtime_ns
    again = _analyze(report, nsys=nsys_bin)
    assert "exported by perfctl from" in again["export"]["source"] and own.stat().st_mtime_ns == mtime


def test_a_report_replaced_is_exported_again(
    tmp_path: Path, captures: dict[str, Path], nsys_bin: str
) -> None:
    """perfctl's own export of an earlier report under the same name is not provably fresh once the
    report changed: exported again over perfctl's own file; a file perfctl did not write never."""
    report = tmp_path / "y.nsys-rep"
    shutil.copy(captures["two"] / "run.nsys-rep", report)
    first = _analyze(report, nsys=nsys_bin)
    assert first["export"]["path"] == str(tmp_path / "y.sqlite")
    shutil.copy(captures["three"] / "run.nsys-rep", report)  # another capture under the same name
    second = _analyze(report, nsys=nsys_bin)
    assert (
        second["export"]["path"] == str(tmp_path / "y.sqlite")
        and "exported now" in second["export"]["source"]
    )
    assert [s["instances"] for s in first["stages"] if s["stage"] == "decode"] == [1]
    assert [s["instances"] for s in second["stages"] if s["stage"] == "decode"] == [2]
    # the user edits perfctl's export: it is theirs now, and the next export goes beside it
    with (tmp_path / "y.sqlite").open("ab") as fh:
        fh.write(b"\0" * 4096)
    edited = sha256(tmp_path / "y.sqlite")
    third = _analyze(report, nsys=nsys_bin)
    assert third["export"]["path"] == str(tmp_path / "y.perfctl.sqlite")
    assert sha256(tmp_path / "y.sqlite") == edited


def test_out_dir_takes_the_export_and_the_input_folder_is_only_read(
    tmp_path: Path, captures: dict[str, Path], nsys_bin: str
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(captures["two"] / "run.nsys-rep", inputs / "z.nsys-rep")
    before = tree_digest(inputs)
    out = tmp_path / "out"
    analysis = _analyze(inputs / "z.nsys-rep", "--out-dir", str(out), nsys=nsys_bin)
    assert analysis["export"]["path"] == str(out / "z.sqlite")
    assert tree_digest(inputs) == before
    assert {p.name for p in out.iterdir()} >= {"z.sqlite", "z.sqlite.source.json", "analysis.json"}


def test_a_run_folders_export_replaced_by_another_is_not_read(
    tmp_path: Path, captures: dict[str, Path], nsys_bin: str
) -> None:
    """run.sqlite of a different capture dropped into a run folder: its size is not the one the
    manifest recorded, so the report is exported again under perfctl's name."""
    run = tmp_path / "two"
    shutil.copytree(captures["two"], run)
    shutil.copy(captures["three"] / "run.sqlite", run / "run.sqlite")
    foreign = sha256(run / "run.sqlite")
    analysis = _analyze(run, nsys=nsys_bin)
    assert analysis["export"]["path"] == str(run / "run.perfctl.sqlite")
    assert [s["instances"] for s in analysis["stages"] if s["stage"] == "decode"] == [1]
    assert sha256(run / "run.sqlite") == foreign
