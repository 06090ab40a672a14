"""Findings and cost centres on real runs, their evidence recomputed by hand from the same analysis."""

from __future__ import annotations

import copy
import json
import lzma
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import decompress_fixture
from perfctl.analysis.analyze import analyze_export
from perfctl.analysis.cost_centres import cost_centres
from perfctl.analysis.findings import (
    INDUCTOR_KERNEL_PREFIX,
    LAUNCH_BOUND_BUSY_SHARE,
    LOW_MBU,
    LOW_MFU,
    findings,
)
from perfctl.analysis.findings_graphs import GRAPH_RUN_SHARE
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


# H200 nsys-pass exports of the full-size model (tests/fixtures/README.md): decode compiled (its step one
# CUDA graph, traced node by node) at batch 1 and 16, and the same model eager
COMPILED_EXPORTS = ("h200-nsys2024-compiled-decode", "h200-nsys2024-compiled-b16")
EAGER_EXPORT = "h200-nsys2024-full-ocr2"
# the phrases in which a finding advises CUDA graphs or torch.compile
GRAPH_ADVICE = ("as a CUDA graph", "torch.compile it", "torch.compile mode=", "(torch.compile)")


@pytest.fixture(scope="module")
def exports(export_dir: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each export, decompressed, and its analysis with its findings (as perfctl analyze stores them)."""
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for name in (*COMPILED_EXPORTS, EAGER_EXPORT):
        path = decompress_fixture(f"{name}.sqlite.xz", export_dir)
        analysis: dict[str, Any] = dict(analyze_export(path))
        analysis["findings"] = findings(analysis)
        out[name] = (path, analysis)
    return out


def _stage(analysis: dict[str, Any], stage: str) -> dict[str, Any]:
    return next(s for s in analysis["stages"] if s["stage"] == stage)


def _advises_graphs(finding: dict[str, Any]) -> bool:
    return any(phrase in (finding["next"] or "") for phrase in GRAPH_ADVICE)


@pytest.mark.parametrize("name", COMPILED_EXPORTS)
def test_compiled_decode_gets_no_cuda_graph_advice(
    name: str, exports: dict[str, tuple[Path, dict[str, Any]]]
) -> None:
    """Decode's kernels mostly replay from CUDA graphs: no finding about decode advises graphs or
    torch.compile; the eager vision and prefill of the same run still get that advice if launch-bound."""
    _, analysis = exports[name]
    decode = _stage(analysis, "decode")
    assert decode["graph_kernel_count"] / decode["kernel_count"] >= GRAPH_RUN_SHARE
    about_decode = [f for f in analysis["findings"] if f["stage"] == "decode"]
    assert about_decode and not any(_advises_graphs(f) for f in about_decode)
    for f in analysis["findings"]:
        if f["id"] == "launch_bound" and f["stage"] in ("vision", "prefill"):
            assert _stage(analysis, f["stage"])["graph_kernel_count"] == 0 and _advises_graphs(f)
            assert f["evidence"]["graph_use"] == "eager"


def test_compiled_decode_names_the_launches_left_between_graph_replays(
    exports: dict[str, tuple[Path, dict[str, Any]]],
) -> None:
    """Batch 1 compiled: 62 steps of 350 kernels, 301 replayed from one graph launch, 49 one by one
    (3,040 in all); the GPU still idles 70 % of the time, between the replays."""
    _, analysis = exports["h200-nsys2024-compiled-decode"]
    decode = _stage(analysis, "decode")
    bound = _by(analysis["findings"], "launch_bound")["decode"]
    ev = bound["evidence"]
    steps = decode["instances"]
    assert ev["graph_use"] == "graphs" and ev["graph_share_threshold"] == GRAPH_RUN_SHARE
    assert ev["graph_kernel_share"] == pytest.approx(18_662 / 21_702)
    assert ev["graph_kernels_per_instance"] == 18_662 / steps == 301
    assert ev["one_by_one_kernels_per_instance"] == pytest.approx(3_040 / steps)
    assert ev["graph_launches_per_instance"] == decode["graph_launches"] / steps == 1
    idle = (decode["wall_ns"] - decode["gpu_busy_ns"]) / steps
    assert ev["idle_ns_per_instance"] == pytest.approx(idle)
    assert ev["idle_ns_per_launch_call"] == pytest.approx(idle / (3_040 / steps + 1))
    assert "between CUDA graph replays" in bound["title"]
    assert (
        "350 kernels per decode step: 301 replayed from CUDA graphs (1 graph launch), 49 launched one by one"
        in bound["text"]
    )
    assert f"the GPU idles {idle / 1e6:,.3f} ms per decode step" in bound["text"]
    assert "no queue of work" not in bound["text"]  # graph kernels are timed from their graph's launch
    assert "the 49 kernels per decode step launched one by one and the host work" in bound["next"]


def test_inductor_elementwise_kernel_gets_no_torch_compile_advice(
    exports: dict[str, tuple[Path, dict[str, Any]]],
) -> None:
    """Batch 16 compiled: decode's largest category is elementwise, its largest kernel one Inductor
    generated: the advice looks at that kernel instead of advising torch.compile."""
    _, analysis = exports["h200-nsys2024-compiled-b16"]
    largest = _by(analysis["findings"], "largest_category")["decode"]
    kernel = largest["evidence"]["largest_kernel"]["short_name"]
    assert largest["evidence"]["category"] == "elementwise" and kernel.startswith(INDUCTOR_KERNEL_PREFIX)
    assert kernel in largest["next"] and "Nsight Compute" in largest["next"] and not _advises_graphs(largest)
    # the eager vision's elementwise kernels still get the fusion advice
    assert "(torch.compile)" in _by(analysis["findings"], "largest_category")["vision"]["next"]


def test_eager_decode_is_still_advised_cuda_graphs(exports: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    _, analysis = exports[EAGER_EXPORT]
    bound = _by(analysis["findings"], "launch_bound")
    assert set(bound) == {"vision", "prefill", "decode"}
    for stage, f in bound.items():
        assert f["evidence"]["graph_use"] == "eager" and _advises_graphs(f), stage
    assert "run decode as a CUDA graph" in bound["decode"]["next"]
    assert "712 kernels per decode step" in bound["decode"]["text"]


def test_graph_share_threshold_decides_the_advice(exports: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    """The compiled decode stage with its graph kernels on either side of GRAPH_RUN_SHARE."""
    analysis = copy.deepcopy(exports["h200-nsys2024-compiled-decode"][1])
    decode = _stage(analysis, "decode")
    for share, use in ((GRAPH_RUN_SHARE, "graphs"), (GRAPH_RUN_SHARE * 0.99, "partial"), (0, "eager")):
        decode["graph_kernel_count"] = round(share * decode["kernel_count"])
        decode["graph_launches"] = decode["instances"] if share else 0  # (eager: no graph launched either)
        bound = _by(findings(analysis), "launch_bound")["decode"]
        assert bound["evidence"]["graph_use"] == use
        assert _advises_graphs(bound) == (use == "eager")
        if use == "partial":
            left = (decode["kernel_count"] - decode["graph_kernel_count"]) / decode["instances"]
            assert f"capture the {left:,.0f} kernels per decode step launched one by one" in bound["next"]


def _changed_copy(export: Path, target: Path, sql: str) -> Path:
    shutil.copyfile(export, target)
    with sqlite3.connect(target) as conn:
        conn.execute(sql)
    conn.close()
    return target


@pytest.mark.parametrize(
    ("sql", "because"),
    [
        # an nsys without CUDA graph tracing: no graphNodeId column (graph_kernel_count null)
        ("ALTER TABLE CUPTI_ACTIVITY_KIND_KERNEL DROP COLUMN graphNodeId", "no graphNodeId column"),
        # graphs traced as a whole: the graph launches are there, their kernels are not
        (
            "DELETE FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE graphNodeId IS NOT NULL",
            "62 graph launches whose kernels the export lacks",
        ),
    ],
    ids=["no-graph-node-column", "whole-graph-tracing"],
)
def test_unknown_graph_use_makes_the_advice_conditional(
    sql: str, because: str, exports: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path
) -> None:
    export, _ = exports["h200-nsys2024-compiled-decode"]
    analysis: dict[str, Any] = dict(analyze_export(_changed_copy(export, tmp_path / "changed.sqlite", sql)))
    bound = _by(findings(analysis), "launch_bound")["decode"]
    why = bound["evidence"]["unknown_because"]
    assert bound["evidence"]["graph_use"] == "unknown" and because in why
    assert bound["next"].startswith(
        f"unless decode's kernels are replayed from CUDA graphs already (unknown: {why}), "
    )
    assert "if they are, cut the kernels launched one by one" in bound["next"]
    assert "no queue of work" not in bound["text"]


def test_an_analysis_older_than_the_graph_count_gets_conditional_advice() -> None:
    """The H200 compiled sweep's batch-1 analysis.json was made before perfctl counted graph kernels."""
    with lzma.open(FIXTURES / "h200-compiled-sweep" / "batch-1.analysis.json.xz") as f:
        analysis = json.load(f)
    assert "graph_kernel_count" not in _stage(analysis, "decode")
    bound = _by(findings(analysis), "launch_bound")["decode"]
    assert bound["evidence"]["graph_use"] == "unknown" and "predates" in bound["next"]
    assert bound["next"].startswith("unless decode's kernels are replayed from CUDA graphs already")
