"""The torch.profiler pass's operator table, from a real profile of real operators (CPU)."""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import FIXTURES, run_perfctl
from perfctl.driver.torch_events import read_cpu_events
from perfctl.driver.torch_pass import (
    KERNELS_PER_OPERATOR,
    RANGE_PREFIX,
    RecordFunctionEmitter,
    finish_profiler,
    operator_table,
    start_profiler,
)
from perfctl.stages import PAGE, STAGES


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
    table = operator_table(read_cpu_events(_profile()), ["vision", "prefill", "decode"], top_n=30)
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


def _table_from_torch_events(events: Any, stages: list[str], top_n: int) -> dict[str, Any]:
    """The operator table as perfctl first computed it, over torch's own `prof.events()` (FunctionEvent
    trees, parents walked per event): the reference read_cpu_events + operator_table must match."""
    from torch.profiler import DeviceType

    def stage_of(event: Any) -> str | None:
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith(RANGE_PREFIX) and parent.name[len(RANGE_PREFIX) :] in stages:
                return str(parent.name[len(RANGE_PREFIX) :])
            parent = parent.cpu_parent
        return None

    def inside_same_operator(event: Any) -> bool:
        parent = event.cpu_parent
        while parent is not None:
            if parent.name == event.name:
                return True
            parent = parent.cpu_parent
        return False

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    shapes: dict[tuple[str, str], Counter[str]] = {}
    kernels: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for event in events:
        if event.name.startswith(RANGE_PREFIX) or event.device_type != DeviceType.CPU:
            continue
        key = (stage_of(event) or "other", event.name)
        row = rows.setdefault(
            key,
            {
                "calls": 0,
                "self_cpu_us": 0.0,
                "cpu_total_us": 0.0,
                "self_device_us": 0.0,
                "device_total_us": 0.0,
                "self_cpu_memory_bytes": 0,
                "self_device_memory_bytes": 0,
            },
        )
        row["calls"] += 1
        row["self_cpu_us"] += float(event.self_cpu_time_total)
        row["self_device_us"] += float(event.self_device_time_total)
        if not inside_same_operator(event):
            row["cpu_total_us"] += float(event.cpu_time_total)
            row["device_total_us"] += float(event.device_time_total)
        row["self_cpu_memory_bytes"] += int(event.self_cpu_memory_usage)
        row["self_device_memory_bytes"] += int(event.self_device_memory_usage)
        shapes.setdefault(key, Counter())[json.dumps(event.input_shapes)] += 1
        for kernel in event.kernels:
            launched = kernels.setdefault(key, {}).setdefault(kernel.name, [0, 0.0])
            launched[0] += 1
            launched[1] += float(kernel.duration)
    table: dict[str, Any] = {}
    for stage in [*stages, "other"]:
        mine = [(name, row) for (s, name), row in rows.items() if s == stage]
        mine.sort(key=lambda item: (-item[1]["self_device_us"], -item[1]["self_cpu_us"]))
        table[stage] = {
            "operators": len(mine),
            "self_cpu_us": sum(r["self_cpu_us"] for _, r in mine),
            "self_device_us": sum(r["self_device_us"] for _, r in mine),
            "self_cpu_memory_bytes": sum(r["self_cpu_memory_bytes"] for _, r in mine),
            "self_device_memory_bytes": sum(r["self_device_memory_bytes"] for _, r in mine),
            "top": [
                {
                    "name": name,
                    **row,
                    "input_shapes": shapes[(stage, name)].most_common(1)[0][0],
                    "kernels": [
                        {"name": k, "calls": n, "device_us": us}
                        for k, (n, us) in sorted(
                            kernels.get((stage, name), {}).items(), key=lambda kv: -kv[1][1]
                        )[:KERNELS_PER_OPERATOR]
                    ],
                }
                for name, row in mine[:top_n]
            ],
        }
    return table


class _NoRanges:
    """The emitter RecordFunctionEmitter wraps, where no NVTX range is wanted (no nsys here)."""

    def push(self, name: str, payload: int | None = None) -> None:
        pass

    def pop(self) -> None:
        pass


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")),
]


@pytest.mark.parametrize("device", DEVICES)
def test_operators_json_is_the_same_as_from_torchs_own_events(device: str, tmp_path: Path) -> None:
    """The built-in tiny DeepSeek-OCR-2 profiled as the driver profiles it (two pages, stage ranges,
    shapes and memory recorded; on a GPU kernels and launches too): operators.json, built from the
    kineto results in one pass, is byte for byte the table computed from torch's `prof.events()`."""
    from perfctl.driver.__main__ import resolve_device_dtype, stage_marker
    from perfctl.resources import SAMPLE_PAGES_DIR
    from perfctl.workloads.loader import load_workload
    from perfctl.workloads.models import resolve_model

    device, dtype = resolve_device_dtype(device, "auto")
    work = load_workload(resolve_model("deepseek-ocr2-tiny"), device, dtype, 0)
    pages = [work.prepare(p) for p in sorted(SAMPLE_PAGES_DIR.glob("*.png"))[:2]]
    emitter = RecordFunctionEmitter(_NoRanges())
    marker, _ = stage_marker(emitter, device, sync_stage_edges=False)
    decoder, vision = work.stage_modules()
    marker.attach(work.model, decoder, vision, new_tokens=6)
    gen = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False}
    with torch.inference_mode():
        prof = start_profiler(device)
        for sequence, page in enumerate(pages):
            emitter.push(PAGE, sequence)
            marker.begin_page()
            work.model.generate(**page.inputs, **gen, logits_processor=marker.logits_processors())
            marker.end_page()
            emitter.pop()
        seconds = finish_profiler(prof, tmp_path, list(STAGES))
    marker.detach()
    written = (tmp_path / "operators.json").read_text()
    assert written == json.dumps(_table_from_torch_events(prof.events(), list(STAGES), 30), indent=1)
    table = json.loads(written)
    assert all(table[stage]["operators"] > 0 for stage in STAGES), {s: table[s]["operators"] for s in table}
    names = {op["name"] for op in table["decode"]["top"]}
    assert "aten::mm" in names or "aten::addmm" in names or "aten::linear" in names, names
    if device.startswith("cuda"):
        assert any(op["kernels"] for op in table["decode"]["top"]) and table["decode"]["self_device_us"] > 0
    # the Chrome trace: gzipped whole, its uncompressed copy gone
    with gzip.open(tmp_path / "trace.json.gz", "rt") as trace:
        events = json.load(trace)["traceEvents"]
    assert any(e.get("name") == RANGE_PREFIX + "decode" for e in events)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["operators.json", "trace.json.gz"]
    assert set(seconds) == {"stop", "trace_export", "operators", "trace_gzip", "trace_gzip_wait"}


def test_the_table_matches_torchs_own_events_with_nesting_and_memory() -> None:
    """Same-name nesting (folded by torch), operators outside every stage, allocations and frees, and
    frees outside every operator (torch's top-level "[memory]" events)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    stages = ["vision", "prefill", "decode"]
    prof = _profile()
    expected = _table_from_torch_events(prof.events(), stages, 30)
    assert operator_table(read_cpu_events(prof), stages, 30) == expected
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, profile_memory=True) as prof:
        x = torch.randn(128, 128)
        with record_function(RANGE_PREFIX + "decode"):
            y = torch.relu(x)
        del x, y  # freed outside every operator
        torch.cat([torch.ones(3), torch.zeros(2)])
    table = operator_table(read_cpu_events(prof), stages, 30)
    assert table == _table_from_torch_events(prof.events(), stages, 30)
    freed = [op for op in table["other"]["top"] if op["name"] == "[memory]"]
    assert freed and freed[0]["self_cpu_memory_bytes"] < 0
