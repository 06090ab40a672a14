"""kernels.md: the Nsight Compute pass's kernels as a Markdown page, written beside summary.md.

Per stage: how much of its kernel time the profiled kernels cover, the FLOPs the counters measured
beside perfctl's analytic count and what explains the gap, then a row per profiled kernel (name and
launch configuration) with its share of the stage's time from the nsys pass and its counters from
ncu (the mean over the instances ncu profiled). A bare report (no stages) lists its kernel
instances. The last line says which clock ncu ran the kernels at, since their durations and TFLOP/s
are measured at it. Names are untrusted: each goes through markdown.md_text.
"""

from __future__ import annotations

import shlex

from perfctl.analysis.ncu_findings import launch_config, mean_figure, per_page, point_kernels
from perfctl.analysis.result import Analysis
from perfctl.analysis.result_ncu import KernelFlops, NcuKernel, NcuPass, NcuReport, StageMeasuredWork
from perfctl.report.formatting import ms, nbytes, number, pct
from perfctl.report.markdown import md_table, md_text

GAP_NOTE_LIMIT = 300  # characters of a gap note kept: a sentence naming a kernel or two
STAGE_HEADER = [
    "kernel",
    "launch",
    "per page",
    "share of stage time",
    "duration",
    "TFLOP/s",
    "FLOP/byte",
    "DRAM read",
    "DRAM write",
    "SM %",
    "memory %",
    "occupancy %",
    "bound",
]
REPORT_HEADER = ["#", "kernel", "NVTX range", *STAGE_HEADER[1:2], *STAGE_HEADER[4:]]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{number(value)} %"


def _bytes(value: float | None) -> str:
    return "–" if value is None else nbytes(round(value))


def _gflop(flops: float | None) -> str:
    return "–" if flops is None else f"{number(flops / 1e9)} GFLOP"


def _by_precision(flops: KernelFlops) -> str:
    named = (
        ("fp64", flops["fp64"]),
        ("fp32", flops["fp32"]),
        ("fp16", flops["fp16"]),
        ("fp64 tensor", flops["fp64_tensor"]),
        ("tf32 tensor", flops["tf32_tensor"]),
        ("fp16 tensor", flops["fp16_tensor"]),
        ("bf16 tensor", flops["bf16_tensor"]),
        ("fp8 tensor", flops["fp8_tensor"]),
    )
    parts = [f"{name} {number(value / 1e9)}" for name, value in named if value]
    return f" ({', '.join(parts)} GFLOP)" if parts else ""


def _counters(kernels: list[NcuKernel]) -> list[str]:
    """The columns from duration to bound of a kernel's profiled instances (their means)."""
    duration = mean_figure(kernels, "duration_ns")
    flops = sum(k["flops"]["total"] for k in kernels) / len(kernels) if kernels else None
    read, write = mean_figure(kernels, "dram_bytes_read"), mean_figure(kernels, "dram_bytes_write")
    dram = None if read is None or write is None else read + write
    return [
        ms(duration),
        "–" if flops is None or not duration else number(flops / duration / 1e3),  # FLOP/ns = GFLOP/s
        "–" if flops is None or not dram else number(flops / dram),
        _bytes(read),
        _bytes(write),
        _percent(mean_figure(kernels, "sm_throughput_pct")),
        _percent(mean_figure(kernels, "memory_throughput_pct")),
        _percent(mean_figure(kernels, "achieved_occupancy_pct")),
    ]


def _stage(ncu: NcuPass, work: StageMeasuredWork) -> list[str]:
    name = work["stage"]
    out = [f"## {md_text(name)}", ""]
    out.append(
        f"Coverage: {work['profiled_kernels']} profiled kernel{'' if work['profiled_kernels'] == 1 else 's'} "
        "(name and launch configuration) cover "
        f"{pct(work['coverage'])} of {md_text(name)}'s kernel time per page in the nsys pass "
        f"({ms(work['covered_time_ns_per_page'])} of {ms(work['kernel_time_ns_per_page'])})."
    )
    measured = work["measured_flops_per_page"]
    ratio = work["measured_over_analytic"]
    out += [
        "",
        f"FLOPs per page: measured {_gflop(measured['total'])}{_by_precision(measured)}, analytic "
        f"{_gflop(work['analytic_flops_per_page'])}: measured / analytic "
        + ("–" if ratio is None else f"{ratio:.2f}×")
        + f". DRAM traffic measured: {_bytes(work['measured_dram_bytes_per_page'])} per page.",
    ]
    if work["gap"]:
        out += ["", "What explains the gap:", ""]
        out += [f"- {md_text(note, limit=GAP_NOTE_LIMIT)}" for note in work["gap"]]
    out.append("")
    points = sorted(work["roofline"], key=lambda p: -p["share_of_stage_kernel_time"])
    if not points:
        return [*out, "No kernel of this stage was profiled.", ""]
    rows = []
    for p in points:
        kernels = point_kernels(ncu, name, p)
        cells = _counters(kernels)
        if not kernels:  # the point's own figures stand in for the counters it was made from
            cells[1] = number(p["achieved_tflops"])
            cells[2] = number(p["arithmetic_intensity"])
        row = [md_text(p["short_name"]), launch_config(p["grid"], p["block"])]
        row += [per_page(p["instances_per_page"]), pct(p["share_of_stage_kernel_time"])]
        rows.append(row + cells + [p["bound"]])
    return out + md_table(STAGE_HEADER, rows) + [""]


def _report_only(kernels: list[NcuKernel]) -> list[str]:
    out = [
        "## Profiled kernels",
        "",
        "No nsys stages weigh these kernels (a bare report): one row per profiled instance.",
        "",
    ]
    rows = []
    for k in kernels:
        row = [str(k["id"]), md_text(k["short_name"]), md_text(k["nvtx_range"] or "–")]
        row.append(launch_config(k["grid"], k["block"]))
        rows.append(row + _counters([k]) + [k["bound"]])
    return out + md_table(REPORT_HEADER, rows) + [""]


def _clock(ncu: NcuPass) -> str:
    roofs, control = ncu["roofs"], ncu["clock_control"]
    how = (
        "ncu's clock control was not recorded"
        if control is None
        else f"ncu ran with --clock-control {md_text(control)}"
    )
    profiled, boost = roofs["profiled_sm_clock_hz"], roofs["max_sm_clock_hz"]
    if profiled and boost:
        how += (
            f": the kernels ran at an SM clock of {number(profiled / 1e6)} MHz, {pct(profiled / boost)} of "
            f"the {number(boost / 1e6)} MHz boost clock"
        )
    elif profiled:
        how += f": the kernels ran at an SM clock of {number(profiled / 1e6)} MHz (boost clock unknown)"
    else:
        how += ": the SM clock the kernels ran at is unknown"
    how += "; durations and TFLOP/s above are at that clock"
    peak, at_boost = roofs["peak_tflops_at_profiled_clock"], roofs["peak_tflops_boost"]
    if peak and at_boost:
        how += (
            f", where the dense {md_text(roofs['dtype'])} peak is {number(peak)} TFLOP/s "
            f"({number(at_boost)} TFLOP/s at the boost clock)"
        )
    return how + f". Roofs: {md_text(roofs['source'], limit=200)}."


def render_kernels_md(analysis: Analysis) -> str:
    """kernels.md's text for an analysis with an ncu pass (see the module's docstring)."""
    ncu = analysis.get("ncu")
    if not ncu:
        return "# Kernels (Nsight Compute)\n\nThis analysis has no Nsight Compute pass.\n"
    roofs = ncu["roofs"]
    out = ["# Kernels (Nsight Compute)", ""]
    line = f"Report {md_text(ncu['report'], limit=200)}: {len(ncu['kernels'])} profiled kernel instances"
    if roofs["gpu"]:
        line += f" on {md_text(roofs['gpu'])}"
    out.append(line + ". Every figure: `analysis.json` (its `ncu`).")
    if ncu["command"]:
        out += ["", f"Command: {md_text(shlex.join(ncu['command']), limit=400)}"]
    if ncu["warnings"]:
        out += ["", "Warnings:", ""] + [f"- {md_text(w, limit=GAP_NOTE_LIMIT)}" for w in ncu["warnings"]]
    out.append("")
    if ncu["stages"]:
        for work in ncu["stages"]:
            out += _stage(ncu, work)
        outside = sum(1 for k in ncu["kernels"] if k["stage"] is None)
        if outside:
            out += [f"{outside} profiled kernel instances ran outside perfctl's stages (not shown).", ""]
    else:
        out += _report_only(ncu["kernels"])
    out.append(_clock(ncu))
    return "\n".join(out) + "\n"


def render_ncu_report(report: NcuReport) -> str:
    """`perfctl analyze FILE.ncu-rep` as text: the report's kernels, one row per profiled instance."""
    devices = ", ".join(md_text(d["name"] or "?") for d in report["devices"])
    out = [
        f"# {md_text(report['path'], limit=200)}",
        "",
        f"{len(report['kernels'])} profiled kernel instances on {devices}, "
        f"read with {md_text(report['reader'])}.",
        "",
    ]
    if report["warnings"]:
        out += (
            ["Warnings:", ""] + [f"- {md_text(w, limit=GAP_NOTE_LIMIT)}" for w in report["warnings"]] + [""]
        )
    return "\n".join(out + _report_only(report["kernels"]))
