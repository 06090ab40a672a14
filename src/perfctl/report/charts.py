"""Inline SVG charts for the HTML report, drawn in Python (no JavaScript, no external files).

Every chart returns `markupsafe.Markup`, so Jinja's autoescape leaves it alone; that makes this module
responsible for its own escaping: every piece of text that goes into an SVG (labels, tooltips, kernel
names) passes through `_esc` (bidirectional and control characters shown as escapes, then HTML
escaping), and attribute values are numbers or constants. Every axis and value
label carries its unit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from perfctl.analysis.kernel_categories import CATEGORIES
from perfctl.analysis.repeatability import MIN_PAGES_FOR_CI
from perfctl.report.formatting import fit, text_width, visible
from perfctl.stages import STAGES

STAGE_COLORS = {"vision": "#1f77b4", "prefill": "#ff7f0e", "decode": "#2ca02c"}
CATEGORY_COLORS = {
    "communication": "#8c564b",
    "attention": "#d62728",
    "gemm": "#1f77b4",
    "copy": "#ff7f0e",
    "reduction": "#9467bd",
    "elementwise": "#2ca02c",
    "other": "#7f7f7f",
}
WIDTH = 1000  # SVG user units; the charts scale to the page width
LABEL_W = 230  # left column for row labels
VALUE_W = 170  # right column for value labels
BAR_W = WIDTH - LABEL_W - VALUE_W
ROW_H = 24
FONT_SIZE = 12  # user units, so the text scales with the chart: what fits at one width fits at all
FONT = f'font-family="system-ui, sans-serif" font-size="{FONT_SIZE}"'
# A bar chart's label column widens to its longest label up to this (kernel names: 40 % of the
# chart, leaving 430 units of bars); a longer label is cut in its middle (formatting.fit) and shown
# whole in its tooltip.
MAX_LABEL_W = 400
LABEL_GAP = 8  # between a label's end and its bar
LABEL_MARGIN = 4  # left of the longest label, inside the SVG's edge
OUTSIDE_COLOR = "#d9d9d9"  # page time outside every stage (image preprocessing, generate's own work)


def _esc(text: object) -> str:
    """Text for SVG: invisible characters shown as escapes (formatting.visible), then HTML-escaped."""
    return str(escape(visible(str(text))))


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _svg(height: float, label: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {WIDTH} {_num(height)}" '
        f'role="img" aria-label="{_esc(label)}" {FONT}>' + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, content: str, anchor: str = "start", fill: str = "#333") -> str:
    return f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}" fill="{fill}">{_esc(content)}</text>'


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str, opacity: float = 1.0) -> str:
    op = "" if opacity == 1.0 else f' fill-opacity="{_num(opacity)}"'
    return (
        f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(max(w, 0.0))}" height="{_num(h)}" fill="{fill}"{op}>'
        f"<title>{_esc(tip)}</title></rect>"
    )


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, extra: str = "", tip: str = "") -> str:
    title = f"<title>{_esc(tip)}</title>" if tip else ""
    return (
        f'<line x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" y2="{_num(y2)}" stroke="{stroke}"{extra}>'
        f"{title}</line>"
    )


def _short(label: str, limit: int) -> str:
    """`label` on one line, cut to `limit` characters with an ellipsis (the roofline's legends)."""
    flat = " ".join(label.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about `ticks` intervals over span."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _axis(
    y: float, top: float, scale_max: float, unit: str, label_w: float = LABEL_W, bar_w: float = BAR_W
) -> list[str]:
    """Ticks and vertical grid lines under a bar area (from label_w, bar_w wide) of full scale_max."""
    step = nice_step(scale_max)
    out = [_line(label_w, y, label_w + bar_w, y, "#999")]
    value = 0.0
    while value <= scale_max * 1.0001:
        x = label_w + bar_w * value / scale_max
        out.append(_line(x, top, x, y, "#e4e4e4"))
        out.append(_text(x, y + 14, f"{value:,.4g} {unit}", "middle", "#666"))
        value += step
    return out


@dataclass(frozen=True)
class Segment:
    stage: str
    x: float
    width: float
    busy_width: float
    wall_ns: int
    busy_ns: int


def page_bars(pages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Geometry of the per-page stage bars, one scale for all pages (the longest page fills BAR_W):
    each stage's wall time as a segment, its GPU busy time as the solid part at the segment's start."""
    longest = max((p["wall_ns"] for p in pages), default=0)
    if longest <= 0:
        return []
    bars = []
    for position, page in enumerate(pages, 1):
        x, segments = 0.0, []
        for stage in STAGES:
            cell = page["stages"][stage]
            width = BAR_W * cell["wall_ns"] / longest
            busy = BAR_W * min(cell["gpu_busy_ns"], cell["wall_ns"]) / longest
            segments.append(
                Segment(
                    stage, round(x, 2), round(width, 2), round(busy, 2), cell["wall_ns"], cell["gpu_busy_ns"]
                )
            )
            x += width
        bars.append(
            {
                "sequence": page["sequence"],
                # a page range that carries no payload has no sequence number: named by its place
                "label": f"page {page['sequence']}"
                if page["sequence"] is not None
                else f"unnumbered #{position}",
                "wall_ns": page["wall_ns"],
                "segments": segments,
                "total_width": round(BAR_W * page["wall_ns"] / longest, 2),
            }
        )
    return bars


def page_timeline(pages: Sequence[Mapping[str, Any]]) -> Markup | None:
    """One bar per page: vision / prefill / decode wall time side by side, each split into GPU busy
    (solid) and GPU idle (pale), over a grey bar of the whole page (the rest is time outside the
    stages). None without pages."""
    bars = page_bars(pages)
    if not bars:
        return None
    longest = max(p["wall_ns"] for p in pages) / 1e6
    body = []
    top = 28
    x = LABEL_W
    for stage in STAGES:  # legend
        body.append(_rect(x, 4, 12, 12, STAGE_COLORS[stage], f"{stage}: GPU busy"))
        body.append(_rect(x + 14, 4, 12, 12, STAGE_COLORS[stage], f"{stage}: GPU idle", 0.3))
        body.append(_text(x + 32, 15, stage))
        x += 100
    body.append(_rect(x, 4, 12, 12, OUTSIDE_COLOR, "page time outside the stages"))
    body.append(_text(x + 16, 15, "outside the stages · solid: GPU busy · pale: GPU idle", fill="#666"))
    for row, bar in enumerate(bars):
        y = top + row * ROW_H
        body.append(_text(LABEL_W - 8, y + 15, bar["label"], "end"))
        outside = bar["wall_ns"] - sum(seg.wall_ns for seg in bar["segments"])
        tip = f"{bar['label']}: {bar['wall_ns'] / 1e6:,.3f} ms"
        tip += f", {outside / 1e6:,.3f} ms outside the stages"
        body.append(_rect(LABEL_W, y + 7, bar["total_width"], 10, OUTSIDE_COLOR, tip))
        for seg in bar["segments"]:
            share = seg.busy_ns / seg.wall_ns if seg.wall_ns else 0.0
            tip = (
                f"{bar['label']} {seg.stage}: wall {seg.wall_ns / 1e6:,.3f} ms, GPU busy "
                f"{seg.busy_ns / 1e6:,.3f} ms ({share:.1%})"
            )
            body.append(_rect(LABEL_W + seg.x, y + 3, seg.width, 18, STAGE_COLORS[seg.stage], tip, 0.3))
            body.append(_rect(LABEL_W + seg.x, y + 3, seg.busy_width, 18, STAGE_COLORS[seg.stage], tip))
        body.append(
            _text(LABEL_W + bar["total_width"] + 6, y + 16, f"{bar['wall_ns'] / 1e6:,.1f} ms", fill="#555")
        )
    axis_y = top + len(bars) * ROW_H + 4
    body = _axis(axis_y, top, longest, "ms") + body
    return _svg(axis_y + 22, "stage wall time and GPU busy time per page", body)


def label_column(labels: Sequence[str]) -> float:
    """The width of a bar chart's label column: its longest label's (text_width) with the gap and
    margin, from LABEL_W to MAX_LABEL_W."""
    widest = max((text_width(" ".join(label.split()), FONT_SIZE) for label in labels), default=0.0)
    return min(max(float(LABEL_W), widest + LABEL_GAP + LABEL_MARGIN), float(MAX_LABEL_W))


def hbars(
    rows: Sequence[tuple[str, float | None, str]],
    unit: str,
    label: str,
    scale_max: float | None = None,
    reference: tuple[float, str] | None = None,
    colors: Sequence[str] | None = None,
    tips: Sequence[str] | None = None,
    fit_label: Callable[[str, float, float], str] = fit,
) -> Markup | None:
    """A horizontal bar per row (label, value, value text). Rows without a value get no bar but keep
    their text. `reference`: a vertical line (value, its label), e.g. 1.0x for overhead. `tips`: each
    row's whole name for its tooltip (default: its label). The label column fits the longest label up
    to MAX_LABEL_W; a longer one is cut by `fit_label` (default: in its middle) with an ellipsis,
    never by the chart's edge."""
    values = [v for _, v, _ in rows if v is not None]
    if not values:
        return None
    label_w = label_column([name for name, _, _ in rows])
    bar_w = WIDTH - label_w - VALUE_W
    top_value = max([*values, reference[0] if reference else 0.0])
    scale = scale_max or (top_value * 1.1 if top_value > 0 else 1.0)
    step = nice_step(scale)
    scale = math.ceil(scale / step) * step
    body = []
    top = 6
    for row, (name, value, text) in enumerate(rows):
        y = top + row * ROW_H
        tip = tips[row] if tips else name
        shown = fit_label(name, label_w - LABEL_GAP - LABEL_MARGIN, FONT_SIZE)
        body.append(f"<g><title>{_esc(tip)}</title>{_text(label_w - LABEL_GAP, y + 15, shown, 'end')}</g>")
        if value is not None:
            width = bar_w * value / scale
            color = colors[row] if colors else "#4c78a8"
            body.append(_rect(label_w, y + 3, width, 18, color, f"{tip}: {text}"))
            body.append(_text(label_w + width + 6, y + 16, text, fill="#555"))
        else:
            body.append(_text(label_w + 6, y + 16, text, fill="#999"))
    axis_y = top + len(rows) * ROW_H + 4
    body = _axis(axis_y, top, scale, unit, label_w, bar_w) + body
    if reference:
        x = label_w + bar_w * reference[0] / scale
        body.append(_line(x, top, x, axis_y, "#c00", ' stroke-dasharray="4 3"'))
        body.append(_text(x + 4, top + 10, reference[1], fill="#c00"))
    return _svg(axis_y + 22, label, body)


def category_bars(stages: Sequence[Mapping[str, Any]]) -> Markup | None:
    """Per stage, its kernel time split by kernel category, as shares of 100 %."""
    rows = [s for s in stages if s["kernel_time_ns"] > 0]
    if not rows:
        return None
    body = []
    x = float(LABEL_W)
    for category in CATEGORIES:  # legend
        body.append(_rect(x, 4, 12, 12, CATEGORY_COLORS[category], category))
        body.append(_text(x + 16, 15, category))
        x += 16 + 8 * len(category) + 18
    top = 26
    for row, s in enumerate(rows):
        y = top + row * ROW_H
        body.append(_text(LABEL_W - 8, y + 15, s["stage"], "end"))
        x = float(LABEL_W)
        for category in CATEGORIES:
            time_ns = s["kernel_time_by_category"].get(category, 0)
            if not time_ns:
                continue
            share = time_ns / s["kernel_time_ns"]
            tip = f"{s['stage']} {category}: {time_ns / 1e6:,.3f} ms ({share:.1%} of kernel time)"
            body.append(_rect(x, y + 3, BAR_W * share, 18, CATEGORY_COLORS[category], tip))
            if BAR_W * share > 36:
                body.append(_text(x + BAR_W * share / 2, y + 16, f"{share:.0%}", "middle", "#fff"))
            x += BAR_W * share
        body.append(
            _text(LABEL_W + BAR_W + 6, y + 16, f"{s['kernel_time_ns'] / 1e6:,.3f} ms kernels", fill="#555")
        )
    axis_y = top + len(rows) * ROW_H + 4
    body = _axis(axis_y, top, 100.0, "%") + body
    return _svg(axis_y + 22, "kernel time per stage by kernel category", body)


def spread_chart(stages: Mapping[str, Mapping[str, Any]]) -> Markup | None:
    """Per stage, the clean pass's page times relative to their mean: min-max whisker, 95 % CI of the
    mean as a box, median as a tick; one symmetric axis in % from the mean. Only stages with
    MIN_PAGES_FOR_CI pages or more (fewer: the report shows their page times instead); a CI reaching
    below 0 ms is drawn from 0 ms (-100 %), and its tooltip says so. None when no stage has them."""
    rows = [
        (name, st)
        for name, st in stages.items()
        if st.get("count", 0) >= MIN_PAGES_FOR_CI and st.get("mean") and "ci95_low" in st
    ]
    if not rows:
        return None

    def rel(st: Mapping[str, Any], key: str) -> float:
        value = float(st[key])
        if key == "ci95_low":
            value = max(value, 0.0)  # a time's mean is not below 0: the interval is clipped there
        return 100.0 * (value - float(st["mean"])) / float(st["mean"])

    keys = ("min", "max", "ci95_low", "ci95_high")
    bound = max(abs(rel(st, key)) for _, st in rows for key in keys) or 1.0
    step = nice_step(2 * bound)
    bound = math.ceil(bound / step) * step

    def xpos(percent: float) -> float:
        return LABEL_W + BAR_W * (percent + bound) / (2 * bound)

    body = []
    top = 6
    for row, (name, st) in enumerate(rows):
        y = top + row * ROW_H + 12
        low = st["ci95_low"]
        ci = f"{max(low, 0.0) / 1e6:,.3f}–{st['ci95_high'] / 1e6:,.3f} ms"
        if low < 0:
            ci += f" (clipped at 0 ms from {low / 1e6:,.3f} ms)"
        tip = (
            f"{name}: mean {st['mean'] / 1e6:,.3f} ms, min {st['min'] / 1e6:,.3f} ms, max "
            f"{st['max'] / 1e6:,.3f} ms, 95 % CI {ci}, {st['count']} pages"
        )
        body.append(_text(LABEL_W - 8, y + 4, name, "end"))
        x0, x1 = xpos(rel(st, "min")), xpos(rel(st, "max"))
        body.append(_line(x0, y, x1, y, "#555", tip=tip))
        lo, hi = xpos(rel(st, "ci95_low")), xpos(rel(st, "ci95_high"))
        stable = (st.get("verdict") or {}).get("stable")
        color = "#2ca02c" if stable else "#d62728" if stable is False else "#999"
        body.append(_rect(lo, y - 6, hi - lo, 12, color, tip, 0.45))
        med = xpos(rel(st, "median"))
        body.append(_line(med, y - 7, med, y + 7, "#000", ' stroke-width="2"'))
        cv = st.get("cv")
        body.append(
            _text(LABEL_W + BAR_W + 6, y + 4, f"CV {cv:.1%}" if cv is not None else "CV –", fill="#555")
        )
    axis_y = top + len(rows) * ROW_H + 4
    body.append(_line(xpos(0), top, xpos(0), axis_y, "#999"))
    value = -bound
    body.append(_line(LABEL_W, axis_y, LABEL_W + BAR_W, axis_y, "#999"))
    while value <= bound * 1.0001:
        body.append(_text(xpos(value), axis_y + 14, f"{value:+.4g} %", "middle", "#666"))
        value += step
    return _svg(axis_y + 22, "spread of clean-pass stage times relative to their mean", body)
