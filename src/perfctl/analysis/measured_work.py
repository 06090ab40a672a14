"""Each stage's work as Nsight Compute's counters measured it, beside perfctl's analytic FLOPs.

ncu profiles a few instances of each launch configuration (kernel name, grid, block) of the kernels
the capture chose; the nsys pass says how often each configuration ran per stage. A stage's measured
FLOPs and DRAM bytes per page are, over the configurations ncu profiled in that stage, the profiled
instances' mean times the configuration's instances per page in the nsys pass. `coverage` is the
share of the stage's kernel time (nsys) those configurations hold; the rest of the stage's work is
not counted, and the gap notes say how much that is.

The roofs: the datasheet's dense peak for the run's dtype (hardware.peaks, at the boost clock) and
the same scaled by the SM clock ncu ran the kernels at (ncu locks the base clock unless told
otherwise) over the GPU's boost clock, which is what the kernels' achieved rates are comparable to.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping

from perfctl.analysis.result_ncu import (
    FLOP_PRECISIONS as PRECISIONS,
)
from perfctl.analysis.result_ncu import (
    KernelFlops,
    NcuKernel,
    RooflinePoint,
    Roofs,
    StageMeasuredWork,
    as_kernel_flops,
)
from perfctl.nsys_export.kernel_configs import ConfigKey, StageKernelConfigs

# The analytic FLOP model counts matrix multiplies and attention (docs/flops.md); below this share of
# a stage's measured work, the CUDA cores' floating-point work (elementwise, norms, softmax) is too
# small to name as a cause of a gap.
CUDA_CORE_NOTE_SHARE = 0.01


def launch_config_key(kernel: NcuKernel) -> ConfigKey:
    """A profiled kernel's launch configuration (name, grid, block): what ncu samples by
    (--filter-mode=per-launch-config) and the nsys pass counts by (kernel_configs)."""
    g, b = kernel["grid"], kernel["block"]
    return kernel["name"], (g[0], g[1], g[2]), (b[0], b[1], b[2])


def by_launch_config(kernels: Iterable[NcuKernel]) -> dict[ConfigKey, list[NcuKernel]]:
    """The profiled instances of each launch configuration among `kernels`, in the order ncu profiled
    each configuration's first instance: one roofline point each (a stage's here, a report's without
    stages in report.roofline)."""
    groups: dict[ConfigKey, list[NcuKernel]] = {}
    for kernel in kernels:
        groups.setdefault(launch_config_key(kernel), []).append(kernel)
    return groups


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def stage_measured_work(
    kernels: list[NcuKernel],
    configs: StageKernelConfigs,
    stage_kernel_time_ns: Mapping[str, float],
    analytic_flops_per_page: Mapping[str, float] | None,
) -> list[StageMeasuredWork]:
    """Per stage that ncu profiled kernels in: measured work per page, coverage, the gap to the
    analytic FLOPs and the stage's roofline points. `stage_kernel_time_ns`: the nsys pass's kernel
    time per stage, over all its pages."""
    pages = max(configs.pages, 1)
    in_stage: dict[str, list[NcuKernel]] = defaultdict(list)
    for kernel in kernels:
        if kernel["stage"] is not None:
            in_stage[kernel["stage"]].append(kernel)
    out: list[StageMeasuredWork] = []
    for stage, staged in in_stage.items():
        groups = by_launch_config(staged)
        counts = configs.stages.get(stage, {})
        total_ns = float(stage_kernel_time_ns.get(stage, 0.0))
        by_precision = dict.fromkeys(PRECISIONS, 0.0)
        dram = covered = 0.0
        points: list[RooflinePoint] = []
        for key, instances in groups.items():
            figures = counts.get(key)
            if figures is None or figures.count == 0:
                continue  # (a configuration the nsys pass never ran in this stage: nothing to scale by)
            per_page = figures.count / pages
            mean_flops = {p: statistics.fmean(float(k["flops"][p]) for k in instances) for p in PRECISIONS}  # type: ignore[literal-required]
            for p in PRECISIONS:
                by_precision[p] += mean_flops[p] * per_page
            read = _mean([k["dram_bytes_read"] for k in instances])
            write = _mean([k["dram_bytes_write"] for k in instances])
            moved = None if read is None or write is None else read + write
            dram += (moved or 0.0) * per_page
            covered += figures.time_ns / pages
            duration = _mean([k["duration_ns"] for k in instances])
            total_flops = sum(mean_flops.values())
            points.append(
                {
                    "name": key[0],
                    "short_name": instances[0]["short_name"],
                    "grid": list(key[1]),
                    "block": list(key[2]),
                    "instances_per_page": per_page,
                    "share_of_stage_kernel_time": figures.time_ns / total_ns if total_ns else 0.0,
                    "arithmetic_intensity": total_flops / moved if moved else None,
                    "achieved_tflops": total_flops / duration / 1e3 if duration else None,
                    "sm_clock_hz": _mean([k["sm_clock_hz"] for k in instances]),
                    "bound": instances[0]["bound"],
                }
            )
        flops = as_kernel_flops(by_precision)
        per_page_ns = total_ns / pages
        analytic = None if analytic_flops_per_page is None else analytic_flops_per_page.get(stage)
        coverage = covered / per_page_ns if per_page_ns else 0.0
        points.sort(key=lambda p: -p["share_of_stage_kernel_time"])
        out.append(
            {
                "stage": stage,
                "kernel_time_ns_per_page": per_page_ns,
                "covered_time_ns_per_page": covered,
                "coverage": coverage,
                "profiled_kernels": len(points),
                "measured_flops_per_page": flops,
                "measured_dram_bytes_per_page": dram,
                "analytic_flops_per_page": analytic,
                "measured_over_analytic": flops["total"] / analytic if analytic else None,
                "gap": gap_notes(flops, analytic, coverage),
                "roofline": points,
            }
        )
    order = {"vision": 0, "prefill": 1, "decode": 2}
    return sorted(out, key=lambda s: order.get(s["stage"], 9))


def gap_notes(flops: KernelFlops, analytic: float | None, coverage: float) -> list[str]:
    """What stands between the measured and the analytic FLOPs, as far as the counters can tell."""
    notes: list[str] = []
    if coverage < 1.0:
        notes.append(
            f"kernels ncu did not profile hold {1 - coverage:.1%} of the stage's kernel time: their work "
            "is not in the measured figure (raise --ncu-kernels / --ncu-coverage to count more)"
        )
    total = flops["total"]
    cuda_cores = flops["fp64"] + flops["fp32"] + flops["fp16"]
    if total and cuda_cores / total >= CUDA_CORE_NOTE_SHARE:
        notes.append(
            f"{cuda_cores / total:.1%} of the measured work ran on the CUDA cores (elementwise, "
            "normalization, softmax): the analytic model counts matrix multiplies and attention only"
        )
    if analytic:
        tensor = (
            flops["fp64_tensor"]
            + flops["tf32_tensor"]
            + flops["fp16_tensor"]
            + flops["bf16_tensor"]
            + flops["fp8_tensor"]
        )
        if tensor > analytic:
            notes.append(
                f"the tensor cores did {tensor / analytic:.2f}x the analytic FLOPs: work the model does "
                "not count (padding to tile sizes, attention over padded or full-square lengths, "
                "recomputation)"
            )
        elif coverage >= 1.0 and total < analytic:
            notes.append(
                f"the kernels measured {total / analytic:.2f}x the analytic FLOPs with every kernel "
                "profiled: the model counts work the kernels skip (masked attention, routed experts)"
            )
    return notes


def roofs_for(
    kernels: list[NcuKernel],
    gpu: str | None,
    sm_count: int | None,
    dtype: str,
    peak_tflops: float | None,
    bandwidth_gbs: float | None,
) -> Roofs:
    """The roofs the stage charts use (see the module's docstring); peaks given by the caller
    (--peak-tflops, --peak-bandwidth-gbs) win over the GPU table's."""
    from perfctl.hardware.peaks import resolve_bandwidth, resolve_peak

    peak = resolve_peak(gpu, sm_count, dtype, peak_tflops)
    bandwidth = resolve_bandwidth(gpu, sm_count, bandwidth_gbs)
    clocks = [k["sm_clock_hz"] for k in kernels if k["sm_clock_hz"]]
    profiled = statistics.median(clocks) if clocks else None
    boost = next((k["max_sm_clock_hz"] for k in kernels if k["max_sm_clock_hz"]), None)
    scaled = peak.value * profiled / boost if peak.value and profiled and boost else None
    return {
        "gpu": gpu,
        "dtype": dtype,
        "peak_tflops_boost": peak.value,
        "peak_tflops_at_profiled_clock": scaled,
        "profiled_sm_clock_hz": profiled,
        "max_sm_clock_hz": boost,
        "bandwidth_gbs": bandwidth.value,
        "source": f"{peak.describe()}; bandwidth: {bandwidth.describe()}",
    }
