"""The driver dies mid-run, for real: killed with SIGKILL after some pages (what the kernel's OOM killer
does to a process that exhausted the host's memory), and out of memory while loading a model too large
for the memory it may use (a real allocation failure under an address-space limit, the CPU side of a
CUDA out-of-memory error). nsys still writes its report, the run folder keeps what ran, the manifest
says failed and why, and `perfctl analyze` analyzes the pages that completed and names the others.

Whatever the machine's speed: the killed driver has --repeats 10000 (hours of pages) ahead of it, and
the memory limit is set while the driver is held at a gate, before its interpreter even starts."""

from __future__ import annotations

import json
import os
import resource
import signal
from pathlib import Path
from typing import Any

import pytest

from conftest import run_perfctl
from faults_support import Capture, DriverGate, driver_of

pytestmark = [pytest.mark.nsys, pytest.mark.slow]

# the most repeats capture takes: the driver cannot finish before the kill arrives
PAGES, REPEATS, NEW_TOKENS = 4, 10_000, 24
EXPECTED = PAGES * REPEATS
KILL_AFTER = 2  # pages recorded before the driver is killed
# The full-size DeepSeek-OCR-2 needs 13.6 GB for its float32 weights; its driver may use 4 GiB.
ADDRESS_SPACE_LIMIT = 4 << 30


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, Capture]:
    run = tmp_path_factory.mktemp("crash") / "killed"
    capture = Capture(
        "--out", str(run), "--num-pages", str(PAGES), "--repeats", str(REPEATS),
        "--max-new-tokens", str(NEW_TOKENS), "--warmup", "0", "--device", "cpu", "--nsys", nsys_bin,
    )  # fmt: skip
    capture.wait_for_records(run / "pages.jsonl", KILL_AFTER)
    os.kill(driver_of(capture, run), signal.SIGKILL)
    capture.finish()
    return run, capture


def test_killed_driver_fails_the_capture_and_keeps_the_run(killed: tuple[Path, Capture]) -> None:
    run, capture = killed
    assert capture.proc.returncode == 1, capture.stdout + capture.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    done = manifest["pages_completed"]
    assert KILL_AFTER <= done < EXPECTED
    assert manifest["status"] == "failed"
    assert manifest["reason"].startswith(f"the driver finished {done} of {EXPECTED} pages")
    assert "the driver was killed by SIGKILL, nsys exit 137" in manifest["reason"]
    assert f"status: failed ({manifest['reason']})" in capture.stdout
    assert manifest["nsys"]["exit_code"] == 137
    # nsys finalized its report when its program died: the run keeps everything that was captured
    for name in ("run.nsys-rep", "run.sqlite", "pages.jsonl", "driver.log", "nsys.log", "workload.json"):
        assert (run / name).is_file(), name
    assert manifest["files"]["run.sqlite"] > 0
    lines = (run / "pages.jsonl").read_text().splitlines()
    assert [json.loads(line)["sequence"] for line in lines] == list(range(done))
    assert capture.processes() == {}, "the capture left processes behind"


def _analysis(run: Path, tmp_path: Path) -> tuple[dict[str, Any], str]:
    as_json = run_perfctl("analyze", str(run), "--format", "json", "--out-dir", str(tmp_path / "json"))
    assert as_json.returncode == 0, as_json.stderr
    as_text = run_perfctl("analyze", str(run), "--out-dir", str(tmp_path / "text"))
    assert as_text.returncode == 0, as_text.stderr
    return json.loads(as_json.stdout), as_text.stdout


def test_analyze_counts_complete_pages_and_names_the_rest(
    killed: tuple[Path, Capture], tmp_path: Path
) -> None:
    run, _ = killed
    analysis, text = _analysis(run, tmp_path)
    completion = analysis["completion"]
    complete = completion["complete"]
    recorded = json.loads((run / "manifest.json").read_text())["pages_completed"]
    # the page the kill landed in has an NVTX range that never ended (a kill between a page's record
    # and the end of its range, microseconds apart, leaves that page unended instead)
    assert complete == list(range(len(complete))) and len(complete) in (recorded, recorded - 1)
    assert [p["sequence"] for p in completion["incomplete"]] == [len(complete)]
    assert completion["expected"] == EXPECTED
    assert completion["not_started"] == list(range(len(complete) + 1, EXPECTED))
    # every figure is over the complete pages only
    assert [p["sequence"] for p in analysis["pages"]] == complete
    stages = {s["stage"]: s["instances"] for s in analysis["stages"]}
    assert stages == {
        "vision": len(complete),
        "prefill": len(complete),
        "decode": len(complete) * (NEW_TOKENS - 1),
    }
    assert analysis["run"]["status"] == "failed"
    broken = len(complete)
    assert any(w.startswith(f"page {broken} did not complete") for w in analysis["warnings"])
    assert f"page {broken} did not complete: its NVTX range never ended" in text
    assert f"{EXPECTED - broken - 1} of the {EXPECTED} pages the run was to profile never started" in text
    html = (tmp_path / "text" / "report.html").read_text()
    assert f"page {broken} did not complete" in html and "failed" in html


@pytest.fixture(scope="module")
def out_of_memory(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, Capture]:
    """The full-size model on the CPU, its driver limited to 4 GiB of address space before it starts
    (held at a gate; the limit carries over into the interpreter the gate then runs): loading 13.6 GB
    of weights fails in the allocator."""
    folder = tmp_path_factory.mktemp("oom")
    run, gate = folder / "oom", DriverGate(folder / "gate")
    capture = Capture(
        "--model", "deepseek-ocr2", "--out", str(run), "--num-pages", "2", "--max-new-tokens", "2",
        "--warmup", "0", "--device", "cpu", "--driver-python", str(gate.python), "--nsys", nsys_bin,
    )  # fmt: skip
    gate.wait_for_driver(capture)
    driver = driver_of(capture, run)  # still at the gate: nothing of the driver has run
    resource.prlimit(driver, resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    gate.open()
    capture.finish()
    return run, capture


def test_out_of_memory_fails_the_capture_with_the_reason(
    out_of_memory: tuple[Path, Capture], tmp_path: Path
) -> None:
    run, capture = out_of_memory
    assert capture.proc.returncode == 1, capture.stdout + capture.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["pages_completed"] == 0
    assert manifest["reason"].startswith("the driver finished 0 of 2 pages (nsys exit 1); driver.log ends:")
    assert "can't allocate memory" in manifest["reason"] or "MemoryError" in manifest["reason"]
    log = (run / "driver.log").read_text()
    assert "Cannot allocate memory" in log or "MemoryError" in log
    assert (run / "run.nsys-rep").is_file() and (run / "run.sqlite").is_file()
    assert capture.processes() == {}
    # nothing completed: analyze says so instead of inventing pages
    analysis, text = _analysis(run, tmp_path)
    assert analysis["completion"] == {"complete": [], "incomplete": [], "expected": 2, "not_started": [0, 1]}
    assert analysis["pages"] == [] and all(s["instances"] == 0 for s in analysis["stages"])
    assert "perfctl range load never ended" in text
    assert "2 of the 2 pages the run was to profile never started (pages 0-1)" in text
