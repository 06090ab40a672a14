"""Findings and cost centres on real runs, their evidence recomputed by hand from the same analysis."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from perfctl.analysis.cost_centres import cost_centres
from perfctl.analysis.findings import (
    LAUNCH_BOUND_BUSY_SHARE,
    LOW_MBU,
    LOW_MFU,
    findings,
)
from perfctl.commands.analyze import analyze_path
from perfctl.commands.analyze_options import AnalyzeOptions
from report_inputs import FIXTURES, clean_pass_only, tiny_all_run


@pytest.fixture(scope="module")
def tiny_all(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """perfctl analyze of the tiny model's H100 run folder (nsys, clean and torch passes)."""
    result = analyze_path(tiny_all_run(tmp_path_factory.mktemp("findings") / "run"))
    on_disk: dict[str, Any] = json.loads(result.json_path.read_text())
    return on_disk


def _by(found: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {f["stage"]: f for f in found if f["id"] == kind}


def test_launch_bound_stages_with_their_evidence(tiny_all: dict[str, Any]) -> None:
    bound = _by(tiny_all["findings"], "launch_bound")
    assert set(bound) == {"vision", "prefill", "decode"}  # the tiny model keeps the H100 idle
    pages = len(tiny_all["pages"])
    for s in tiny_all["stages"]:
        ev = bound[s["stage"]]["evidence"]
        assert ev["busy_share_under_nsys"] == pytest.approx(s["gpu_busy_ns"] / s["wall_ns"])
        clean_ns = tiny_all["efficiency"]["stages"][s["stage"]]["clean_seconds_per_page"] * 1e9
        assert ev["busy_share_of_clean_time"] == pytest.approx(s["gpu_busy_ns"] / pages / clean_ns)
        assert ev["judged_on"] == "clean" and ev["busy_share_of_clean_time"] < LAUNCH_BOUND_BUSY_SHARE
        assert ev["kernels_per_instance"] == pytest.approx(s["kernel_count"] / s["instances"])
        assert ev["launch_to_start_median_ns"] == s["launch_to_start_ns"]["median"]
        assert ev["launch_api_calls"] > 0  # the torch pass's cudaLaunchKernel / cuLaunchKernelEx rows
        assert f"{100 * ev['busy_share_under_nsys']:.1f} %" in bound[s["stage"]]["text"]
    assert bound["decode"]["severity"] == "high" and "CUDA graph" in bound["decode"]["next"]
    # the decode step count: 7 decode ranges per page, 178 kernels per step on the tiny model
    assert "178 kernels per decode step" in bound["decode"]["text"]


def test_low_mfu_low_mbu_largest_category_and_overhead(tiny_all: dict[str, Any]) -> None:
    found = tiny_all["findings"]
    eff = tiny_all["efficiency"]
    low = _by(found, "low_mfu")
    assert set(low) == {"vision", "prefill"}  # decode is judged by MBU, not MFU
    for stage, f in low.items():
        assert f["evidence"]["mfu"] == eff["stages"][stage]["mfu"] < LOW_MFU
        assert "launch-bound first" in f["next"]  # the stage is launch-bound too
    mbu = _by(found, "low_mbu")["decode"]
    assert mbu["evidence"]["mbu"] == eff["decode_mbu"]["mbu"] < LOW_MBU
    for s in tiny_all["stages"]:
        largest = _by(found, "largest_category")[s["stage"]]["evidence"]
        category, time_ns = max(s["kernel_time_by_category"].items(), key=lambda kv: kv[1])
        assert (largest["category"], largest["time_ns"]) == (category, time_ns)
        assert largest["share_of_stage_kernel_time"] == pytest.approx(time_ns / s["kernel_time_ns"])
    overhead = next(f for f in found if f["id"] == "profiler_overhead")
    assert overhead["evidence"]["nsys_over_clean"] == {
        stage: st["nsys_over_clean"] for stage, st in eff["stages"].items()
    }
    # most severe first
    order = [f["severity"] for f in found]
    assert order == sorted(order, key=["high", "medium", "info"].index)


def test_cost_centres_split_each_stage_into_idle_and_kernel_categories(tiny_all: dict[str, Any]) -> None:
    centres = tiny_all["cost_centres"]
    total = sum(s["wall_ns"] for s in tiny_all["stages"])
    for s in tiny_all["stages"]:
        mine = [c for c in centres if c["stage"] == s["stage"]]
        idle = next(c for c in mine if c["kind"] == "gpu_idle")
        assert idle["time_ns"] == s["wall_ns"] - s["gpu_busy_ns"]
        kernels = {c["category"]: c["time_ns"] for c in mine if c["kind"] == "kernel_category"}
        assert kernels == {k: v for k, v in s["kernel_time_by_category"].items() if v}
    assert [c["time_ns"] for c in centres] == sorted((c["time_ns"] for c in centres), reverse=True)
    top = centres[0]
    assert (top["stage"], top["kind"]) == ("decode", "gpu_idle")
    assert top["share_of_all_stages"] == pytest.approx(top["time_ns"] / total)


def test_threshold_decides_launch_bound(tiny_all: dict[str, Any]) -> None:
    """The same decode stage judged on either side of LAUNCH_BOUND_BUSY_SHARE (of its clean time)."""
    analysis = copy.deepcopy(tiny_all)
    decode = next(s for s in analysis["stages"] if s["stage"] == "decode")
    clean_ns = analysis["efficiency"]["stages"]["decode"]["clean_seconds_per_page"] * 1e9
    pages = len(analysis["pages"])
    decode["gpu_busy_ns"] = int(LAUNCH_BOUND_BUSY_SHARE * 1.01 * clean_ns * pages)
    assert "decode" not in _by(findings(analysis), "launch_bound")
    decode["gpu_busy_ns"] = int(LAUNCH_BOUND_BUSY_SHARE * 0.99 * clean_ns * pages)
    assert "decode" in _by(findings(analysis), "launch_bound")


def test_unstable_stages_of_the_full_size_h100_run_name_their_cause() -> None:
    """10 pages of the full-size model: stage CVs of 20-26 % while NVML held the SM clock at 1,980 MHz
    and the GPU mostly idle, so the spread is host-side; the finding says so and what to do."""
    analysis, _ = clean_pass_only(FIXTURES / "h100-full-ocr2-clean10")
    stats = analysis["timing"]["statistics"]["stages"]
    unstable = _by(analysis["findings"], "unstable")
    assert set(unstable) == {s for s, st in stats.items() if st["verdict"]["stable"] is False}
    assert unstable  # this run was far from stable
    for stage, f in unstable.items():
        assert f["evidence"]["cv"] == stats[stage]["cv"] and f["severity"] == "medium"
        assert f["evidence"]["sm_clock_spread"] == 0.0 and f["evidence"]["gpu_util_mean_percent"] < 50
        assert "host" in f["text"] and "taskset" in f["next"]
    # no nsys export: no kernel findings, no cost centres, and nothing pretends otherwise
    assert analysis["cost_centres"] == []
    assert not _by(analysis["findings"], "launch_bound")
    mfu = _by(analysis["findings"], "low_mfu")
    assert set(mfu) == {"vision", "prefill"}
    assert mfu["vision"]["evidence"]["mfu"] == analysis["efficiency"]["stages"]["vision"]["mfu"]


def test_cpu_capture_says_what_is_missing(tmp_path: Path, hostile_capture: Path) -> None:
    result = analyze_path(hostile_capture, AnalyzeOptions(allow_no_kernels=True, out_dir=tmp_path))
    kinds = [f["id"] for f in result.analysis["findings"]]
    assert kinds == ["no_kernels", "no_clean_pass"]
    assert {c["kind"] for c in result.analysis["cost_centres"]} == {"stage_wall"}
    assert cost_centres(result.analysis) == result.analysis["cost_centres"]
