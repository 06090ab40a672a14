"""`perfctl analyze RUN` of run folders whose ncu/ holds a report, through the CLI, on real files:
a report that is not the run's own, one that cannot be read, and damaged ncu/ records beside a good one."""

from __future__ import annotations

import json
import lzma
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES, copy_run_fixture, run_perfctl

pytest.importorskip("ncu_report", reason="NVIDIA's ncu-report package reads .ncu-rep files")


def test_a_report_from_another_gpu_is_named_as_not_this_runs(tmp_path: Path) -> None:
    """The known-work H200 report dropped into the ncu/ of an H100 run: analyzed (its kernels ran in no
    perfctl stage: counted, not placed), kernels.md and the report section written, and the mismatch
    said: the figures are not this run's."""
    run = copy_run_fixture("h100-tiny-ocr2-all", tmp_path / "run")
    (run / "ncu").mkdir()
    with (
        lzma.open(FIXTURES / "h200-ncu-known-work.ncu-rep.xz") as src,
        (run / "ncu" / "run.ncu-rep").open("wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    before = (run / "ncu" / "run.ncu-rep").read_bytes()
    proc = run_perfctl("analyze", str(run), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    ncu = json.loads(proc.stdout)["ncu"]
    assert len(ncu["kernels"]) == 3 and ncu["stages"] == []
    warnings = " ".join(ncu["warnings"])
    assert "3 profiled kernels ran outside perfctl's stage ranges" in warnings
    assert "ran on NVIDIA H200, this run on NVIDIA H100 80GB HBM3" in warnings
    assert (run / "kernels.md").is_file() and '<section id="ncu">' in (run / "report.html").read_text()
    assert (run / "ncu" / "run.ncu-rep").read_bytes() == before


def test_an_unreadable_report_leaves_the_rest_of_the_analysis_standing(tmp_path: Path) -> None:
    run = copy_run_fixture("h100-tiny-ocr2-all", tmp_path / "run")
    (run / "ncu").mkdir()
    (run / "ncu" / "run.ncu-rep").write_bytes(b"NVR\x00 and then nothing a report holds")
    proc = run_perfctl("analyze", str(run), "--format", "json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    analysis = json.loads(proc.stdout)
    assert "ncu" not in analysis and analysis["stages"]
    assert any(w.startswith("the Nsight Compute pass is left out: ") for w in analysis["warnings"])
    assert not (run / "kernels.md").exists()


def test_damaged_ncu_records_are_named_and_the_pass_stands(tmp_path: Path) -> None:
    """The real H200 run with its ncu/selection.json cut short (as a full disk leaves it) and a
    wrong-typed field in ncu/command.json: exit 0, no traceback, each file named in a warning with
    what is wrong in it, the rest of the pass as it was; the files themselves are not changed."""
    run = copy_run_fixture("h200-full-ocr2-ncu", tmp_path / "run")
    with (
        lzma.open(FIXTURES / "h200-full-ocr2-ncu" / "ncu" / "run.ncu-rep.xz") as src,
        (run / "ncu" / "run.ncu-rep").open("wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    selection, command = run / "ncu" / "selection.json", run / "ncu" / "command.json"
    selection.write_bytes(selection.read_bytes()[:1000])
    record = json.loads(command.read_text())
    command.write_text(json.dumps({**record, "clock_control": 5}))
    damaged = selection.read_bytes(), command.read_bytes()
    proc = run_perfctl("analyze", str(run), "--format", "json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    ncu = json.loads(proc.stdout)["ncu"]
    assert f"{selection} is unusable (not JSON: " in "\n".join(ncu["warnings"])
    assert (
        f"{command} has fields of the wrong type, left out as unknown: clock_control is 5, not text"
        in (ncu["warnings"])
    )
    assert "selection" not in ncu and ncu["clock_control"] is None
    assert ncu["command"] == record["command"]
    assert [s["stage"] for s in ncu["stages"]] == ["vision", "prefill", "decode"]
    assert "selection.json" in (run / "kernels.md").read_text()
    assert (selection.read_bytes(), command.read_bytes()) == damaged
