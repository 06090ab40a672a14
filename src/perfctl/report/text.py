"""A short terminal summary of an analysis. Text from the export (its path, GPU names, warnings that
name ranges) has its control characters and bidirectional overrides shown as escapes
(`formatting.visible`): a name cannot send the terminal an escape sequence."""

from __future__ import annotations

from perfctl.analysis.result import Analysis
from perfctl.report.formatting import count, ms, pct, visible
from perfctl.stages import DECODE


def render_text(analysis: Analysis) -> str:
    if "export" not in analysis:  # a --tool torch run: operators only
        return render_operators_text(analysis)
    shipped = analysis.get("shipped")
    lines = [visible(f"{shipped['label']} (captured {shipped['captured']})")] if shipped else []
    export = analysis["export"]
    names = [g.get("name") for g in export["gpus"]]  # a NULL name (TARGET_INFO_GPU allows it) shows as ?
    gpus = ", ".join("?" if name is None else name for name in names) or "no GPU in the export"
    lines.append(
        visible(
            f"export {export['path']} (nsys {export['nsys_version']}, schema {export['schema_version']}; "
            f"{gpus})"
        )
    )
    for warning in analysis["warnings"]:
        lines.append(visible(f"warning: {warning}"))
    lines.append(
        f"{'stage':<10}{'instances':>10}{'wall':>16}{'kernels':>10}{'kernel time':>16}{'GPU busy':>16}"
    )
    for s in analysis["stages"]:
        lines.append(
            f"{s['stage']:<10}{count(s['instances']):>10}{ms(s['wall_ns']):>16}"
            f"{count(s['kernel_count']):>10}{ms(s['kernel_time_ns']):>16}{ms(s['gpu_busy_ns']):>16}"
        )
    lines += [visible(line) for line in graph_kernel_lines(analysis)]
    return "\n".join(lines + _throughput_lines(analysis) + _mfu_lines(analysis))


def graph_kernel_lines(analysis: Analysis) -> list[str]:
    """Per stage with kernels replayed from CUDA graphs, one sentence (plain text: each renderer
    escapes it) of the per-instance means, per decode step for decode: kernels, how many of them
    replayed from graphs and from how many graph launches, and how many launched one by one
    (kernel_count - graph_kernel_count). Nothing for a stage without graph kernels, or an analysis
    that cannot tell them (graph_kernel_count null) or predates them."""
    out = []
    for s in analysis.get("stages") or []:
        per_instance = s["per_instance"]
        in_graphs = per_instance.get("graph_kernel_count")
        if not s.get("graph_kernel_count") or not in_graphs or not s["instances"]:
            continue
        unit = "step" if s["stage"] == DECODE else "instance"
        kernels, graph_kernels = per_instance["kernel_count"]["mean"], in_graphs["mean"]
        launches = s.get("graph_launches", 0) / s["instances"]
        out.append(
            f"{s['stage']}: {_mean(kernels)} kernels per {unit}, {_mean(graph_kernels)} replayed from CUDA "
            f"graphs ({_mean(launches)} graph launch{'' if launches == 1 else 'es'} per {unit}), "
            f"{_mean(kernels - graph_kernels)} launched one by one"
        )
    return out


def _mean(value: float) -> str:
    """A mean per instance: whole when it is (to a twentieth), else with one decimal."""
    return f"{value:,.0f}" if abs(value - round(value)) < 0.05 else f"{value:,.1f}"


def _throughput_lines(analysis: Analysis) -> list[str]:
    """Pages and tokens per second at the run's batch size, and the per-page latencies."""
    rate = analysis.get("throughput")
    if not rate:
        return []
    ttft, tpot = rate["time_to_first_token"], rate["time_per_output_token"]
    decode = rate["decode_tokens_per_s"]
    pass_name = "clean pass" if rate["source"] == "timing" else "nsys pass, slowed by nsys"
    return [
        f"throughput ({pass_name}, batch {rate['batch_size']}): {rate['pages_per_s']:,.2f} pages/s, "
        f"{rate['tokens_per_s']:,.1f} new tokens/s"
        + (f" (decode {decode:,.1f} tokens/s)" if decode else "")
        + (f"; time to first token p50 {ttft['p50_ms']:,.1f} ms" if ttft else "")
        + (f", per output token p50 {tpot['p50_ms']:,.2f} ms" if tpot else "")
        + (f"; padding {pct(rate['padding_share'])} of prompt positions" if rate["padding_share"] else "")
    ]


def _mfu_lines(analysis: Analysis) -> list[str]:
    """MFU per stage from the clean pass, and the peak it divides by, when the run has both."""
    eff = analysis.get("efficiency")
    if not eff or not eff.get("available"):
        return []
    stages = eff["stages"]
    mfus = ", ".join(f"{stage} {pct(stages[stage]['mfu'])}" for stage in stages)
    mbu = eff["decode_mbu"].get("mbu")
    return [
        visible(f"MFU (clean pass): {mfus}; decode MBU {pct(mbu)}"),
        visible(f"  against {eff['inputs']['peak_source']}"),
    ]


def render_operators_text(analysis: Analysis) -> str:
    """Per stage, the operators' summed self times and the top operator, for a torch-only run."""
    lines = [analysis.get("source", "torch.profiler pass")]
    lines.append(f"{'stage':<10}{'operators':>10}{'self CPU':>16}{'self device':>16}  top operator")
    for stage, table in analysis["operators"]["stages"].items():
        by = "self device time" if table.get("ranked_by") == "self_device_us" else "self CPU time"
        top = f"{visible(table['top'][0]['name'])} (by {by})" if table["top"] else "-"
        lines.append(
            f"{stage:<10}{count(table['operators']):>10}{ms(table['self_cpu_us'] * 1000):>16}"
            f"{ms(table['self_device_us'] * 1000):>16}  {top}"
        )
    lines.append(f"Chrome trace (opens in Perfetto): {analysis['trace']}")
    return "\n".join(lines)
