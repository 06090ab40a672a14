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
