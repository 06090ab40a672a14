"""`perfctl compare SWEEP_A SWEEP_B` for the terminal and as Markdown: one row per batch size (the
points' pages/s and new tokens/s, each stage's verdict from the two runs' comparison), then the gate.
Every text from the sweeps (ids, paths, reasons) goes through `formatting.visible`."""

from __future__ import annotations

from perfctl.analysis.result_sweep import RateChange, SweepComparison, SweepPointComparison
from perfctl.report.formatting import visible
from perfctl.report.markdown import md_table, md_text

HEADER = ("batch", "pages/s A", "pages/s B", "change", "tokens/s change", "stages (B against A)", "gate")


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def _change(rate: RateChange) -> str:
    return "–" if rate["change_pct"] is None else f"{rate['change_pct']:+.1f} %"


def _stages(point: SweepPointComparison) -> str:
    comparison = point.get("comparison")
    if comparison is None:
        return visible(point["reason"] or "not compared")
    said = []
    for stage in comparison["stages"]:
        delta = stage["time_ns"]["delta_pct"]
        by = f" {delta:+.1f} %" if delta is not None else ""
        said.append(f"{stage['stage']} {stage['verdict']}{by}")
    return ", ".join(said)


def _gate_cell(point: SweepPointComparison) -> str:
    gate = point.get("comparison", {}).get("gate")
    return gate["outcome"] if gate is not None else "–"


def rows(result: SweepComparison) -> list[tuple[str, ...]]:
    return [
        (
            str(p["batch_size"]),
            _number(p["pages_per_s"]["a"]),
            _number(p["pages_per_s"]["b"]),
            _change(p["pages_per_s"]),
            _change(p["tokens_per_s"]),
            _stages(p),
            _gate_cell(p),
        )
        for p in result["points"]
    ]


def headline(result: SweepComparison) -> str:
    a, b = result["a"], result["b"]
    return visible(
        f"sweep B {b['sweep_id']} ({b['path']}) against sweep A {a['sweep_id']} ({a['path']}): "
        f"{a['model']}, decode {a['decode']} vs {b['decode']}, "
        f"on {a['gpu'] or 'no GPU'} vs {b['gpu'] or 'no GPU'}"
    )


def sweep_gate_line(result: SweepComparison) -> str | None:
    gate = result.get("gate")
    if gate is None:
        return None
    threshold = f"{gate['fail_if_slower_pct']:g} %"
    if gate["outcome"] == "passed":
        return f"gate passed: no compared batch size has a stage slower beyond noise by more than {threshold}"
    if gate["outcome"] == "slower":
        batches = ", ".join(map(str, gate["slower_batches"]))
        return f"gate FAILED (exit {gate['exit_code']}): slower by more than {threshold} at batch {batches}"
    batches = ", ".join(map(str, gate["undetermined_batches"]))
    return f"gate CANNOT TELL (exit {gate['exit_code']}): batch {batches} cannot tell a {threshold} slowdown"


def render_sweep_comparison_text(result: SweepComparison) -> str:
    table = [HEADER, *rows(result)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER) - 2)]
    lines = [headline(result)]
    for r in table:
        cells = zip(r[: len(widths)], widths, strict=True)
        fixed = "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(cells))
        lines.append(f"{fixed}  {r[-2]}  [{r[-1]}]")
    lines += [f"warning: {visible(w)}" for w in result["warnings"]]
    gate = sweep_gate_line(result)
    return "\n".join([*lines, *([gate] if gate else [])])


def _cell(text: str) -> str:
    """A cell made inert as every Markdown perfctl writes (report.markdown.md_text), uncut."""
    return md_text(text, limit=None)


def render_sweep_comparison_markdown(result: SweepComparison) -> str:
    out = ["# perfctl compare: two sweeps", "", _cell(headline(result)), ""]
    out += md_table(list(HEADER), [[_cell(c) for c in r] for r in rows(result)])
    out += [
        "",
        "Per batch size: the two points' clean-pass pages and new tokens per second, and each stage's "
        "verdict (`perfctl compare` of the two run folders: Welch's 95 % interval over their calls).",
    ]
    if result["warnings"]:
        out += ["", "## Warnings", "", *[f"- {_cell(w)}" for w in result["warnings"]]]
    gate = sweep_gate_line(result)
    if gate:
        out += ["", f"**{gate}**"]
    return "\n".join(out) + "\n"
