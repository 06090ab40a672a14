"""Renderers of a batch sweep's analysis (perfctl.analysis.sweep): the terminal table, sweep-summary.md
and sweep-report.html.

All three show the same tables, built once here (`sweep_tables`) as strings with their units, so the
formats cannot disagree. Texts from the sweep (its id, model, command, a point's status and reason,
warnings) are untrusted: the terminal shows them through `formatting.visible`, the Markdown through
`md_text`, the HTML through Jinja's autoescape and `charts._esc`.
"""

from __future__ import annotations

import posixpath
from urllib.parse import quote

from markupsafe import Markup

from perfctl.analysis.result_sweep import SweepAnalysis, SweepPoint, SweepRoofs
from perfctl.report import charts
from perfctl.report.formatting import Table, number, pct, visible
from perfctl.report.html import template_environment
from perfctl.report.markdown import md_table, md_text
from perfctl.report.sweep_roofline import roofline_figures, span, sweep_roofline
from perfctl.stages import DECODE, STAGES

# (id, heading) of every section of sweep-report.html, in page order; tests check each heading
SECTIONS = (
    ("headline", "Headline and saturation"),
    ("throughput", "Throughput and latency against batch size"),
    ("efficiency", "MFU and MBU against batch size"),
    ("roofline", "Decode roofline"),
    ("stability", "Stability"),
    ("points", "Points"),
    ("sweep", "Sweep identity"),
    ("warnings", "Warnings"),
)
CLOCKS = {"cuda_events": "GPU clock (CUDA events)", "host": "host clock"}
MOE_NOTE = (
    "decode MBU a–b %: a mixture of experts, whose decode step reads the routed experts its rows chose, "
    "from top-k per layer (all rows alike: a) to batch × top-k (all different: b); which ones is not "
    "recorded"
)
# What each figure is, one line each with its unit (sweep-summary.md's glossary)
DEFINITIONS = (
    ("pages/s", "pages finished per second of the clean pass's generate calls (a call of B rows: B pages)"),
    ("new tokens/s", "generated tokens of every row per second of the calls' wall time"),
    ("decode tokens/s", "the rows' decode steps per second of the decode stage's own time"),
    ("TTFT p50 (ms)", "median time from a call's start to its first token (its prefill's end)"),
    ("TPOT p50 (ms)", "median time per output token after the first, per page"),
    ("decode step p50 (ms)", "median clean-pass time of one decode step (one token for every row)"),
    ("MFU (%)", "a stage's analytic FLOPs / its clean-pass time / the GPU's dense peak"),
    ("decode MBU (%)", "modelled DRAM bytes per decode step / step time / the GPU's peak bandwidth"),
    ("GPU busy (%)", "decode's GPU busy time / its wall time, in the nsys pass"),
    ("arithmetic intensity (FLOP/byte)", "analytic FLOPs per decode step / modelled DRAM bytes per step"),
    ("achieved (TFLOP/s)", "analytic decode FLOPs / the clean pass's decode time"),
    ("roof there (TFLOP/s)", "min(peak TFLOP/s, bandwidth GB/s × intensity / 1000): the most attainable"),
    ("CV (%)", "standard deviation / mean of a stage's time across the clean pass's generate calls"),
)

THROUGHPUT_COLUMNS = ["batch", "status", "pages/s", "new tokens/s", "decode tokens/s", "TTFT p50 (ms)"]
THROUGHPUT_COLUMNS += ["TPOT p50 (ms)", "decode step p50 (ms)"]
EFFICIENCY_COLUMNS = ["batch", *(f"MFU {s}" for s in (*STAGES, "page")), "decode MBU", "decode GPU busy"]
EFFICIENCY_COLUMNS += ["decode top kernels"]


def mbu_cell(p: SweepPoint) -> str:
    """Decode MBU, or its bounds "a–b %" for a batch through a mixture of experts."""
    if p["decode_mbu"] is not None or "decode_mbu_least" not in p:
        return pct(p["decode_mbu"])
    return span(pct(p.get("decode_mbu_least")), pct(p.get("decode_mbu_most")), " %")


def _category(p: SweepPoint, stage: str = DECODE) -> str:
    top = p["top_category"].get(stage)
    return f"{top['category']} {pct(top['share'])}" if top else "–"


def _throughput_row(p: SweepPoint) -> list[str]:
    return [
        str(p["batch_size"]),
        p["status"],
        number(p["pages_per_s"]),
        number(p["tokens_per_s"]),
        number(p["decode_tokens_per_s"]),
        number(p["time_to_first_token_p50_ms"]),
        number(p["time_per_output_token_p50_ms"]),
        number(p["decode_step_p50_ms"]),
    ]


def _roofline_row(p: SweepPoint, roofs: SweepRoofs) -> list[str]:
    at = p["decode_roofline"]
    if at is None:
        return [str(p["batch_size"]), "–", "–", "–", "–"]
    intensity, roof, share = roofline_figures(at, roofs)
    return [str(p["batch_size"]), intensity, number(at["achieved_tflops"]), roof, share]


def _source_note(points: list[SweepPoint]) -> str:
    nsys = [str(p["batch_size"]) for p in points if p["throughput_source"] == "nsys"]
    note = "from each point's clean timing pass"
    return note + (f"; batch {', '.join(nsys)} from the nsys pass (slowed by nsys)" if nsys else "")


def sweep_tables(result: SweepAnalysis) -> list[Table]:
    """The tables every format shows, in order: throughput and latency, MFU and MBU, the decode
    roofline, stability. A point without analysis keeps its row, its figures "–"."""
    points, roofs = result["points"], result["roofs"]
    throughput = Table(
        "Throughput and latency per batch size",
        list(THROUGHPUT_COLUMNS),
        [_throughput_row(p) for p in points],
        _source_note(points),
    )
    efficiency = Table(
        "MFU and MBU per batch size",
        list(EFFICIENCY_COLUMNS),
        note=f"against {_peaks(roofs)}",
    )
    for p in points:
        mfu = [pct(p["mfu"].get(s)) for s in (*STAGES, "page")]
        busy = pct(p["gpu_busy_share"].get(DECODE))
        efficiency.rows.append([str(p["batch_size"]), *mfu, mbu_cell(p), busy, _category(p)])
    if any("decode_mbu_least" in p for p in points):
        efficiency.note += "; " + MOE_NOTE
    roofline = Table(
        "Decode roofline",
        ["batch", "intensity (FLOP/byte)", "achieved (TFLOP/s)", "roof there (TFLOP/s)", "achieved / roof"],
        [_roofline_row(p, roofs) for p in points],
        "roof there = min(peak, bandwidth × intensity), the datasheet's; a range: a mixture of experts, "
        "from the most to the fewest bytes a step may read",
    )
    compiled = any("compile_seconds" in p for p in points)
    stability = Table(
        "Stability",
        ["batch", *(f"CV {s}" for s in STAGES), "clock"] + ["compile (s)", "recompilations"] * compiled,
        note="CV across the clean pass's generate calls"
        + ("; recompilations: graphs compiled during measured calls, every pass" if compiled else ""),
    )
    for p in points:
        row = [str(p["batch_size"]), *(pct(p["stage_cv"].get(s)) for s in STAGES)]
        row.append(CLOCKS.get(p["cv_clock"] or "", "–"))
        if compiled:
            recompiled = p.get("recompilations")
            row += [number(p.get("compile_seconds")), "–" if recompiled is None else str(recompiled)]
        stability.rows.append(row)
    return [throughput, efficiency, roofline, stability]


def headline(result: SweepAnalysis) -> list[str]:
    """The summary's sentences: peak throughput and its batch, the saturation, the latency it costs."""
    measured = [p for p in result["points"] if p["pages_per_s"] is not None]
    if not measured:
        return ["No throughput measured: no point of the sweep has an analysis."]
    best = max(measured, key=lambda p: p["pages_per_s"] or 0.0)
    decode = best["decode_tokens_per_s"]
    lines = [
        f"Peak throughput {number(best['pages_per_s'])} pages/s at batch {best['batch_size']} "
        f"({number(best['tokens_per_s'])} new tokens/s"
        + (f", decode {number(decode)} tokens/s" if decode else "")
        + ")."
    ]
    sat = result["saturation"]
    lines.append(f"Saturation: {sat['why']}.")
    at = next((p for p in measured if p["batch_size"] == sat["batch_size"]), None) or measured[-1]
    top = sat.get("dominant_category") if sat["reached"] else at["top_category"].get(DECODE)
    if top:
        where = "there" if sat["reached"] else f"at the largest batch measured ({at['batch_size']})"
        lines.append(
            f"Decode's largest kernel category {where}: {top['category']} ({pct(top['share'])} of decode's "
            "kernel time)."
        )
    first, last = measured[0], measured[-1]
    if first is not last and first["time_to_first_token_p50_ms"] and last["time_to_first_token_p50_ms"]:
        lines.append(
            f"Time to first token p50: {number(first['time_to_first_token_p50_ms'])} ms at batch "
            f"{first['batch_size']}, {number(last['time_to_first_token_p50_ms'])} ms at batch "
            f"{last['batch_size']}."
        )
    return lines


def identity_line(result: SweepAnalysis) -> str:
    s = result["sweep"]
    parts = [
        s["model"] or "model unknown",
        f"decode {s['decode'] or 'unknown'}",
        s["gpu"] or s["device"] or "device unknown",
        s["dtype"] or "dtype unknown",
        f"batch sizes {', '.join(map(str, s['batch_sizes']))}",
    ]
    if s["max_new_tokens"]:
        parts.append(f"{s['max_new_tokens']} new tokens per page")
    return f"sweep {s['sweep_id']} ({s['status']}): " + ", ".join(parts)


TEXT_COLUMNS = ["batch", "status", "pages/s", "tok/s", "decode tok/s", "TTFT ms", "TPOT ms", "step ms"]
TEXT_COLUMNS += ["MFU vision", "MFU prefill", "MFU decode", "decode MBU", "decode CV"]


def render_sweep_text(result: SweepAnalysis) -> str:
    """The terminal's table: a row per batch size, then the saturation and the warnings."""
    rows = [
        _throughput_row(p)
        + [pct(p["mfu"].get(s)) for s in STAGES]
        + [mbu_cell(p), pct(p["stage_cv"].get(DECODE))]
        for p in result["points"]
    ]
    cells = [[visible(c) for c in row] for row in [TEXT_COLUMNS, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(TEXT_COLUMNS))]
    lines = [visible(identity_line(result))]
    for row in cells:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    if any("decode_mbu_least" in p for p in result["points"]):
        lines.append(MOE_NOTE)
    lines += [visible(line) for line in headline(result)]
    lines += [visible(f"warning: {w}") for w in result["warnings"]]
    return "\n".join(lines)


def _md_table(table: Table) -> list[str]:
    return md_table(
        [md_text(c, limit=None) for c in table.columns], [[md_text(c) for c in r] for r in table.rows]
    )


def _peaks(roofs: SweepRoofs) -> str:
    """The datasheet peaks MFU and MBU divide by, with their GPU and dtype; "unknown" where unknown."""
    peak, bandwidth = roofs["peak_tflops"], roofs["bandwidth_gbs"]
    return (
        f"{roofs['gpu'] or 'an unknown GPU'}'s dense {roofs['dtype'] or ''} peak "
        f"{f'{number(peak)} TFLOP/s' if peak else 'unknown'} and peak bandwidth "
        f"{f'{number(bandwidth)} GB/s' if bandwidth else 'unknown'}"
    )


def roofs_line(roofs: SweepRoofs) -> str:
    """The roofs the decode roofline is drawn against, their source, and the calibrated ones."""
    if not roofs["peak_tflops"] and not roofs["bandwidth_gbs"]:
        why = roofs["source"] or "no analyzed point states them"
        return f"No roof: the GPU's peak and bandwidth are unknown ({why}), so no MFU, MBU or roof."
    line = f"Roofs: {_peaks(roofs)} ({roofs['source'] or 'source unknown'})"
    if roofs["measured_tflops"] or roofs["measured_bandwidth_gbs"]:
        line += (
            f"; calibrated (measured): {number(roofs['measured_tflops'])} TFLOP/s, "
            f"{number(roofs['measured_bandwidth_gbs'])} GB/s"
        )
    return line + "."


def render_sweep_markdown(result: SweepAnalysis) -> str:
    """sweep-summary.md: the headline, the tables, what each number is, the warnings."""
    lines = headline(result)
    out = [f"# perfctl sweep: {md_text(result['sweep']['sweep_id'])}", ""]
    out += [
        md_text(identity_line(result), limit=None) + ". Details: `sweep-report.html`; every figure: "
        "`sweep-analysis.json`; each point's own report: `batch-N/report.html`.",
        "",
        "## Headline",
        "",
        f"**{md_text(lines[0], limit=None)}**",
    ]
    for line in lines[1:]:
        out += ["", md_text(line, limit=None)]
    for table in sweep_tables(result):
        out += ["", f"## {md_text(table.title)}", ""]
        if table.title == "Decode roofline":
            out += [md_text(roofs_line(result["roofs"]), limit=None), ""]
        out += (
            [*_md_table(table), "", md_text(table.note, limit=None) + "."] if table.note else _md_table(table)
        )
    out += ["", "## What each number is", ""]
    out += [f"- **{md_text(name)}**: {md_text(text, limit=None)}" for name, text in DEFINITIONS]
    out += ["", "## Warnings", ""]
    out += [f"- {md_text(w, limit=None)}" for w in result["warnings"]] or ["None."]
    return "\n".join(out) + "\n"


def _bars(points: list[SweepPoint], key: str, unit: str, label: str) -> Markup | None:
    rows: list[tuple[str, float | None, str]] = []
    for p in points:
        value = p.get(key)
        number_value = float(value) if isinstance(value, int | float) else None
        text = f"{number(number_value)} {unit}" if number_value is not None else f"– ({p['status']})"
        rows.append((f"batch {p['batch_size']}", number_value, text))
    return charts.hbars(rows, unit, label)


def _mfu_bars(points: list[SweepPoint]) -> Markup | None:
    rows = [
        (f"batch {p['batch_size']} · {s}", None if v is None else 100 * v, pct(v))
        for p in points
        for s in STAGES
        for v in [p["mfu"].get(s)]
    ]
    colors = [charts.STAGE_COLORS[s] for _ in points for s in STAGES]
    return charts.hbars(rows, "%", "MFU per stage and batch size", colors=colors)


def report_link(run: str) -> str | None:
    """A point's report.html relative to the sweep folder: only for a run folder inside it (no
    absolute path, no "..", no scheme: its characters percent-quoted, so a link cannot leave it)."""
    path = posixpath.normpath(run.replace("\\", "/"))
    if not run or path.startswith(("/", "..")) or path == ".":
        return None
    return quote(path, safe="/") + "/report.html"


def render_sweep_html(result: SweepAnalysis) -> str:
    points = result["points"]
    chart_of = {
        "pages": _bars(points, "pages_per_s", "pages/s", "pages per second per batch size"),
        "tokens": _bars(points, "tokens_per_s", "tokens/s", "new tokens per second per batch size"),
        "ttft": _bars(points, "time_to_first_token_p50_ms", "ms", "time to first token p50 per batch size"),
        "tpot": _bars(
            points, "time_per_output_token_p50_ms", "ms", "time per output token p50 per batch size"
        ),
        "mfu": _mfu_bars(points),
        "roofline": sweep_roofline(points, result["roofs"]),
    }
    return (
        template_environment()
        .get_template("sweep-report.html.j2")
        .render(
            r=result,
            sections=SECTIONS,
            headline=headline(result),
            identity=identity_line(result),
            tables=dict(
                zip(("throughput", "efficiency", "roofline", "stability"), sweep_tables(result), strict=True)
            ),
            charts=chart_of,
            links={p["batch_size"]: report_link(p["run"]) if p["analyzed"] else None for p in points},
            roofs_line=roofs_line(result["roofs"]),
            definitions=DEFINITIONS,
        )
    )
