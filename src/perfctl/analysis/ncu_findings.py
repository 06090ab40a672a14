"""Findings from the Nsight Compute pass (`analysis["ncu"]`), in the shape of perfctl.analysis.findings:
per stage, where the kernel with the largest share of the stage's time sits against its roof; whether
the counters' FLOPs agree with perfctl's FLOP model; whether the profiled kernels cover enough of the
stage to say so.

A kernel is judged against the roof that applies at its arithmetic intensity (FLOP per DRAM byte): the
lower of the memory roof (bandwidth x intensity) and the flat compute roof. Its achieved TFLOP/s were
measured at the SM clock ncu ran it at (ncu locks the base clock by default), so the compute roof is
the one scaled to that clock when known (`Roofs.peak_tflops_at_profiled_clock`), else the boost
clock's. Also here, because the report's renderers share them: `roof_position` and `point_kernels`
(a roofline point's profiled kernel instances).

Every threshold is a named constant below, with the reason for its value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from perfctl.analysis.kernel_categories import categorize
from perfctl.analysis.kernel_selection import DEFAULT_COVERAGE
from perfctl.analysis.result import Analysis, Finding
from perfctl.analysis.result import new_finding as _finding
from perfctl.analysis.result_ncu import NcuKernel, NcuPass, RooflinePoint, Roofs, StageMeasuredWork
from perfctl.report.formatting import number, pct

# A tuned GEMM reaches 70-90 % of the dense peak and a streaming kernel 80-90 % of the DRAM bandwidth:
# from 70 % of its roof a kernel is at its roof for practical purposes, and only less work (fewer
# bytes, fewer FLOPs) makes it faster.
NEAR_ROOF = 0.70
# Below 30 % of the roof that applies, the roof is not what holds the kernel back: latency, occupancy,
# a grid too small to fill the GPU, or uncoalesced access leave most of it unused.
FAR_BELOW_ROOF = 0.30
# The top kernel far below its roof is "high" (most of the stage's time lost) only when it holds at
# least half of the stage's kernel time.
MOST_OF_STAGE = 0.5
# Measured and analytic FLOPs follow different conventions (the counters see norms, softmax and
# elementwise work the model leaves out, a few %; causal attention kernels skip masked blocks the
# model may count; a stage profiled to 80 % misses a fifth of its work). Beyond 25 % apart, those
# conventions do not explain the gap: the FLOP model or the kernels' work is not what it seems.
FLOP_MISMATCH = 0.25
# The kernel selection's coverage goal: below it, the selection ran out of kernels to profile before
# reaching it, and measured figures miss a real part of the stage.
LOW_COVERAGE = DEFAULT_COVERAGE

Roof = Literal["memory", "compute"]


@dataclass(frozen=True)
class RoofPosition:
    """Where a kernel sits against the roof that applies at its intensity."""

    roof: Roof
    roof_tflops: float  # the roof's height at the kernel's intensity
    fraction: float  # achieved TFLOP/s / roof_tflops
    achieved_gbs: float  # achieved DRAM bandwidth: achieved FLOP/s / intensity
    peak_tflops: float | None  # the compute roof compared with
    peak_clock: str | None  # "profiled" or "boost": the clock that compute roof is for


def compute_roof(roofs: Roofs, clock_hz: float | None = None) -> tuple[float | None, str | None]:
    """The compute roof a profiled kernel is compared with, and its clock: the kernel's own SM clock
    under ncu when known ("its own"; kernels of one report ran at clocks 15 % apart on an H200), else
    the report's median profiled clock ("profiled"), else the boost clock's peak ("boost")."""
    boost, top = roofs["peak_tflops_boost"], roofs["max_sm_clock_hz"]
    if clock_hz and boost and top:
        return boost * clock_hz / top, "its own"
    if roofs["peak_tflops_at_profiled_clock"]:
        return roofs["peak_tflops_at_profiled_clock"], "profiled"
    if roofs["peak_tflops_boost"]:
        return roofs["peak_tflops_boost"], "boost"
    return None, None


def roof_position(
    intensity: float | None, tflops: float | None, roofs: Roofs, clock_hz: float | None = None
) -> RoofPosition | None:
    """`intensity` (FLOP/byte) and `tflops` against the lower of the two roofs there; None when the
    kernel is not on a roofline (no FLOPs, no DRAM bytes, no duration) or no roof is known."""
    if not intensity or not tflops or intensity <= 0 or tflops <= 0:
        return None
    peak, clock = compute_roof(roofs, clock_hz)
    bandwidth = roofs["bandwidth_gbs"]
    memory = bandwidth * intensity / 1e3 if bandwidth else None  # GB/s x FLOP/byte = GFLOP/s
    if memory is None and peak is None:
        return None
    roof: Roof = "memory" if peak is None or (memory is not None and memory < peak) else "compute"
    height = memory if roof == "memory" and memory is not None else peak
    assert height is not None  # one of them is known (checked above)
    return RoofPosition(roof, height, tflops / height, tflops / intensity * 1e3, peak, clock)


def point_kernels(ncu: NcuPass, stage: str | None, point: RooflinePoint) -> list[NcuKernel]:
    """The profiled instances of a roofline point's kernel (same name and launch configuration): those
    ncu saw in `stage`, else in any stage (a kernel ncu attributed to no perfctl stage)."""
    same = [
        k
        for k in ncu["kernels"]
        if k["name"] == point["name"] and k["grid"] == point["grid"] and k["block"] == point["block"]
    ]
    in_stage = [k for k in same if k["stage"] == stage]
    return in_stage or same


def mean_figure(kernels: list[NcuKernel], key: str) -> float | None:
    """The mean of a numeric NcuKernel figure over instances that have it; None when none has."""
    values = [v for v in (k.get(key) for k in kernels) if isinstance(v, int | float)]
    return sum(values) / len(values) if values else None


def per_page(value: float) -> str:
    """Instances per page: whole numbers as such (4, not 4.00), a mean over pages to 3 digits."""
    return f"{value:,.0f}" if value == round(value) else number(value)


def launch_config(grid: list[int], block: list[int]) -> str:
    return f"grid {'×'.join(map(str, grid))}, block {'×'.join(map(str, block))}"


def off_roofline_reason(point: RooflinePoint) -> str | None:
    """Why a point cannot be drawn on a log-log roofline, or None when it can."""
    if point["achieved_tflops"] == 0 or point["arithmetic_intensity"] == 0:
        return "no floating-point work"
    if point["arithmetic_intensity"] is None:
        return "no DRAM traffic measured"
    if point["achieved_tflops"] is None:
        return "no duration measured"
    return None


def describe_position(pos: RoofPosition, roofs: Roofs) -> str:
    """The position as a sentence fragment, every number with its unit."""
    if pos.roof == "memory":
        return (
            f"{pct(pos.fraction)} of the memory roof there (DRAM {number(pos.achieved_gbs)} GB/s of "
            f"{number(roofs['bandwidth_gbs'])} GB/s)"
        )
    return (
        f"{pct(pos.fraction)} of the compute roof there ({number(pos.roof_tflops)} TFLOP/s dense "
        f"{roofs['dtype']} at the {pos.peak_clock} clock)"
    )


def _kernels(n: int) -> str:
    return f"{n} profiled kernel" + ("" if n == 1 else "s")


def _advice(pos: RoofPosition | None, bound: str) -> str:
    if pos is None:
        return "open it in Nsight Compute (ncu-ui) for its memory and scheduler sections"
    if pos.fraction >= NEAR_ROOF:
        return "it is at its roof: only less work makes it faster (fuse it away, fewer bytes or FLOPs)"
    if pos.fraction >= FAR_BELOW_ROOF:
        return "open it in Nsight Compute (ncu-ui): its sections say what holds it below its roof"
    if bound == "latency":
        return (
            "it keeps neither the SMs nor memory busy: give it more parallel work (a larger grid, "
            "batched pages)"
        )
    if pos.roof == "compute":
        return "check that it runs on the tensor cores in the stage's dtype, and its tile and wave shape"
    return "check its memory access (coalescing, L2 reuse) and fuse it with its neighbours to read once"


def _top_kernel(ncu: NcuPass, work: StageMeasuredWork) -> Finding | None:
    if not work["roofline"]:
        return None
    stage, roofs = work["stage"], ncu["roofs"]
    top = max(work["roofline"], key=lambda p: p["share_of_stage_kernel_time"])
    share = top["share_of_stage_kernel_time"]
    category = categorize(top["name"])
    kernels = point_kernels(ncu, stage, top)
    pos = roof_position(top["arithmetic_intensity"], top["achieved_tflops"], roofs, top["sm_clock_hz"])
    evidence: dict[str, Any] = {
        key: top[key] for key in ("name", "short_name", "grid", "block", "arithmetic_intensity", "bound")
    }
    evidence |= {
        "category": category,
        "share_of_stage_kernel_time": share,
        "instances_per_page": top["instances_per_page"],
        "achieved_tflops": top["achieved_tflops"],
        "roof": None if pos is None else pos.roof,
        "roof_tflops": None if pos is None else pos.roof_tflops,
        "fraction_of_roof": None if pos is None else pos.fraction,
        "achieved_dram_gbs": None if pos is None else pos.achieved_gbs,
        "bandwidth_gbs": roofs["bandwidth_gbs"],
        "peak_tflops": None if pos is None else pos.peak_tflops,
        "peak_clock": None if pos is None else pos.peak_clock,
        "dram_throughput_pct": mean_figure(kernels, "dram_throughput_pct"),
        "thresholds": {
            "near_roof": NEAR_ROOF,
            "far_below_roof": FAR_BELOW_ROOF,
            "most_of_stage": MOST_OF_STAGE,
        },
    }
    text = (
        f"{top['short_name']} ({category}, {launch_config(top['grid'], top['block'])}) takes {pct(share)} "
        f"of {stage}'s kernel time in the nsys pass, {per_page(top['instances_per_page'])} launches per page"
    )
    if pos is not None:
        title = f"{stage}'s top {category} kernel at {pct(pos.fraction)} of the {pos.roof} roof"
        text += (
            f"; under ncu {number(top['achieved_tflops'])} TFLOP/s at "
            f"{number(top['arithmetic_intensity'])} FLOP/byte, {describe_position(pos, roofs)}"
        )
    else:
        reason = off_roofline_reason(top) or "no roof known (no peak and no bandwidth for this GPU)"
        title = f"{stage}'s top {category} kernel is not on the roofline: {reason}"
        text += f"; not on the roofline ({reason}), ncu classes it {top['bound']}-bound"
        if evidence["dram_throughput_pct"] is not None:
            text += f", DRAM throughput {number(evidence['dram_throughput_pct'])} % of peak"
    far = pos is not None and pos.fraction < FAR_BELOW_ROOF
    severity = "high" if far and share >= MOST_OF_STAGE else "info"
    return _finding(
        "ncu_top_kernel", severity, stage, title, text + ".", evidence, _advice(pos, top["bound"])
    )


def _flops_mismatch(work: StageMeasuredWork) -> Finding | None:
    ratio, analytic = work["measured_over_analytic"], work["analytic_flops_per_page"]
    if ratio is None or analytic is None or abs(ratio - 1) <= FLOP_MISMATCH:
        return None
    stage, measured = work["stage"], work["measured_flops_per_page"]["total"]
    evidence: dict[str, Any] = {
        "measured_flops_per_page": measured,
        "analytic_flops_per_page": analytic,
        "measured_over_analytic": ratio,
        "coverage": work["coverage"],
        "gap": work["gap"],
        "threshold": FLOP_MISMATCH,
    }
    text = (
        f"the profiled kernels of {stage} ({pct(work['coverage'])} of its kernel time) executed "
        f"{number(measured / 1e9)} GFLOP per page by the counters; perfctl's FLOP model counts "
        f"{number(analytic / 1e9)} GFLOP"
    )
    if work["gap"]:
        text += "; " + "; ".join(work["gap"])
    if ratio < 1 and work["coverage"] < LOW_COVERAGE:
        advice = (
            "profile more of the stage's kernels before reading the gap (a larger --ncu-kernels or "
            "--ncu-coverage): the rest of its time does work too"
        )
    elif ratio < 1:
        advice = (
            "the FLOP model counts work the kernels skip: check attention masking and MoE routing "
            "(docs/flops.md)"
        )
    else:
        advice = (
            "the kernels do more than the model counts: look for recomputation, padding to tiles, "
            "attention computing the full square"
        )
    return _finding(
        "ncu_flops_mismatch",
        "medium",
        stage,
        f"{stage}: measured FLOPs are {ratio:.2f}× the analytic count",
        text + ".",
        evidence,
        advice,
    )


def _low_coverage(work: StageMeasuredWork) -> Finding | None:
    if not work["kernel_time_ns_per_page"] or work["coverage"] >= LOW_COVERAGE:
        return None
    stage = work["stage"]
    evidence: dict[str, Any] = {
        "coverage": work["coverage"],
        "profiled_kernels": work["profiled_kernels"],
        "kernel_time_ns_per_page": work["kernel_time_ns_per_page"],
        "covered_time_ns_per_page": work["covered_time_ns_per_page"],
        "threshold": LOW_COVERAGE,
    }
    return _finding(
        "ncu_low_coverage",
        "info",
        stage,
        f"{stage}: the Nsight Compute pass covers {pct(work['coverage'])} of its kernel time",
        f"{_kernels(work['profiled_kernels'])} (name and launch configuration) "
        f"{'covers' if work['profiled_kernels'] == 1 else 'cover'} "
        f"{pct(work['coverage'])} of {stage}'s kernel time in the nsys pass, under the "
        f"{pct(LOW_COVERAGE)} goal: measured FLOPs and bytes leave the rest out.",
        evidence,
        "profile more of the stage's kernels: capture the ncu pass with a larger --ncu-kernels or "
        "--ncu-coverage",
    )


def ncu_findings(analysis: Analysis) -> list[Finding]:
    """Per stage of the ncu pass: its top kernel against its roof, a FLOP mismatch, a low coverage."""
    ncu = analysis.get("ncu")
    if not ncu:
        return []
    out: list[Finding] = []
    for work in ncu["stages"]:
        for found in (_top_kernel(ncu, work), _flops_mismatch(work), _low_coverage(work)):
            if found is not None:
                out.append(found)
    return out
