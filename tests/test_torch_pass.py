"""The torch.profiler pass's operator table, from a real profile of real operators (CPU)."""

from __future__ import annotations

from typing import Any

import torch

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
