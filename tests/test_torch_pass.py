"""The torch.profiler pass's operator table, from a real profile of real operators (CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from conftest import FIXTURES, run_perfctl
from perfctl.driver.torch_pass import RANGE_PREFIX, operator_table


def _profile() -> Any:
    from torch.profiler import ProfilerActivity, profile, record_function

    layer = torch.nn.Linear(64, 64)
    x = torch.randn(32, 64)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, profile_memory=True) as prof:
        with record_function(RANGE_PREFIX + "vision"):
            for _ in range(3):
                y = layer(x)  # aten::linear -> aten::addmm (nested)
        with record_function(RANGE_PREFIX + "decode"):
            torch.relu(y)
        torch.sigmoid(x)  # outside every stage
    return prof


def test_operator_table_from_a_real_profile() -> None:
    table = operator_table(_profile().events(), ["vision", "prefill", "decode"], top_n=30)
    assert set(table) == {"vision", "prefill", "decode", "other"}
    vision = {op["name"]: op for op in table["vision"]["top"]}
    assert vision["aten::linear"]["calls"] == 3 and vision["aten::addmm"]["calls"] == 3
    for op in vision.values():
        # inclusive time covers self time, nested operators included (addmm sits inside linear)
        assert op["cpu_total_us"] >= op["self_cpu_us"] > 0, op["name"]
    assert vision["aten::linear"]["cpu_total_us"] >= vision["aten::addmm"]["cpu_total_us"]
    assert vision["aten::addmm"]["input_shapes"].startswith("[[64]")
    assert vision["aten::addmm"]["self_cpu_memory_bytes"] == 3 * 32 * 64 * 4  # three float32 outputs
    # a CPU run has no device time: ranked by self CPU time
    cpu = [op["self_cpu_us"] for op in table["vision"]["top"]]
    assert cpu == sorted(cpu, reverse=True)
    assert table["vision"]["self_cpu_us"] == sum(op["self_cpu_us"] for op in table["vision"]["top"])
    assert any(op["name"] == "aten::relu" for op in table["decode"]["top"])
    assert any(op["name"] == "aten::sigmoid" for op in table["other"]["top"])
    assert table["prefill"] == {
        "operators": 0,
        "self_cpu_us": 0,
        "self_device_us": 0,
        "self_cpu_memory_bytes": 0,
        "self_device_memory_bytes": 0,
        "top": [],
    }


def test_a_torch_only_run_is_analyzed_into_operator_tables(tmp_path: Path) -> None:
    """A real `--tool torch` run of the full-size DeepSeek-OCR-2 on an H200: analyze gives its operator
    tables per stage (no export, so no NVTX attribution and no kernel joined to nsys), a report and a
    summary, and the text output names the top operator of each stage."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "h200-full-ocr2-torch-only", run)
    proc = run_perfctl("analyze", str(run), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    analysis = json.loads(proc.stdout)
    assert "export" not in analysis and "no nsys export" in analysis["source"]
    assert analysis["run"]["tool"] == "torch" and analysis["run"]["pages_completed"] == 2
    decode = analysis["operators"]["stages"]["decode"]
    assert decode["operators"] > 0 and decode["self_device_us"] > 0
    html = (run / "report.html").read_text()
    assert "no nsys pass" in html and "aten::" in html
    assert (run / "summary.md").is_file()
    text = run_perfctl("analyze", str(run)).stdout
    assert "Chrome trace" in text and "decode" in text
