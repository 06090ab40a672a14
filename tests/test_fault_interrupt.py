"""Ctrl-C and SIGTERM during a capture, for real: the terminal's SIGINT to the capture's process group
during the nsys pass, and a SIGTERM to perfctl alone (what `kill`, a scheduler or a container stop
sends) during the clean timing pass of `--tool all`. The children stop (nsys writes the report of what
ran first), no process of the run remains, and the partial run is kept, marked interrupted.

Whatever the machine's speed, the signal lands in the pass it is meant for: that pass has --repeats
10000 (hours of pages) ahead of it, and where the signal goes to the timing pass, --profile-pages keeps
the nsys pass before it short (every page once)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from conftest import run_perfctl
from faults_support import Capture

pytestmark = [pytest.mark.nsys, pytest.mark.slow]

# the most repeats capture takes: the pass the signal goes to cannot finish before it arrives
PAGES, REPEATS, NEW_TOKENS = 3, 10_000, 16
EXPECTED = PAGES * REPEATS


def _capture(run: Path, nsys: str, *more: str) -> Capture:
    return Capture(
        "--out", str(run), "--num-pages", str(PAGES), "--repeats", str(REPEATS),
        "--max-new-tokens", str(NEW_TOKENS), "--warmup", "0", "--device", "cpu", "--nsys", nsys, *more,
    )  # fmt: skip


@pytest.fixture(scope="module")
def ctrl_c(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, Capture]:
    run = tmp_path_factory.mktemp("ctrlc") / "run"
    capture = _capture(run, nsys_bin)
    capture.wait_for_records(run / "pages.jsonl", 1)
    capture.interrupt_like_a_terminal()
    capture.finish()
    return run, capture


def test_ctrl_c_keeps_the_report_of_what_ran(ctrl_c: tuple[Path, Capture], tmp_path: Path) -> None:
    run, capture = ctrl_c
    assert capture.proc.returncode == 1, capture.stdout + capture.stderr
    assert "Traceback" not in capture.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    done = manifest["pages_completed"]
    assert manifest["status"] == "interrupted" and 1 <= done < EXPECTED
    assert manifest["reason"] == (
        f"stopped by SIGINT (Ctrl-C) during the nsys pass, after {done} of {EXPECTED} pages; "
        "nsys wrote the report of what ran"
    )
    assert f"status: interrupted ({manifest['reason']})" in capture.stdout
    assert manifest["nsys"]["exit_code"] == 0  # one SIGINT: nsys stopped the driver and finalized
    assert (run / "run.nsys-rep").is_file() and (run / "run.sqlite").is_file()
    assert manifest["finished_at"] > manifest["started_at"]
    assert not (run / ".capture.lock").exists()
    assert capture.processes() == {}, "processes of the run outlived the capture"
    analyzed = run_perfctl("analyze", str(run), "--format", "json", "--out-dir", str(tmp_path))
    assert analyzed.returncode == 0, analyzed.stderr
    completion = json.loads(analyzed.stdout)["completion"]
    assert (
        len(completion["complete"]) + len(completion["incomplete"]) + len(completion["not_started"])
        == EXPECTED
    )
    assert completion["complete"] == list(range(len(completion["complete"])))


@pytest.fixture(scope="module")
def sigterm_in_timing_pass(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, Capture]:
    run = tmp_path_factory.mktemp("sigterm") / "run"
    capture = _capture(run, nsys_bin, "--tool", "all", "--profile-pages", str(PAGES))
    capture.wait_for_records(run / "timing" / "pages.jsonl", 1)
    os.kill(capture.proc.pid, signal.SIGTERM)
    capture.finish()
    return run, capture


def test_sigterm_stops_the_timing_pass_and_marks_the_run(
    sigterm_in_timing_pass: tuple[Path, Capture], tmp_path: Path
) -> None:
    run, capture = sigterm_in_timing_pass
    assert capture.proc.returncode == 1, capture.stdout + capture.stderr
    assert "Traceback" not in capture.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    timing = manifest["timing"]
    done = timing["pages_completed"]
    assert timing["status"] == "interrupted" and 1 <= done < EXPECTED
    reason = f"stopped by SIGTERM during the clean timing pass, after {done} of {EXPECTED} pages"
    assert timing["reason"] == reason
    assert manifest["status"] == "interrupted" and manifest["reason"] == reason
    # the nsys pass before it (every page once) is whole and kept; the torch.profiler pass never started
    assert (
        manifest["pages_completed"] == manifest["pages_expected"] == PAGES and (run / "run.sqlite").is_file()
    )
    assert "torch" not in manifest and not (run / "torch").exists()
    assert capture.processes() == {}, "processes of the run outlived the capture"
    analyzed = run_perfctl("analyze", str(run), "--format", "json", "--out-dir", str(tmp_path))
    assert analyzed.returncode == 0, analyzed.stderr
    analysis = json.loads(analyzed.stdout)
    assert analysis["completion"]["complete"] == list(range(PAGES))
    assert "timing" not in analysis  # an interrupted clean pass is not used for statistics


@pytest.fixture(scope="module")
def perfctl_killed(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, Capture]:
    """perfctl itself killed with SIGKILL (no handler runs): its children got a parent-death SIGINT."""
    run = tmp_path_factory.mktemp("perfctlkill") / "run"
    capture = _capture(run, nsys_bin)
    capture.wait_for_records(run / "pages.jsonl", 1)
    os.kill(capture.proc.pid, signal.SIGKILL)
    capture.finish()
    deadline = time.monotonic() + 120  # nsys finalizes on its own, after perfctl is gone
    while capture.processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    return run, capture


def test_killed_perfctl_still_leaves_a_report_and_no_process(
    perfctl_killed: tuple[Path, Capture], tmp_path: Path
) -> None:
    run, capture = perfctl_killed
    assert capture.proc.returncode == -signal.SIGKILL
    assert capture.processes() == {}, "processes of the run outlived perfctl"
    assert (run / "run.nsys-rep").is_file() and (run / "run.sqlite").is_file()
    # nothing could record how the run ended: the manifest still says running, and analyze says why
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"
    analyzed = run_perfctl("analyze", str(run), "--format", "json", "--out-dir", str(tmp_path))
    assert analyzed.returncode == 0, analyzed.stderr
    analysis = json.loads(analyzed.stdout)
    assert "the capture ended without recording how (perfctl itself was killed)" in " ".join(
        analysis["warnings"]
    )
    completion = analysis["completion"]
    assert completion["expected"] == EXPECTED and completion["complete"] == list(
        range(len(completion["complete"]))
    )
    assert analysis["run"]["pages_completed"] == len(
        [line for line in (run / "pages.jsonl").read_text().splitlines() if line]
    )
