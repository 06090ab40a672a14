"""summary.md: the one-page stakeholder summary of an analysis (written beside analysis.json).

The three largest cost centres with their stage, MFU per stage, the stability verdict and what to do
next, all taken from the analysis (its `cost_centres` and `findings`; see perfctl.analysis.findings).
Names in it (kernels, ranges, models, files) are untrusted: `md_text` makes each one plain text that
cannot break a table row, start a code span or emphasis, carry HTML, or hide or reorder what it
shows (bidirectional overrides and control characters are shown as escapes).
"""

from __future__ import annotations

import re

from perfctl.analysis.cost_centres import describe_cost_centre
from perfctl.analysis.result import Analysis, Finding
from perfctl.report.formatting import ms, number, pct, visible
from perfctl.report.text import graph_kernel_lines

NAME_LIMIT = 80  # characters of a name kept in a table cell; C++ template names run to thousands
MAX_ACTIONS = 5
COST_CENTRES = (
    3  # the largest cost centres shown  # findings with a next step listed; the report holds all of them
)
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# CommonMark lets any ASCII punctuation be escaped with a backslash; these are the ones that start
# markup inline (code, emphasis, links, images, tables, strikethrough, headings at a cell's start).
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]|~#!])")


def md_text(text: object, limit: int | None = NAME_LIMIT) -> str:
    """`text` as inert Markdown: one line, at most `limit` characters (… when cut), bidirectional and
    control characters shown as escapes (formatting.visible), HTML special characters as entities,
    Markdown punctuation backslash-escaped."""
    flat = " ".join(visible(str(text)).split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    flat = "".join(_HTML.get(c, c) for c in flat)
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", flat)


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines from cells already made inert (`md_text`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _identity(analysis: Analysis) -> list[str]:
    run = analysis.get("run")
    driver = (run.get("driver") if run else None) or {}
    workload = (run.get("workload") if run else None) or {}
    model = ((run.get("model_spec") if run else None) or {}).get("name")
    export = analysis.get("export")
    gpus = [g.get("name") for g in (export.get("gpus") if export else None) or []]
    device = driver.get("gpu_name") or (gpus[0] if gpus else None) or driver.get("device")
    parts = []
    if model:
        params = f", {number(driver['parameters'] / 1e6)} M parameters" if driver.get("parameters") else ""
        parts.append(
            f"Model {md_text(model)}{params}"
            + (f", {md_text(driver['dtype'])}" if driver.get("dtype") else "")
        )
    if device:
        parts.append(f"on {md_text(device)}")
    pages = len(analysis.get("pages") or [])
    if pages:
        tokens = f" × {workload['max_new_tokens']} new tokens" if workload.get("max_new_tokens") else ""
        parts.append(f"{pages} pages{tokens} in the nsys pass")
    if export:
        parts.append(f"nsys {md_text(export['nsys_version'])}")
    line = "; ".join(parts) or _no_identity(analysis)
    return [line + ". Details: `report.html`; every figure: `analysis.json`."]


def _no_identity(analysis: Analysis) -> str:
    """Why there is no run identity: no manifest.json at all, or one that could not be used."""
    note = analysis.get("run_manifest")
    if note and note.get("state") == "unusable":
        return "No run identity (the run's manifest.json is unusable; see the warnings in analysis.json)"
    if note:
        return "No run identity (the run's manifest.json names no model, device or pages)"
    return "No run identity (no manifest.json beside the export)"


def _overhead_clause(analysis: Analysis) -> str:
    """What nsys did to the stage times, by the nsys / clean ratios: a stretch only where one is above 1."""
    efficiency = analysis.get("efficiency")
    stages = (efficiency.get("stages") if efficiency and efficiency.get("available") else None) or {}
    ratios = [r for st in stages.values() if (r := st.get("nsys_over_clean"))]
    if not ratios:
        return "no clean pass to say how much nsys changed it"
    if max(ratios) > 1:
        return f"nsys stretches it up to {max(ratios):.2f}×, see the report's Profiler overhead"
    return (
        f"nsys / clean pass {min(ratios):.2f}–{max(ratios):.2f}× per stage: the nsys pass ran no "
        "slower here, see the report's Profiler overhead"
    )


def _cost_centres(analysis: Analysis) -> list[str]:
    centres = analysis.get("cost_centres")
    out = ["## Where the time goes", ""]
    if not centres:
        return out + _clean_stage_times(analysis)
    total = sum(s["wall_ns"] for s in analysis.get("stages") or [])
    out.append(
        f"The {COST_CENTRES} largest cost centres of the stages' wall time under nsys ({ms(total)} in all; "
        f"{_overhead_clause(analysis)}):"
    )
    out.append("")
    rows = [
        [
            str(i),
            md_text(c["stage"]),
            md_text(describe_cost_centre(c), limit=160),
            ms(c["time_ns"]),
            pct(c["share_of_stage_wall"]),
            pct(c["share_of_all_stages"]),
        ]
        for i, c in enumerate(centres[:COST_CENTRES], 1)
    ]
    out += md_table(["#", "stage", "cost centre", "time", "share of its stage", "share of all stages"], rows)
    if not any(c["kind"] == "kernel_category" for c in centres[:COST_CENTRES]):
        gpu = next((c for c in centres if c["kind"] == "kernel_category"), None)
        if gpu:  # the top ones are idle time: still say which GPU work costs most
            out += [
                "",
                f"Largest GPU work: {md_text(gpu['stage'])} {md_text(describe_cost_centre(gpu), limit=160)}, "
                f"{ms(gpu['time_ns'])} ({pct(gpu['share_of_stage_wall'])} of its stage).",
            ]
    return out


def _clean_stage_times(analysis: Analysis) -> list[str]:
    """Without nsys stage figures: the stages' mean clean-pass times, the next best answer."""
    why = "No nsys stage figures in this analysis" if analysis.get("export") else "No nsys export analyzed"
    timing = analysis.get("timing")
    stats = timing.get("statistics") if timing else None
    if not stats or not stats.get("stages") or not stats["page"].get("mean"):
        return [f"{why}, and no clean timing pass: where the time goes is unknown."]
    page = stats["page"]["mean"]
    rows = [
        [md_text(stage), ms(st["mean"]), pct(st["mean"] / page)]
        for stage, st in sorted(stats["stages"].items(), key=lambda kv: -kv[1]["mean"])
    ]
    text = f"{why} (no kernel split); the clean pass's mean stage times of a {ms(page)} page:"
    return [text, "", *md_table(["stage", "mean per page", "share of the page"], rows)]


def _mfu(analysis: Analysis) -> list[str]:
    out = ["## MFU per stage", ""]
    eff = analysis.get("efficiency")
    if not eff:
        return [*out, "Not measured: MFU needs a perfctl run folder with a clean timing pass (`--tool all`)."]
    if not eff.get("available"):
        return [*out, f"Not measured: {md_text(eff.get('reason'), limit=None)}."]
    inputs = eff["inputs"]
    peak = f"{number(inputs['peak_tflops'])} TFLOP/s" if inputs.get("peak_tflops") else "unknown"
    rate = analysis.get("throughput")
    batch = rate["batch_size"] if rate else 1
    over = (
        f"{inputs['clean_pages']} pages"
        if batch == 1
        else f'{inputs["clean_pages"]} generate calls of up to {batch} pages (a "page" below is one call)'
    )
    out.append(
        f"Against the dense {md_text(inputs['dtype'])} peak of {md_text(inputs['gpu'] or 'no GPU')}: {peak}; "
        f"stage times from the clean timing pass, mean of {over}."
    )
    out.append("")
    rows = [
        [
            md_text(stage),
            f"{number(st['flops_per_page'] / 1e9)} GFLOP",
            ms(st["clean_seconds_per_page"] * 1e9),
            f"{number(st['achieved_tflops'])} TFLOP/s",
            pct(st["mfu"]) if st["mfu"] is not None else "unknown",
        ]
        for stage, st in eff["stages"].items()
    ]
    out += md_table(["stage", "work per page", "clean time per page", "achieved", "MFU"], rows)
    mbu = eff.get("decode_mbu")
    if mbu and mbu.get("mbu") is not None:
        out += [
            "",
            f"Decode MBU {pct(mbu['mbu'])}: {number(mbu['achieved_gbs'])} GB/s of "
            f"{number(mbu['peak_bandwidth_gbs'])} GB/s peak memory bandwidth.",
        ]
    return out


def _stability(analysis: Analysis) -> list[str]:
    out = ["## Stability", ""]
    timing = analysis.get("timing")
    if not timing:
        return [*out, "Not measured: no clean timing pass in this run (`--tool all`)."]
    stats = timing["statistics"]
    rows = []
    for stage, st in [*stats["stages"].items(), ("whole page", stats["page"])]:
        verdict = st.get("verdict")
        word = {True: "stable", False: "**not stable**", None: "no verdict"}[
            verdict.get("stable") if verdict else None
        ]
        rows.append(
            [
                md_text(stage),
                ms(st.get("mean")),
                pct(st.get("cv")),
                word,
                md_text(verdict.get("why") if verdict else None, limit=None),
            ]
        )
    out.append(
        f"Clean pass, {stats['page']['count']} pages; stable = CV within {pct(stats['threshold_cv'])}."
    )
    out.append("")
    return out + md_table(["stage", "mean", "CV", "verdict", "why"], rows)


def _next_steps(analysis: Analysis) -> list[str]:
    found = analysis.get("findings")
    out = ["## What to do next", ""]
    if found is None:
        return [*out, "Findings were not computed for this analysis."]
    actions: list[Finding] = []
    seen: set[str] = set()
    for f in found:
        if f["next"] and f["next"] not in seen and len(actions) < MAX_ACTIONS:
            seen.add(f["next"])
            actions.append(f)
    if not actions:
        out.append("Nothing to act on: no finding calls for a change.")
    for i, f in enumerate(actions, 1):
        out.append(
            f"{i}. **{md_text(f['title'], limit=None)}**: {md_text(f['next'], limit=None)}. "
            f"Evidence: {md_text(f['text'], limit=600)}"
        )
    rest = [f for f in found if f not in actions]
    if rest:
        out += ["", "Also found: " + "; ".join(md_text(f["title"], limit=160) for f in rest) + "."]
    return out


def _graph_kernels(analysis: Analysis) -> list[str]:
    """Per stage with kernels replayed from CUDA graphs: how many per step, and how many launched one
    by one (nothing when no stage has any)."""
    lines = graph_kernel_lines(analysis)
    if not lines:
        return []
    return ["## CUDA graphs", "", *(f"- {md_text(line, limit=None)}." for line in lines)]


def _throughput(analysis: Analysis) -> list[str]:
    """What the run delivered: pages and tokens per second at its batch size, and the latencies."""
    rate = analysis.get("throughput")
    if not rate:
        return []
    source = "the clean timing pass" if rate["source"] == "timing" else "the nsys pass (slowed by nsys)"
    out = [
        "## Throughput",
        "",
        f"At batch size {rate['batch_size']} ({rate['pages']} pages in {rate['generate_calls']} generate "
        f"calls, {source}): **{number(rate['pages_per_s'])} pages/s**, {number(rate['tokens_per_s'])} new "
        "tokens/s"
        + (f", decode {number(rate['decode_tokens_per_s'])} tokens/s" if rate["decode_tokens_per_s"] else "")
        + ".",
    ]
    ttft, tpot = rate["time_to_first_token"], rate["time_per_output_token"]
    if ttft and tpot:
        out.append(
            f"Per page: first token after {number(ttft['p50_ms'])} ms (p50), then "
            f"{number(tpot['p50_ms'])} ms per output token (p50)."
        )
    if rate["padding_share"]:
        out.append(f"Padding: {pct(rate['padding_share'])} of the prompt positions computed (wasted work).")
    return out


def render_markdown(analysis: Analysis) -> str:
    run = analysis.get("run")
    run_id = run.get("run_id") if run else None
    title = f"# perfctl summary: {md_text(run_id)}" if run_id else "# perfctl summary"
    shipped = analysis.get("shipped")
    label = []
    if shipped:  # a run that came with perfctl: said before anything else
        label = [
            f"**{md_text(shipped['label'], limit=None)}.** "
            f"Captured {md_text(shipped['captured'], limit=None)}.",
            "",
        ]
    sections = [[title, "", *label, *_identity(analysis)], _cost_centres(analysis), _graph_kernels(analysis)]
    sections += [_mfu(analysis)]
    sections += [_throughput(analysis), _stability(analysis), _next_steps(analysis)]
    return "\n\n".join("\n".join(lines) for lines in sections if lines) + "\n"
