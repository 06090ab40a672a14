"""Read a .ncu-rep file with NVIDIA's own report interface (the `ncu-report` package, which reads
reports on a machine with no GPU): one NcuKernel per profiled kernel instance.

A metric the report lacks (collected with another section set, or not on this GPU) is None where the
record allows it, and counts 0 FLOPs where it is a FLOP counter; each missing counter is named once in
the report's warnings, so a partial report never passes for a complete one.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from perfctl.analysis.result_ncu import Bound, KernelFlops, NcuDevice, NcuKernel, NcuReport, as_kernel_flops
from perfctl.errors import BadInput
from perfctl.ncu_rep import metrics as m
from perfctl.nsys_export.names import bound_name
from perfctl.stages import DOMAIN, STAGES

# The first bytes of a .ncu-rep file (every report ncu 2025.3.1 wrote here): checked before NVIDIA's reader
# sees the file, which reads other files as an empty report.
MAGIC = b"NVR\x00"

NCU_REPORT_HINT = (
    "reading .ncu-rep files needs NVIDIA's ncu-report package (pip install ncu-report; it reads "
    "reports on machines without a GPU)"
)


def ncu_report_module() -> Any:
    """NVIDIA's `ncu_report` module, or BadInput naming the package to install."""
    try:
        return importlib.import_module("ncu_report")
    except ImportError as exc:
        raise BadInput(f"{NCU_REPORT_HINT}: {exc}") from None


@contextlib.contextmanager
def _native_stderr(said: list[str]) -> Iterator[None]:
    """Hold what native code writes to file descriptor 2 meanwhile (NVIDIA's reader logs parse errors
    of a damaged file there through absl), and put its lines into `said`: perfctl's own error stays
    the one line on stderr."""
    with tempfile.TemporaryFile() as held:
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode(errors="replace")
            said += [line.strip() for line in text.splitlines() if line.strip()]


def _native_reason(said: list[str]) -> str:
    """The reader's own words about a file it could not read (its last log line, without absl's prefix)."""
    errors = [line for line in said if line.startswith("E") and "]" in line]
    return errors[-1].split("]", 1)[1].strip() if errors else ""


def read_ncu_report(path: Path) -> NcuReport:
    """Every profiled kernel instance of the report at `path`, in the report's order."""
    if not path.is_file():
        raise BadInput(f"{path}: no such Nsight Compute report")
    try:
        with path.open("rb") as f:
            head = f.read(len(MAGIC))
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
    if head != MAGIC:
        raise BadInput(f"{path} is not an Nsight Compute report (it does not begin as a .ncu-rep does)")
    ncu_report = ncu_report_module()
    said: list[str] = []
    try:
        with _native_stderr(said):
            context = ncu_report.load_report(str(path))
    except Exception as exc:  # the module raises its own error types for unreadable files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"{path} is not a readable Nsight Compute report ({reason})") from None
    missing: dict[str, None] = {}
    kernels: list[NcuKernel] = []
    devices: dict[tuple[Any, ...], NcuDevice] = {}
    unreadable = 0
    for r in range(context.num_ranges()):
        result_range = context.range_by_idx(r)
        for a in range(result_range.num_actions()):
            try:
                action = result_range.action_by_idx(a)
                kernel = _kernel(ncu_report, action, len(kernels) + unreadable, missing)
                device = _device(action)
            except Exception:  # the module's own errors, or a result a cut-short file left half there
                unreadable += 1
                continue
            kernels.append(kernel)
            devices.setdefault(tuple(device.values()), device)
    if not kernels:
        native = _native_reason(said)
        raise BadInput(
            f"{path} is a damaged Nsight Compute report ({native})"
            if native
            else f"{path} holds no readable profiled kernels (ncu's filters matched none, or the file is "
            "damaged)"
        )
    warnings = [
        f"{unreadable} profiled results of the report could not be read (a damaged or cut-short file): "
        "they are left out"
    ] * bool(unreadable) + [
        f"{name} is not in the report (collected with another section set, or not on this GPU): "
        "what it measures is missing from every kernel"
        for name in missing
    ]
    return {
        "path": str(path),
        "reader": f"ncu_report {context.get_version()}" if hasattr(context, "get_version") else "ncu_report",
        "devices": list(devices.values()),
        "kernels": kernels,
        "warnings": warnings,
    }


def _number(action: Any, name: str, missing: dict[str, None] | None = None) -> float | None:
    metric = action.metric_by_name(name)
    if metric is None:
        if missing is not None:
            missing[name] = None
        return None
    value = metric.value()
    return float(value) if isinstance(value, int | float) else None


def _device(action: Any) -> NcuDevice:
    name = action.metric_by_name(m.DEVICE_NAME)
    sm_count = _number(action, m.SM_COUNT)
    khz = _number(action, m.MAX_SM_CLOCK_KHZ)
    return {
        "name": None if name is None else bound_name(str(name.value())),
        "sm_count": None if sm_count is None else int(sm_count),
        "max_sm_clock_hz": None if khz is None else khz * 1e3,
    }


def _nvtx(action: Any) -> tuple[str | None, list[str]]:
    """The innermost push/pop range and the stack of perfctl's domain, else of the first other domain
    that has ranges (named "domain@range")."""
    state = action.nvtx_state()
    if state is None:  # (a result with no NVTX state: ncu ran without --nvtx, or a cut-short report)
        return None, []
    stacks: list[tuple[str, list[str]]] = []
    for domain_id in state.domains():
        domain = state.domain_by_id(domain_id)
        ranges = [bound_name(str(name)) for name in domain.push_pop_ranges()]
        if ranges:
            stacks.append((bound_name(str(domain.name())), ranges))
    for domain_name, ranges in stacks:
        if domain_name == DOMAIN:
            return ranges[-1], ranges
    if stacks:
        domain_name, ranges = stacks[0]
        return f"{domain_name}@{ranges[-1]}", [f"{domain_name}@{r}" for r in ranges]
    return None, []


def _flops(action: Any, missing: dict[str, None]) -> KernelFlops:
    by_precision: dict[str, float] = {}
    for precision, counters in m.FLOP_COUNTERS.items():
        values = [(_number(action, name, missing), weight) for name, weight in counters]
        by_precision[precision] = sum(value * weight for value, weight in values if value is not None)
    return as_kernel_flops(by_precision)


def classify_bound(sm_pct: float | None, memory_pct: float | None) -> Bound:
    """memory, compute or latency, from the two throughputs (metrics.LATENCY_BOUND_PCT says how)."""
    if sm_pct is None or memory_pct is None:
        return "unknown"
    if max(sm_pct, memory_pct) < m.LATENCY_BOUND_PCT:
        return "latency"
    return "memory" if memory_pct >= sm_pct else "compute"


def _dims(action: Any, names: tuple[str, str, str]) -> list[int]:
    return [int(_number(action, n) or 0) for n in names]


def _kernel(ncu_report: Any, action: Any, index: int, missing: dict[str, None]) -> NcuKernel:
    if action.name() is None:
        raise ValueError("a result without a kernel name")  # (what a cut-short file leaves)
    nvtx_range, stack = _nvtx(action)
    stage = next((r for r in reversed(stack) if r in STAGES), None)
    flops = _flops(action, missing)
    read, write = _number(action, m.DRAM_READ, missing), _number(action, m.DRAM_WRITE, missing)
    dram = None if read is None or write is None else read + write
    sm_pct = _number(action, m.SM_THROUGHPUT, missing)
    memory_pct = _number(action, m.MEMORY_THROUGHPUT, missing)
    khz = _number(action, m.MAX_SM_CLOCK_KHZ)
    passes = _number(action, m.REPLAY_PASSES)
    return {
        "id": index,
        "name": bound_name(str(action.name(ncu_report.IAction.NameBase_DEMANGLED))),
        "short_name": bound_name(str(action.name())),
        "nvtx_range": nvtx_range,
        "nvtx_stack": stack,
        "stage": stage,
        "grid": _dims(action, m.GRID),
        "block": _dims(action, m.BLOCK),
        "duration_ns": _number(action, m.DURATION, missing),
        "flops": flops,
        "dram_bytes_read": read,
        "dram_bytes_write": write,
        "arithmetic_intensity": flops["total"] / dram if dram else None,
        "sm_throughput_pct": sm_pct,
        "memory_throughput_pct": memory_pct,
        "dram_throughput_pct": _number(action, m.DRAM_THROUGHPUT, missing),
        "achieved_occupancy_pct": _number(action, m.ACHIEVED_OCCUPANCY, missing),
        "sm_clock_hz": _number(action, m.SM_CLOCK, missing),
        "max_sm_clock_hz": None if khz is None else khz * 1e3,
        "replay_passes": None if passes is None else int(passes),
        "bound": classify_bound(sm_pct, memory_pct),
    }
