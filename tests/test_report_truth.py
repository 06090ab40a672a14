"""What `perfctl analyze` puts in analysis.json, summary.md and report.html is true, on two real run
folders through the real command line: the tiny model on an H100 (tests/fixtures/h100-tiny-ocr2-all:
nsys, clean timing and torch passes) and on this CPU box (tests/fixtures/cpu-tiny-ocr2-all:
`perfctl capture --device cpu --tool all --num-pages 2 --max-new-tokens 4`)."""

from __future__ import annotations

import json
import lzma
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import run_perfctl

FIXTURES = Path(__file__).parent / "fixtures"


def _run_folder(name: str, target: Path) -> Path:
    shutil.copytree(FIXTURES / name, target, ignore=shutil.ignore_patterns("*.xz"))
    with lzma.open(FIXTURES / name / "run.sqlite.xz") as src, (target / "run.sqlite").open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def _analyzed(name: str, target: Path) -> Path:
    run = _run_folder(name, target)
    done = run_perfctl("analyze", str(run), "--quiet")
    assert done.returncode == 0, done.stderr
    return run


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _analyzed("h100-tiny-ocr2-all", tmp_path_factory.mktemp("truth") / "gpu")


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _analyzed("cpu-tiny-ocr2-all", tmp_path_factory.mktemp("truth") / "cpu")


def _analysis(run: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((run / "analysis.json").read_text())
    return result


def _section(run: Path, sid: str) -> str:
    found = re.search(rf'<section id="{sid}">(.*?)</section>', (run / "report.html").read_text(), re.S)
    assert found is not None
    return found.group(1)


# --- NVTX ranges: GPU span per name ---------------------------------------------------------------


def test_gpu_span_of_a_range_name_adds_each_instances_span(gpu_run: Path) -> None:
    """Each instance's span (its first kernel's start to its last kernel's end, kernels attributed by
    their launch call on the range's thread), read straight from the export, summed per name."""
    with sqlite3.connect(f"file:{gpu_run / 'run.sqlite'}?mode=ro", uri=True) as conn:
        spans: dict[str, int] = {}
        for stage in ("vision", "prefill", "decode"):
            rows = conn.execute(
                "SELECT e.start, e.end, e.globalTid FROM NVTX_EVENTS AS e LEFT JOIN StringIds AS s "
                "ON e.textId = s.id WHERE coalesce(s.value, e.text) = ?",
                (stage,),
            ).fetchall()
            total = 0
            for start, end, tid in rows:
                first, last = conn.execute(
                    "SELECT min(k.start), max(k.end) FROM CUPTI_ACTIVITY_KIND_KERNEL AS k "
                    "JOIN CUPTI_ACTIVITY_KIND_RUNTIME AS r ON k.correlationId = r.correlationId "
                    "WHERE r.globalTid = ? AND r.start >= ? AND r.end <= ?",
                    (tid, start, end),
                ).fetchone()
                total += (last - first) if first is not None else 0
            spans[stage] = total
    analysis = _analysis(gpu_run)
    by_name = {r["name"]: r for r in analysis["ranges"]}
    for stage, span in spans.items():
        assert by_name[stage]["gpu_span_ns"] == span, stage
        assert by_name[stage]["gpu_busy_ns"] <= span
        # the instances' spans lie inside their wall time plus the last kernel's tail: not 6x it
        assert span < 1.5 * by_name[stage]["wall_ns"], stage
    stages = {s["stage"]: s for s in analysis["stages"]}
    assert stages["prefill"]["gpu_span_ns"] == spans["prefill"]


# --- findings and summary lines that must hold for the run at hand ---------------------------------


def test_no_nsys_stretch_is_claimed_when_nsys_ran_faster(cpu_run: Path) -> None:
    """On this CPU box the nsys pass ran faster than the clean pass (nsys / clean below 1 for every
    stage): neither summary.md nor a finding says nsys stretched the stages."""
    analysis = _analysis(cpu_run)
    ratios = {s: v["nsys_over_clean"] for s, v in analysis["efficiency"]["stages"].items()}
    assert all(r < 1 for r in ratios.values()), ratios
    summary = (cpu_run / "summary.md").read_text()
    assert "stretch" not in summary
    assert f"{min(ratios.values()):.2f}–{max(ratios.values()):.2f}×" in summary
    assert not [f for f in analysis["findings"] if "stretch" in f["title"] + f["text"]]


def test_the_stretch_is_stated_when_nsys_ran_slower(gpu_run: Path) -> None:
    analysis = _analysis(gpu_run)
    high = max(v["nsys_over_clean"] for v in analysis["efficiency"]["stages"].values())
    assert high > 1
    assert f"nsys stretches it up to {high:.2f}×" in (gpu_run / "summary.md").read_text()


def test_a_cpu_run_is_not_told_to_check_gpu_clocks(tmp_path: Path) -> None:
    """The CPU run's clean pages with the hypervisor's steal taken out of their records: a broad
    spread with nothing on the host to explain it. The advice names the host, not GPU clocks."""
    run = _run_folder("cpu-tiny-ocr2-all", tmp_path / "cpu")
    pages = run / "timing" / "pages.jsonl"
    records = [json.loads(line) for line in pages.read_text().splitlines()]
    for r in records:
        r["host_cpu"]["steal_share"] = 0.0
    pages.write_text("".join(json.dumps(r) + "\n" for r in records))
    done = run_perfctl("analyze", str(run), "--quiet")
    assert done.returncode == 0, done.stderr
    analysis = _analysis(run)
    whys = [st["verdict"]["why"] for st in analysis["timing"]["statistics"]["stages"].values()]
    assert any("a broad spread without outliers or trend" in why for why in whys), whys
    written = json.dumps(analysis["findings"]) + json.dumps(whys) + (run / "summary.md").read_text()
    written += _section(run, "repeatability") + _section(run, "findings")
    assert "GPU clocks" not in written
    assert any("competing load on the host's CPU cores" in why for why in whys)


def test_telemetry_missing_from_the_folder_is_not_called_no_samples(gpu_run: Path) -> None:
    """The H100 run's driver sampled NVML every 50 ms; the fixture did not keep telemetry.jsonl. The
    report says the file is missing, not that the driver recorded no samples."""
    reason = _analysis(gpu_run)["timing"]["telemetry"]["reason"]
    assert "no samples" not in reason
    assert reason == (
        "timing/telemetry.jsonl is not in this run folder, though the driver sampled NVML every 50 ms "
        "(the file was not kept)"
    )
    assert "no samples" not in _section(gpu_run, "telemetry")


def test_telemetry_that_stopped_on_an_nvml_error_quotes_it(tmp_path: Path) -> None:
    run = _run_folder("h100-tiny-ocr2-all", tmp_path / "gpu")
    (run / "timing" / "telemetry.jsonl").write_text('{"t_ns": 1, "error": "Not Supported"}\n')
    assert run_perfctl("analyze", str(run), "--quiet").returncode == 0
    reason = _analysis(run)["timing"]["telemetry"]["reason"]
    assert reason == "NVML sampling stopped at its first sample: Not Supported"


def test_telemetry_samples_of_the_clean_pass_are_found(tmp_path: Path) -> None:
    """The H100 run with the 300 NVML samples of another clean pass would hold none inside its pages:
    a file with samples, none of them inside a page, says exactly that."""
    run = _run_folder("h100-tiny-ocr2-all", tmp_path / "gpu")
    shutil.copy(FIXTURES / "h100-full-ocr2-clean10" / "timing" / "telemetry.jsonl", run / "timing")
    assert run_perfctl("analyze", str(run), "--quiet").returncode == 0
    reason = _analysis(run)["timing"]["telemetry"]["reason"]
    assert reason.startswith("none of the 300 NVML samples in timing/telemetry.jsonl fell inside a page")
