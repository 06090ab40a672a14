"""A real run folder with an Nsight Compute pass, analyzed through the CLI, every figure against an
independent reference: ncu's own CSV of the report, plain SQL over the export, and `nsys stats`.

tests/fixtures/h200-full-ocr2-ncu/: `perfctl capture --model deepseek-ocr2 --device cuda --num-pages 2
--max-new-tokens 32 --tool ncu` on an NVIDIA H200 (full-size DeepSeek-OCR-2 config, random bf16
weights, batch 1, eager; nsys 2024.2 with CUDA 13 CUPTI, ncu 2025.3.1, clock control base), 2026-12-03.
"""

from __future__ import annotations

import csv
import json
import lzma
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, copy_run_fixture, run_perfctl
from ncu_reference import STAGES, csv_dims, csv_flops, csv_stage, ncu_csv_rows, stage_config_counts

pytest.importorskip("ncu_report", reason="NVIDIA's ncu-report package reads .ncu-rep files")

RUN = "h200-full-ocr2-ncu"


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    run = copy_run_fixture(RUN, tmp_path_factory.mktemp("ncu-run") / RUN)
    with (
        lzma.open(FIXTURES / RUN / "ncu" / "run.ncu-rep.xz") as src,
        (run / "ncu" / "run.ncu-rep").open("wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    proc = run_perfctl("analyze", str(run), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert "kernels.md" in proc.stderr
    return run, json.loads(proc.stdout)


def test_the_run_gets_its_kernel_level_outputs(analyzed: tuple[Path, dict[str, Any]]) -> None:
    run, analysis = analyzed
    ncu = analysis["ncu"]
    assert [s["stage"] for s in ncu["stages"]] == list(STAGES)
    assert (run / "kernels.md").is_file() and '<section id="ncu">' in (run / "report.html").read_text()
    assert ncu["clock_control"] == "base" and ncu["command"][0].endswith("ncu")
    assert ncu["roofs"]["gpu"] == "NVIDIA H200" and ncu["roofs"]["peak_tflops_boost"]
    assert any(f["id"] == "ncu_top_kernel" for f in analysis["findings"])


def test_each_kernel_equals_ncus_csv(analyzed: tuple[Path, dict[str, Any]]) -> None:
    _, analysis = analyzed
    rows = ncu_csv_rows(FIXTURES / RUN / "run.ncu-raw.csv.xz")
    kernels = analysis["ncu"]["kernels"]
    assert len(kernels) == len(rows)
    for kernel, row in zip(kernels, rows, strict=True):
        assert kernel["flops"] == csv_flops(row)
        assert kernel["duration_ns"] == float(row["gpu__time_duration.sum"])
        assert kernel["dram_bytes_read"] == float(row["dram__bytes_read.sum"])
        assert kernel["stage"] == csv_stage(row)
        assert tuple(kernel["grid"]) == csv_dims(row["Grid Size"])


def test_measured_work_per_stage_from_the_references(analyzed: tuple[Path, dict[str, Any]]) -> None:
    run, analysis = analyzed
    rows = ncu_csv_rows(FIXTURES / RUN / "run.ncu-raw.csv.xz")
    counts = stage_config_counts(run / "run.sqlite")
    pages = len(analysis["pages"])
    profiled: dict[str, dict[tuple[Any, ...], list[dict[str, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    names = {k["id"]: k["name"] for k in analysis["ncu"]["kernels"]}
    for i, row in enumerate(rows):
        stage = csv_stage(row)
        if stage is not None:
            key = (names[i], csv_dims(row["Grid Size"]), csv_dims(row["Block Size"]))
            profiled[stage][key].append(csv_flops(row))
    for work in analysis["ncu"]["stages"]:
        stage = work["stage"]
        expected = sum(
            sum(f["total"] for f in flops) / len(flops) * counts[stage][key] / pages
            for key, flops in profiled[stage].items()
            if counts[stage].get(key)
        )
        assert work["measured_flops_per_page"]["total"] == pytest.approx(expected, rel=1e-9)
        assert 0 < work["coverage"] <= 1.0 + 1e-9
        assert work["analytic_flops_per_page"] and work["measured_over_analytic"] == pytest.approx(
            work["measured_flops_per_page"]["total"] / work["analytic_flops_per_page"]
        )


def test_stage_kernel_times_equal_nsys_stats(analyzed: tuple[Path, dict[str, Any]]) -> None:
    """The stage kernel times ncu's coverage divides by are nsys's own (nvtx_kern_sum, nsys 2024.2)."""
    _, analysis = analyzed
    totals: dict[str, int] = defaultdict(int)
    with (FIXTURES / RUN / "run.nvtx_kern_sum.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            name = row["NVTX Range"].removeprefix(":").split(":")[-1]
            if name in STAGES:
                totals[name] += int(row["Total Time (ns)"])
    pages = len(analysis["pages"])
    for work in analysis["ncu"]["stages"]:
        assert work["kernel_time_ns_per_page"] * pages == pytest.approx(totals[work["stage"]], abs=1)
