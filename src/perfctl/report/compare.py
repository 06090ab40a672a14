"""Renderers of a comparison (perfctl.analysis.compare): terminal text, Markdown and HTML.

All three draw the same tables, built once here (`comparison_tables`): strings with their units, so
the formats cannot disagree. Names come from the runs (kernel names, run ids, paths) and are escaped
for Markdown and HTML; the HTML page is self-contained (inline CSS, no scripts, no network).
"""

from __future__ import annotations

from typing import Any, Literal

from perfctl.analysis.result_compare import Comparison, Difference, RunSide, StageComparison
from perfctl.report import formatting
from perfctl.report.formatting import Table, visible
from perfctl.report.html import template_environment
from perfctl.report.markdown import md_table, md_text

TEXT_NAME_HEAD, TEXT_NAME_TAIL = 56, 34  # kernel names are cut in the middle, in the terminal only


def _ms(ns: float | None) -> str:
    return formatting.ms(ns)


def _signed_ms(ns: float | None) -> str:
    return "–" if ns is None else f"{ns / 1e6:+,.3f} ms"


def _signed_pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f} %"


def _ci(diff: Difference, show: Any) -> str:
    if diff["ci95_low"] is None:
        return "– (fewer than 2 pages)"
    high = "unbounded" if diff["ci95_high"] is None else show(diff["ci95_high"])
    return f"[{show(diff['ci95_low'])}, {high}]"


def _detectable(diff: Difference) -> str:
    """The smallest change the two runs tell from noise, in % of A."""
    mdc = diff["min_detectable_change_pct"]
    return "unknown" if mdc is None else f"{mdc:.1f} %"


def _tflops(value: float | None) -> str:
    return "–" if value is None else f"{value:,.4g} TFLOP/s"


def _signed_tflops(value: float | None) -> str:
    return "–" if value is None else f"{value:+,.3g} TFLOP/s"


def _points(fraction: float | None) -> str:
    """A difference of two fractions in percentage points, small ones with three digits."""
    return "–" if fraction is None else f"{100 * fraction:+.3g} pp"


def _kernels(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def _signed_kernels(value: float | None) -> str:
    return "–" if value is None else f"{value:+,.1f}"


MetricKey = Literal["time_ns", "mfu", "achieved_tflops", "kernel_count", "kernel_time_ns"]


def _metric_table(
    comparison: Comparison, key: MetricKey, title: str, show: Any, signed: Any, note: str
) -> Table:
    columns = ["stage", "A", "B", "B − A", "change %", "95 % CI of B − A", "can detect ≥", "verdict"]
    table = Table(title, columns, note=note)
    rows = [(s["stage"], s[key]) for s in comparison["stages"]]
    if key == "time_ns":
        rows.append(("page", comparison["page"]["time_ns"]))
    for stage, diff in rows:
        if diff is None:
            continue
        table.rows.append(
            [
                stage,
                show(diff["a"]["mean"]),
                show(diff["b"]["mean"]),
                signed(diff["delta"]),
                _signed_pct(diff["delta_pct"]),
                _ci(diff, signed),
                _detectable(diff),
                diff["change"],
            ]
        )
    return table


def _efficiency_note(stages: list[StageComparison]) -> str:
    """On what each stage's MFU and TFLOP/s were judged: the time's interval, or their own."""
    same = ", ".join(s["stage"] for s in stages if s["efficiency_basis"] == "time")
    parts = (
        [f"{same}: the same FLOPs per page on both sides, so from the stage time's interval"] if same else []
    )
    for s in stages:
        fa, fb = s["flops_per_page_a"], s["flops_per_page_b"]
        if s["efficiency_basis"] == "own" and fa is not None and fb is not None:
            parts.append(
                f"{s['stage']}: FLOPs per page differ (A {fa:.4g}, B {fb:.4g}): judged on their own, "
                "the clean time's uncertainty carried over"
            )
    return "; ".join(parts) or "not compared"


def comparison_tables(comparison: Comparison) -> list[Table]:
    """The tables every format shows, in order; a table with nothing to compare keeps its note."""
    a, b = comparison["a"], comparison["b"]
    samples = f"A: {a['clean_pages'] if comparison['time_source'] == 'clean' else a['nsys_pages']} pages, "
    samples += f"B: {b['clean_pages'] if comparison['time_source'] == 'clean' else b['nsys_pages']} pages"
    tables = [
        _metric_table(
            comparison,
            "time_ns",
            "Stage time per page",
            _ms,
            _signed_ms,
            f"{comparison['time_source_text']}; {samples}",
        ),
        _metric_table(
            comparison,
            "mfu",
            "MFU per stage",
            formatting.pct,
            _points,
            "analytic FLOPs / clean time / dense peak; " + _efficiency_note(comparison["stages"]),
        ),
        _metric_table(
            comparison,
            "achieved_tflops",
            "Achieved TFLOP/s per stage",
            _tflops,
            _signed_tflops,
            "analytic FLOPs / clean time; " + _efficiency_note(comparison["stages"]),
        ),
    ]
    kernel_note = comparison["kernel_source"] or ""
    tables.append(
        _metric_table(comparison, "kernel_count", "Kernels per page", _kernels, _signed_kernels, kernel_note)
    )
    tables.append(
        _metric_table(comparison, "kernel_time_ns", "Kernel time per page", _ms, _signed_ms, kernel_note)
    )
    top = Table(
        "Top kernel changes per page",
        ["stage", "kernel", "category", "A time", "B time", "B − A", "change %", "A calls", "B calls"],
        note="either run's top kernels of the stage, by the size of the change; analysis.json keeps no "
        "per-page spread per kernel, so these have no noise verdict",
        wide_column=1,
    )
    for s in comparison["stages"]:
        for k in s["top_kernels"]:
            top.rows.append(
                [
                    s["stage"],
                    k["name"],
                    k["category"] or "–",
                    _ms(k["a_time_ns_per_page"]),
                    _ms(k["b_time_ns_per_page"]),
                    _signed_ms(k["delta_ns_per_page"]),
                    _signed_pct(k["delta_pct"]),
                    _kernels(k["a_calls_per_page"]),
                    _kernels(k["b_calls_per_page"]),
                ]
            )
    tables.append(top)
    return tables


def _run_line(side: str, run: RunSide) -> str:
    where = run.get("gpu") or run.get("device") or "device unknown"
    origin = f" from {run['origin']}" if run.get("origin") else ""
    return f"{side}: {run['label']} ({run.get('model') or 'model unknown'}, {where}){origin}"


def _pages(n: int | None, searched: int) -> str:
    return f"more than {searched}" if n is None else str(n)


def gate_line(comparison: Comparison) -> str | None:
    """One sentence on the gate, or None when no threshold was given."""
    g = comparison.get("gate")
    if g is None:
        return None
    threshold = f"{g['fail_if_slower_pct']:g} %"
    cannot = []
    for u in g["undetermined_stages"]:
        if u["min_detectable_change_pct"] is None:
            cannot.append(f"{u['stage']} unknown ({u['reason']})")
        else:
            pages = _pages(u["pages_needed"], u["pages_searched"])
            cannot.append(
                f"{u['stage']} can detect changes ≥ {u['min_detectable_change_pct']:.1f} % "
                f"({pages} pages per run would detect {threshold})"
            )
    told = f"cannot tell a {threshold} slowdown from noise: {', '.join(cannot)}" if cannot else ""
    if g["outcome"] == "passed":
        return f"gate passed: no stage slower beyond noise by more than {threshold}"
    if g["outcome"] == "cannot tell":
        return f"gate CANNOT TELL (exit {g['exit_code']}): {told}"
    stages = ", ".join(f"{f['stage']} {f['delta_pct']:+.1f} %" for f in g["failing_stages"])
    line = f"gate FAILED: slower beyond noise by more than {threshold}: {stages}"
    return f"{line}; also {told}" if told else line


def header_lines(comparison: Comparison) -> list[str]:
    lines = [_run_line("A", comparison["a"]), _run_line("B", comparison["b"])]
    if comparison["allowed_different"]:
        refused = "; ".join(
            f"{d['key']}: {d['a']} vs {d['b']}" for d in comparison["run_differences"] if d["refused"]
        )
        lines.append(f"compared as asked (--allow-different), though the workloads differ: {refused}")
    verdicts = ", ".join(f"{s['stage']} {s['verdict']}" for s in comparison["stages"])
    lines.append(f"verdict (B against A): {verdicts}")
    power = ", ".join(
        f"{s['stage']} {_detectable(s['time_ns'])}"
        if s["time_ns"]["min_detectable_change_pct"] is not None
        else f"{s['stage']} unknown ({s['time_ns']['min_detectable_change_reason']})"
        for s in comparison["stages"]
    )
    lines.append(f"these runs can detect stage-time changes ≥ (95 %): {power}")
    gate = gate_line(comparison)
    if gate:
        lines.append(gate)
    lines += [f"warning: {w}" for w in comparison["warnings"]]
    lines.append(f"method: {comparison['method']}")
    return lines


def _cut(name: str) -> str:
    """A long kernel name with its middle left out: templates differ in the middle and at the end."""
    if len(name) <= TEXT_NAME_HEAD + TEXT_NAME_TAIL + 1:
        return name
    return name[:TEXT_NAME_HEAD] + "…" + name[-TEXT_NAME_TAIL:]


def render_compare_text(comparison: Comparison) -> str:
    out = [visible(line) for line in header_lines(comparison)]
    for table in comparison_tables(comparison):
        out += ["", f"{table.title}" + (f" ({table.note})" if table.note else "")]
        if not table.rows:
            out.append("  not compared")
            continue
        rows = [
            [visible(_cut(c) if i == table.wide_column else c) for i, c in enumerate(r)] for r in table.rows
        ]
        widths = [max(len(x) for x in col) for col in zip(table.columns, *rows, strict=True)]
        for r in [table.columns, *rows]:
            out.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(out)


def markdown_cell(text: str) -> str:
    """Text that stays inside one Markdown table cell and renders literally (report.markdown.md_text,
    uncut: a compared kernel's whole name)."""
    return md_text(text, limit=None)


def render_compare_markdown(comparison: Comparison) -> str:
    out = ["# perfctl compare", ""]
    out += [f"- {markdown_cell(line)}" for line in header_lines(comparison)]
    for table in comparison_tables(comparison):
        out += ["", f"## {markdown_cell(table.title)}", ""]
        if table.note:
            out += [markdown_cell(table.note), ""]
        if not table.rows:
            out.append("not compared")
            continue
        cells = [[markdown_cell(c) for c in row] for row in table.rows]
        out += md_table([markdown_cell(c) for c in table.columns], cells)
    return "\n".join(out) + "\n"


def render_compare_html(comparison: Comparison) -> str:
    # the report's environment: kernel names, run ids and paths come from the runs, always escaped,
    # their bidirectional overrides and control characters shown as escapes
    return (
        template_environment()
        .get_template("compare.html.j2")
        .render(
            c=comparison,
            header=header_lines(comparison),
            gate=gate_line(comparison),
            tables=comparison_tables(comparison),
        )
    )
