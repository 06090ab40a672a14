"""The records of analysis.json that an Nsight Compute report gives (perfctl.ncu_rep reads it;
perfctl.analysis.measured_work sets it beside the nsys pass and the FLOP model). TypedDicts, as in
perfctl.analysis.result; docs/ncu.md documents every key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, NotRequired, TypedDict

Bound = Literal["memory", "compute", "latency", "unknown"]
# KernelFlops' precisions (its keys but `total`), in the record's order
FLOP_PRECISIONS = (
    "fp64",
    "fp32",
    "fp16",
    "fp64_tensor",
    "tf32_tensor",
    "fp16_tensor",
    "bf16_tensor",
    "fp8_tensor",
)


class KernelFlops(TypedDict):
    """Floating-point operations one kernel instance executed, by precision, as the counters give them
    (perfctl.ncu_rep.metrics says which counter each comes from): the CUDA cores' fp64/fp32/fp16
    (an FMA counts 2) and the tensor cores' per input type. `total` is their sum."""

    fp64: float
    fp32: float
    fp16: float
    fp64_tensor: float
    tf32_tensor: float
    fp16_tensor: float
    bf16_tensor: float
    fp8_tensor: float
    total: float


def as_kernel_flops(by_precision: Mapping[str, float]) -> KernelFlops:
    """FLOPs by precision (FLOP_PRECISIONS) as the record, with their total."""
    return {
        "fp64": by_precision["fp64"],
        "fp32": by_precision["fp32"],
        "fp16": by_precision["fp16"],
        "fp64_tensor": by_precision["fp64_tensor"],
        "tf32_tensor": by_precision["tf32_tensor"],
        "fp16_tensor": by_precision["fp16_tensor"],
        "bf16_tensor": by_precision["bf16_tensor"],
        "fp8_tensor": by_precision["fp8_tensor"],
        "total": sum(by_precision[p] for p in FLOP_PRECISIONS),
    }


class NcuKernel(TypedDict):
    """One profiled kernel instance (one result of the report)."""

    id: int  # the result's index in the report (ncu's "ID")
    name: str  # demangled, bounded as perfctl bounds every name (nsys_export.names)
    short_name: str  # the function name alone, as ncu shows it
    nvtx_range: str | None  # the innermost push/pop range of perfctl's domain (else of another domain)
    nvtx_stack: list[str]  # that domain's push/pop ranges, outermost first
    stage: str | None  # vision / prefill / decode, when the stack holds one of perfctl's stages
    grid: list[int]  # [x, y, z]
    block: list[int]
    duration_ns: float | None  # gpu__time_duration.sum (under ncu's clock control; see sm_clock_hz)
    flops: KernelFlops
    dram_bytes_read: float | None
    dram_bytes_write: float | None
    arithmetic_intensity: float | None  # flops.total / DRAM bytes (read + write); None without DRAM bytes
    sm_throughput_pct: float | None  # compute: sm__throughput, % of peak sustained
    memory_throughput_pct: float | None  # memory: gpu__compute_memory_throughput (DRAM, L2, L1)
    dram_throughput_pct: float | None  # gpu__dram_throughput
    achieved_occupancy_pct: float | None  # sm__warps_active, % of the SM's warp slots
    sm_clock_hz: float | None  # the SM clock the kernel ran at (sm__cycles_elapsed.avg.per_second)
    max_sm_clock_hz: float | None  # the GPU's boost clock (device__attribute_max_gpu_frequency_khz)
    replay_passes: int | None  # profiler__replayer_passes
    bound: Bound


class NcuDevice(TypedDict):
    name: str | None
    sm_count: int | None
    max_sm_clock_hz: float | None


class NcuReport(TypedDict):
    """A .ncu-rep file read whole (`perfctl analyze FILE.ncu-rep`)."""

    path: str
    reader: str  # the ncu_report module's version that read it
    devices: list[NcuDevice]
    clock_control: NotRequired[str | None]  # from perfctl's ncu/command.json when the run recorded it
    kernels: list[NcuKernel]
    warnings: list[str]


class RooflinePoint(TypedDict):
    """One profiled kernel (name and launch configuration) of a stage, on that stage's roofline."""

    name: str
    short_name: str
    grid: list[int]
    block: list[int]
    instances_per_page: float  # in the nsys pass
    share_of_stage_kernel_time: float  # of the nsys pass's kernel time in the stage
    arithmetic_intensity: float | None
    achieved_tflops: float | None  # flops.total / duration_ns, at the clock ncu ran it
    sm_clock_hz: float | None  # that clock (the mean over the profiled instances)
    bound: Bound


class StageMeasuredWork(TypedDict):
    """A stage's work as the counters measured it, beside perfctl's analytic FLOPs, per page."""

    stage: str
    kernel_time_ns_per_page: float  # the nsys pass's kernel time in the stage
    covered_time_ns_per_page: float  # of that, the kernels (name + launch configuration) ncu profiled
    coverage: float  # covered / kernel time
    profiled_kernels: int  # distinct (name, launch configuration) profiled in the stage
    measured_flops_per_page: KernelFlops  # each profiled kernel's mean x its instances per page
    measured_dram_bytes_per_page: float
    analytic_flops_per_page: float | None  # perfctl's FLOP model (efficiency)
    measured_over_analytic: float | None
    gap: list[str]  # what explains measured != analytic, largest first
    roofline: list[RooflinePoint]


class Roofs(TypedDict):
    """The roofs the stage charts are drawn against: the datasheet's dense peak at the boost clock,
    and the same scaled to the SM clock ncu ran the kernels at (ncu locks the base clock by default)."""

    gpu: str | None
    dtype: str
    peak_tflops_boost: float | None
    peak_tflops_at_profiled_clock: float | None
    profiled_sm_clock_hz: float | None
    max_sm_clock_hz: float | None
    bandwidth_gbs: float | None
    source: str


class NcuPass(TypedDict):
    """analysis.json's `ncu`: a run folder's Nsight Compute pass, read and set beside the nsys pass."""

    report: str  # the .ncu-rep's path
    command: list[str] | None
    clock_control: str | None
    selection: NotRequired[dict[str, list[str]]]  # stage -> the kernel names the capture chose
    kernels: list[NcuKernel]
    stages: list[StageMeasuredWork]
    roofs: Roofs
    warnings: list[str]
