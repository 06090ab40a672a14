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
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from perfctl.driver.markers import RangeEmitter
from perfctl.driver.torch_events import CpuEvent, read_cpu_events
from perfctl.files import write_text_atomic
from perfctl.run_folder import OPERATORS_FILE, TORCH_TRACE_FILE, TORCH_TRACE_GZ_FILE

RANGE_PREFIX = "perfctl:"
KERNELS_PER_OPERATOR = 5
TRACE_GZIP_LEVEL = 6
TRACE_COPY_CHUNK = 1 << 20


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


def finish_profiler(prof: Any, folder: Path, stages: list[str], top_n: int = 30) -> dict[str, float]:
    """Stop the profiler, write the Chrome trace and operators.json; returns the seconds each step took
    (the trace is compressed on a second thread while the operator table is built: zlib lets go of the
    GIL, and level 6 takes a quarter of level 9's time for a file an eighth bigger)."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = round(now - clock, 3)
        clock = now

    prof.__exit__(None, None, None)
    lap("stop")
    folder.mkdir(parents=True, exist_ok=True)
    trace = folder / TORCH_TRACE_FILE
    prof.export_chrome_trace(str(trace))
    lap("trace_export")
    with ThreadPoolExecutor(max_workers=1) as pool:
        compressed = pool.submit(_compress_trace, trace, folder / TORCH_TRACE_GZ_FILE)
        table = operator_table(read_cpu_events(prof), stages, top_n)
        write_text_atomic(folder / OPERATORS_FILE, json.dumps(table, indent=1))
        lap("operators")
        seconds["trace_gzip"] = compressed.result()
    lap("trace_gzip_wait")
    return seconds


def _compress_trace(trace: Path, target: Path) -> float:
    """`trace` gzipped into `target` (then deleted); the seconds it took."""
    start = time.perf_counter()
    partial = target.with_name(f".{target.name}.partial")  # renamed once whole: no half file on a full disk
    with trace.open("rb") as src, gzip.open(partial, "wb", compresslevel=TRACE_GZIP_LEVEL) as dst:
        shutil.copyfileobj(src, dst, TRACE_COPY_CHUNK)
    partial.replace(target)
    trace.unlink()
    return round(time.perf_counter() - start, 3)


def _inside_same_operator(event: CpuEvent) -> bool:
    parent = event.parent
    while parent is not None:
        if parent.name == event.name:
            return True
        parent = parent.parent
    return False


def operator_table(events: list[CpuEvent], stages: list[str], top_n: int) -> dict[str, Any]:
    """Per stage: operators called directly under the stage or under other operators, by self time.
    `events`: read_cpu_events(prof)."""
    wanted = set(stages)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    shapes: dict[tuple[str, str], Counter[str]] = {}
    shapes_json: dict[str, str] = {}  # repr -> JSON of an input-shapes list (repr is the cheaper key)
    kernels: dict[tuple[str, str], dict[str, list[Any]]] = {}
    innermost: dict[CpuEvent, str] = {}  # per event: the innermost stage range at or above it ("other")

    def stage_at(event: CpuEvent) -> str:
        path = []
        at: CpuEvent | None = event
        while at is not None and at not in innermost:
            path.append(at)
            at = at.parent
        stage = "other" if at is None else innermost[at]
        for above in reversed(path):  # outermost first: a stage range inside a stage range wins
            name = above.name
            if name.startswith(RANGE_PREFIX) and name[len(RANGE_PREFIX) :] in wanted:
                stage = name[len(RANGE_PREFIX) :]
            innermost[above] = stage
        return stage

    for event in events:
        if event.name.startswith(RANGE_PREFIX):
            continue
        stage = "other" if event.parent is None else stage_at(event.parent)
        key = (stage, event.name)
        row = rows.get(key)
        if row is None:
            row = rows[key] = {
                "calls": 0,
                "self_cpu_us": 0.0,
                "cpu_total_us": 0.0,
                "self_device_us": 0.0,
                "device_total_us": 0.0,
                "self_cpu_memory_bytes": 0,
                "self_device_memory_bytes": 0,
            }
            shapes[key] = Counter()
        row["calls"] += 1
        row["self_cpu_us"] += float(event.self_cpu_us)
        row["self_device_us"] += float(event.self_device_us)
        if not _inside_same_operator(event):  # a recursive call's total is inside its caller's already
            row["cpu_total_us"] += float(event.cpu_total_us)
            row["device_total_us"] += float(event.device_total_us)
        row["self_cpu_memory_bytes"] += int(event.self_cpu_memory)
        row["self_device_memory_bytes"] += int(event.self_device_memory)
        seen = repr(event.input_shapes)
        if seen not in shapes_json:
            shapes_json[seen] = json.dumps(event.input_shapes)
        shapes[key][shapes_json[seen]] += 1
        for kernel_name, duration in event.kernels:  # GPU kernels it launched (the profiler's correlation)
            launched = kernels.setdefault(key, {}).setdefault(kernel_name, [0, 0.0])
            launched[0] += 1
            launched[1] += float(duration)
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
