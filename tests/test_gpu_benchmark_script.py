"""scripts/gpu_benchmark.py's own arithmetic, on a real H100 run folder (tests/fixtures/h100-tiny-ocr2-all:
an nsys export, the clean timing pass, the torch.profiler pass): every figure of its tables is the
run's analysis.json figure, and its timing of `perfctl analyze` beside `nsys stats` on the export
finds both giving every NVTX range the same kernels."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import copy_run_fixture

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import gpu_benchmark

pytestmark = [pytest.mark.nsys]


@pytest.fixture(scope="module")
def h100_run(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, dict[str, object]]:
    run = copy_run_fixture("h100-tiny-ocr2-all", tmp_path_factory.mktemp("bench") / "h100-tiny")
    timed = gpu_benchmark.time_analyze_and_stats(run, nsys_bin, repeat=1)
    return run, timed


def test_analyze_and_nsys_stats_agree_on_the_export(h100_run: tuple[Path, dict[str, object]]) -> None:
    run, timed = h100_run
    analysis = json.loads((run / "analysis.json").read_text())
    assert timed["kernels"] == analysis["totals"]["kernels"] > 0
    assert timed["ranges_that_differ"] == [] and timed["ranges_compared"] >= 3
    for tool in ("perfctl_analyze", "nsys_stats"):
        measured = timed[tool]
        assert isinstance(measured, dict) and measured["wall_s"] > 0 and measured["peak_rss_mb"] > 0


def test_summary_figures_are_the_analysis_figures(h100_run: tuple[Path, dict[str, object]]) -> None:
    run, _ = h100_run
    analysis = json.loads((run / "analysis.json").read_text())
    summary = gpu_benchmark.run_summary(run)
    decode = next(s for s in analysis["stages"] if s["stage"] == "decode")
    mine = summary["stages"]["decode"]
    # 2 pages x 7 decode steps under nsys; each step one range
    assert mine["kernels_per_range"] == decode["kernel_count"] / decode["instances"] == 2492 / 14
    assert mine["gpu_busy_share_under_nsys"] == decode["gpu_busy_ns"] / decode["wall_ns"]
    clean = analysis["timing"]["statistics"]["stages"]["decode"]
    assert mine["clean_mean_ms"] == clean["mean"] / 1e6 and mine["cv"] == clean["cv"]
    assert mine["mfu"] == analysis["efficiency"]["stages"]["decode"]["mfu"]
    assert mine["nsys_over_clean"] == analysis["efficiency"]["stages"]["decode"]["nsys_over_clean"]
    assert summary["decode"]["mbu"] == analysis["efficiency"]["decode_mbu"]["mbu"]
    assert summary["gpu"] == "NVIDIA H100 80GB HBM3"

    table = gpu_benchmark.render_results(
        {"command": "gpu_benchmark.py OUT", "gpu": summary["gpu"], "runs": [{"summary": summary}]}
    )
    row = next(line for line in table.splitlines() if line.startswith("| decode |"))
    assert f"{mine['clean_mean_ms']:.2f}" in row and "178 |" in row  # 2492 / 14 = 178 kernels a step
