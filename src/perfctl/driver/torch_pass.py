"""The torch.profiler pass: the same workload under `torch.profiler`, stages as `record_function` ranges.

Writes, into the pass folder:
  operators.json   per stage (and "other" for work outside every stage), the operators that ran
                   inside it: calls, self and total CPU time, self and total device time, self CPU /
                   device memory allocated, the input shapes seen most, and the GPU kernels each one
                   launched (microseconds, bytes)
  trace.json.gz    the Chrome trace (opens in Perfetto / chrome://tracing)
Operators (and the CUDA runtime calls they make, such as cudaLaunchKernel, whose CPU time is the
launch overhead) are attributed to the innermost perfctl range above them; GPU kernels count inside
the device time of the operator that launched them. Sums over a stage add self times, so nested
operators count once; an operator's total (inclusive) time adds its outermost calls only, so a call
made inside another call of the same operator is not counted twice.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from perfctl.capture.manifest import write_text_atomic
from perfctl.driver.markers import RangeEmitter

RANGE_PREFIX = "perfctl:"
KERNELS_PER_OPERATOR = 5


class RecordFunctionEmitter:
    """NVTX ranges as before, plus a `record_function` range of the same name for torch.profiler."""

    def __init__(self, inner: RangeEmitter) -> None:
        self._inner = inner
        self._open: list[Any] = []

    def push(self, name: str, payload: int | None = None) -> None:
        import torch

        self._inner.push(name, payload)
        scope = torch.profiler.record_function(RANGE_PREFIX + name)
        scope.__enter__()
        self._open.append(scope)

    def pop(self) -> None:
        self._open.pop().__exit__(None, None, None)
        self._inner.pop()


def start_profiler(device: str) -> Any:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    prof = profile(activities=activities, record_shapes=True, profile_memory=True)
    prof.__enter__()
    return prof


def finish_profiler(prof: Any, folder: Path, stages: list[str], top_n: int = 30) -> None:
    prof.__exit__(None, None, None)
    folder.mkdir(parents=True, exist_ok=True)
    trace = folder / "trace.json"
    prof.export_chrome_trace(str(trace))
    partial = folder / ".trace.json.gz.partial"  # renamed once whole: a full disk leaves no half file
    with trace.open("rb") as src, gzip.open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst)
    partial.replace(folder / "trace.json.gz")
    trace.unlink()
    table = operator_table(prof.events(), stages, top_n)
    write_text_atomic(folder / "operators.json", json.dumps(table, indent=1))


def _stage_of(event: Any, stages: set[str]) -> str | None:
    """The innermost perfctl stage range above `event`, or None."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(RANGE_PREFIX) and parent.name[len(RANGE_PREFIX) :] in stages:
            return str(parent.name[len(RANGE_PREFIX) :])
        parent = parent.cpu_parent
    return None


def _inside_same_operator(event: Any) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == event.name:
            return True
        parent = parent.cpu_parent
    return False


def operator_table(events: Any, stages: list[str], top_n: int) -> dict[str, Any]:
    """Per stage: operators called directly under the stage or under other operators, by self time."""
    wanted = set(stages)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    shapes: dict[tuple[str, str], Counter[str]] = {}
    kernels: dict[tuple[str, str], dict[str, list[Any]]] = {}
    from torch.profiler import DeviceType

    for event in events:
        # GPU kernels are events of their own; their time is already each operator's device time
        if event.name.startswith(RANGE_PREFIX) or event.device_type != DeviceType.CPU:
            continue
        stage = _stage_of(event, wanted) or "other"
        key = (stage, event.name)
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
        if not _inside_same_operator(event):  # a recursive call's total is inside its caller's already
            row["cpu_total_us"] += float(event.cpu_time_total)
            row["device_total_us"] += float(event.device_time_total)
        row["self_cpu_memory_bytes"] += int(event.self_cpu_memory_usage)
        row["self_device_memory_bytes"] += int(event.self_device_memory_usage)
        shapes.setdefault(key, Counter())[json.dumps(event.input_shapes)] += 1
        for kernel in event.kernels:  # the GPU kernels this operator launched (the profiler's correlation)
            launched = kernels.setdefault(key, {}).setdefault(kernel.name, [0, 0.0])
            launched[0] += 1
            launched[1] += float(kernel.duration)
    table: dict[str, Any] = {}
    for stage in [*stages, "other"]:
        mine = [(name, row) for (s, name), row in rows.items() if s == stage]
        # by self device time, then self CPU time (all a CPU run has); one unit per key, so a launch
        # call's CPU microseconds never outrank an operator's GPU microseconds
        mine.sort(key=lambda item: (-item[1]["self_device_us"], -item[1]["self_cpu_us"]))
        table[stage] = {
            "operators": len(mine),
            "self_cpu_us": sum(r["self_cpu_us"] for _, r in mine),
            "self_device_us": sum(r["self_device_us"] for _, r in mine),
            # net memory the stage's operators allocated (allocations minus frees, bytes)
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
