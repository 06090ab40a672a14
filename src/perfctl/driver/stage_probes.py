"""What the clean timing pass measures at each stage edge besides the host clock.

* `CudaStageProbe`: a pair of CUDA events around every stage (the GPU's own clock, read once the
  page is done so that reading them adds no synchronization) and the peak of allocated device
  memory inside each stage (the allocator's peak counter, reset when the stage opens).
* `host_cpu_sample` / `host_cpu_delta`: how much CPU this process got during a page and how much
  the hypervisor withheld from the machine (steal time). On a virtual machine a page that ran slow
  because the host was busy shows steal; one that ran slow inside the process shows its own CPU
  time grown. Both are evidence for the stability verdict, not corrections.
* `host_speed_probe`: the time of a fixed piece of pure-Python work, taken before each page. Decode
  of a launch-bound model is host work (Python, dispatch, kernel launches), so when the host CPU runs
  slower for a while -- a busy neighbour on the same physical host, power management -- stage times
  follow it even with no steal reported and the GPU idle. Seen on an H200 VM: phases of seconds where
  every stage ran 1.5x slower with process CPU = wall time and no steal.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any

from perfctl.stages import DECODE


@dataclass
class StageGpuFigures:
    """One page's CUDA-event stage times and per-stage peak allocated memory."""

    gpu_ns: dict[str, int] = field(default_factory=dict)
    decode_step_gpu_ns: list[int] = field(default_factory=list)
    peak_allocated_bytes: dict[str, int] = field(default_factory=dict)
    allocated_at_start_bytes: int = 0


class CudaStageProbe:
    """Call `begin(stage)` right after the GPU is synchronized at a stage's start and `end(stage)`
    right before the synchronization at its end; `collect()` once the page is done."""

    def __init__(self, device: str) -> None:
        import torch

        self._torch = torch
        self._device = torch.device(device)
        self._pairs: list[tuple[str, Any, Any]] = []
        self._start: Any = None
        self._figures = StageGpuFigures()

    def begin_page(self) -> None:
        self._pairs.clear()
        self._figures = StageGpuFigures(
            allocated_at_start_bytes=int(self._torch.cuda.memory_allocated(self._device))
        )

    def begin(self, stage: str) -> None:
        self._torch.cuda.reset_peak_memory_stats(self._device)
        self._start = self._torch.cuda.Event(enable_timing=True)
        self._start.record()

    def end(self, stage: str) -> None:
        end = self._torch.cuda.Event(enable_timing=True)
        end.record()
        self._pairs.append((stage, self._start, end))
        peak = int(self._torch.cuda.max_memory_allocated(self._device))
        figures = self._figures.peak_allocated_bytes
        figures[stage] = max(figures.get(stage, 0), peak)

    def collect(self) -> StageGpuFigures:
        """The page's figures; waits for the last event (the page's GPU work is done by then)."""
        figures = self._figures
        if self._pairs:
            self._pairs[-1][2].synchronize()
        for stage, start, end in self._pairs:
            ns = round(start.elapsed_time(end) * 1e6)  # elapsed_time is in milliseconds
            figures.gpu_ns[stage] = figures.gpu_ns.get(stage, 0) + ns
            if stage == DECODE:
                figures.decode_step_gpu_ns.append(ns)
        self._pairs.clear()
        return figures


# about 1-2 ms of interpreter work on a current server core: long enough to time, short beside a page
_PROBE_ITERATIONS = 50_000


def host_speed_probe() -> int:
    """Nanoseconds a fixed pure-Python loop takes now (best of three, so one interruption does not
    count): a reading of how fast this host runs Python at the moment."""
    best = None
    for _ in range(3):
        start = time.perf_counter_ns()
        total = 0
        for i in range(_PROBE_ITERATIONS):
            total += i & 7
        took = time.perf_counter_ns() - start
        best = took if best is None else min(best, took)
    assert best is not None
    return best


def host_cpu_sample() -> tuple[int, list[int]]:
    """(this process's user+system CPU time in ns, the machine's /proc/stat `cpu` tick counters)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_ns = round((usage.ru_utime + usage.ru_stime) * 1e9)
    try:
        with open("/proc/stat") as stat:
            ticks = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        ticks = []
    return cpu_ns, ticks


def host_cpu_delta(before: tuple[int, list[int]], after: tuple[int, list[int]]) -> dict[str, Any]:
    """Process CPU time over the interval, and the machine's steal share (steal ticks over all ticks
    of all CPUs; /proc/stat's 8th counter) when the kernel reports it."""
    out: dict[str, Any] = {"process_cpu_ns": after[0] - before[0]}
    b, a = before[1], after[1]
    if len(b) >= 8 and len(a) >= 8:
        total = sum(a[:8]) - sum(b[:8])
        out["steal_share"] = (a[7] - b[7]) / total if total > 0 else 0.0
        out["cpus"] = os.cpu_count()
    return out
