"""nsys itself fails, for real: an nsys whose importer is missing (Debian's packaging bug, rebuilt here
as a copy of the installed nsys without its host folder) leaves a .qdstrm and no report; nsys's own
process is killed mid-run (its agent finishes the report once the driver ends); nsys is killed with its
agent (the profile is lost, and the capture says so). No process of the run survives any of these.

The kills land while the driver is held at a gate before its first page (its run is certainly ahead of
it, whatever the machine's speed); the gate opens after the kill and the driver runs every page."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_perfctl
from faults_support import Capture, DriverGate

pytestmark = [pytest.mark.nsys, pytest.mark.slow]

PAGES, NEW_TOKENS = 3, 12


@pytest.fixture(scope="module")
def nsys_without_importer(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> Path:
    """The installed nsys's target folder rebuilt beside no host folder: the nsys binary copied (so that
    it finds its files next to itself), everything else linked. nsys runs, and finds no importer."""
    real = Path(nsys_bin).resolve()
    target = tmp_path_factory.mktemp("nsys-no-importer") / real.parent.name
    target.mkdir()
    for entry in real.parent.iterdir():
        if entry.name == real.name:
            shutil.copy2(entry, target / entry.name)
        else:
            (target / entry.name).symlink_to(entry)
    assert not (target.parent / "host-linux-x64").exists()
    return target / real.name


def _capture(run: Path, nsys: str, *more: str, env: dict[str, str] | None = None) -> Capture:
    return Capture(
        "--out", str(run), "--num-pages", str(PAGES), "--max-new-tokens", str(NEW_TOKENS),
        "--warmup", "0", "--device", "cpu", "--nsys", nsys, *more, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def without_importer(
    tmp_path_factory: pytest.TempPathFactory, nsys_without_importer: Path
) -> tuple[Path, Capture]:
    run = tmp_path_factory.mktemp("noimp") / "run"
    capture = _capture(run, str(nsys_without_importer))
    capture.finish()
    return run, capture


def test_missing_importer_is_said_plainly_and_the_stream_kept(without_importer: tuple[Path, Capture]) -> None:
    run, capture = without_importer
    assert capture.proc.returncode == 1, capture.stdout + capture.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["nsys"]["importer_found"] is False
    assert manifest["reason"].startswith("nsys wrote run.qdstrm but no report: its importer ")
    assert "QdstrmImporter is missing" in manifest["reason"] and "perfctl analyze" in manifest["reason"]
    assert f"status: failed ({manifest['reason']})" in capture.stdout
    assert (run / "run.qdstrm").stat().st_size > 0 and not (run / "run.nsys-rep").exists()
    assert manifest["pages_completed"] == PAGES
    assert capture.processes() == {}


def test_analyze_imports_the_stream_once_the_importer_is_there(
    without_importer: tuple[Path, Capture], nsys_without_importer: Path, nsys_bin: str, tmp_path: Path
) -> None:
    run, _ = without_importer
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    # still the nsys without importer: it says what is missing, and writes nothing
    refused = run_perfctl("analyze", str(copy), "--nsys", str(nsys_without_importer))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "needs nsys's importer, which is missing:" in refused.stderr and "QdstrmImporter" in refused.stderr
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in run.iterdir())
    # a complete nsys: the import is retried, then the export, then the analysis
    imported = run_perfctl("analyze", str(copy), "--nsys", nsys_bin, "--format", "json")
    assert imported.returncode == 0, imported.stderr
    assert (copy / "run.nsys-rep").is_file() and (copy / "run.sqlite").is_file()
    assert not [p.name for p in copy.iterdir() if p.name.startswith(".")], "temporary files left"
    analysis = json.loads(imported.stdout)
    assert analysis["completion"]["complete"] == list(range(PAGES))
    assert {s["stage"]: s["instances"] for s in analysis["stages"]}["decode"] == PAGES * (NEW_TOKENS - 1)


def test_names_with_shell_syntax_reach_nsys_as_plain_arguments(
    without_importer: tuple[Path, Capture], nsys_bin: str, tmp_path: Path
) -> None:
    """A report whose name is shell syntax is exported by nsys as a file name: child processes take
    argument lists, never a shell string."""
    run, _ = without_importer
    stream = tmp_path / "r.qdstrm"
    shutil.copy(run / "run.qdstrm", stream)
    # a .qdstrm given by itself is imported beside itself
    imported = run_perfctl("analyze", str(stream), "--nsys", nsys_bin, "--allow-no-kernels")
    assert imported.returncode == 0, imported.stderr
    hostile = tmp_path / "$(touch PWNED); `touch PWNED2` 'x' \"y\".nsys-rep"
    shutil.copy(stream.with_suffix(".nsys-rep"), hostile)
    proc = run_perfctl("analyze", str(hostile), "--nsys", nsys_bin, "--allow-no-kernels", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert hostile.with_suffix(".sqlite").is_file()
    assert not list(tmp_path.glob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))


def _kill_then_open(capture: Capture, gate: DriverGate, which: tuple[str, ...]) -> None:
    """Kill the capture's processes whose command lines hold one of `which` while its driver waits at
    the gate (each of them once it runs), then let the driver run."""
    for needle in which:
        os.kill(capture.wait_for_process(needle), signal.SIGKILL)
    gate.open()


@pytest.fixture(scope="module")
def nsys_killed(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, Capture]:
    """`nsys profile` itself killed mid-run; its agent and the driver carry on."""
    folder = tmp_path_factory.mktemp("nsyskill")
    run, gate = folder / "run", DriverGate(folder / "gate")
    capture = _capture(run, nsys_bin, "--driver-python", str(gate.python))
    gate.wait_for_driver(capture)  # nsys launched it: nsys's whole session runs
    _kill_then_open(capture, gate, (" profile --trace=",))
    capture.finish()
    return run, capture


def test_killed_nsys_process_the_agent_finishes_the_report(
    nsys_killed: tuple[Path, Capture], tmp_path: Path
) -> None:
    run, capture = nsys_killed
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["nsys"]["exit_code"] == -signal.SIGKILL
    assert capture.proc.returncode == 0 and manifest["status"] == "ok", manifest["reason"]
    assert "killed by SIGKILL; its agent wrote the report" in manifest["nsys"]["note"]
    assert manifest["pages_completed"] == PAGES and (run / "run.sqlite").is_file()
    assert capture.processes() == {}
    analyzed = run_perfctl("analyze", str(run), "--format", "json", "--out-dir", str(tmp_path))
    assert analyzed.returncode == 0, analyzed.stderr
    assert json.loads(analyzed.stdout)["completion"]["complete"] == list(range(PAGES))


@pytest.fixture(scope="module")
def nsys_and_agent_killed(
    tmp_path_factory: pytest.TempPathFactory, nsys_bin: str
) -> Iterator[tuple[Path, Capture, list[Path]]]:
    """`nsys profile` and its agent killed mid-run: nothing is left to write the report. The agent's
    unfinished stream stays in nsys's temporary folder ($TMPDIR: one of this test's own, so that a
    stream there is this capture's whatever else runs nsys on the machine)."""
    folder = tmp_path_factory.mktemp("nsysagentkill")
    run, gate, streams = folder / "run", DriverGate(folder / "gate"), folder / "tmp"
    streams.mkdir()
    env = dict(os.environ, TMPDIR=str(streams))
    capture = _capture(run, nsys_bin, "--driver-python", str(gate.python), env=env)
    gate.wait_for_driver(capture)  # nsys launched it: nsys's whole session runs
    _kill_then_open(capture, gate, (" profile --trace=", "--start-agent"))
    capture.finish()
    yield run, capture, sorted(streams.glob("nsys-report-*.qdstrm"))


def test_killed_nsys_and_agent_lose_the_profile_and_say_so(
    nsys_and_agent_killed: tuple[Path, Capture, list[Path]], tmp_path: Path, nsys_bin: str
) -> None:
    run, capture, left = nsys_and_agent_killed
    assert capture.proc.returncode == 1, capture.stdout + capture.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    # the driver, left running by nsys, ran to its end: every page's host-side clocks are kept
    assert manifest["reason"] == (
        f"nsys was killed by SIGKILL and wrote no report: the profile is lost; pages.jsonl keeps the "
        f"host-side clocks of the {PAGES} of {PAGES} pages that finished"
    )
    assert len((run / "pages.jsonl").read_text().splitlines()) == PAGES
    assert capture.processes() == {}
    refused = run_perfctl("analyze", str(run), "--out-dir", str(tmp_path))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "holds no nsys report to analyze: its capture failed: nsys was killed by SIGKILL" in refused.stderr
    # what the agent had streamed is cut off: nsys's own importer refuses it
    assert len(left) == 1
    importer = Path(nsys_bin).resolve().parent.parent / "host-linux-x64" / "QdstrmImporter"
    out = tmp_path / "cut.nsys-rep"
    proc = subprocess.run([str(importer), "-i", str(left[0]), "-o", str(out)], capture_output=True, text=True)
    assert "Qdstrm file is incomplete or invalid" in proc.stdout + proc.stderr and not out.exists()
