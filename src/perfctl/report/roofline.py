"""Roofline charts of the Nsight Compute pass, inline SVG drawn in Python like perfctl.report.charts
(whose helpers and escaping they use: every text, kernel names and tooltips included, goes through
`charts._esc`; attribute values are numbers or constants).

Log-log axes: arithmetic intensity (FLOP per DRAM byte) against achieved TFLOP/s. The roofs are drawn
at the SM clock ncu ran the kernels at (ncu locks the base clock by default, so the kernels' TFLOP/s
are measured there): the memory roof (bandwidth x intensity) up to the ridge point, the compute roof
flat from it; the boost clock's compute roof, which MFU divides by, dashed above when both are
known. Each kernel (name and launch configuration) is a circle whose area is its share of the
stage's kernel time, coloured by the bound ncu's throughputs give it.

The axes, grid and roofs are shared with a sweep's decode roofline (perfctl.report.sweep_roofline).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from markupsafe import Markup

from perfctl.analysis.measured_work import by_launch_config
from perfctl.analysis.ncu_findings import compute_roof, launch_config, off_roofline_reason, per_page
from perfctl.analysis.result_ncu import NcuKernel, RooflinePoint, Roofs, StageMeasuredWork
from perfctl.report.charts import _esc, _line, _num, _short, _svg, _text
from perfctl.report.formatting import number, pct

BOUND_COLORS = {"memory": "#1f77b4", "compute": "#d62728", "latency": "#9467bd", "unknown": "#7f7f7f"}
PLOT_L, PLOT_R, PLOT_T, PLOT_B = 90.0, 770.0, 16.0, 376.0  # the plot area; the legend is to its right
MIN_DECADES = 3  # fewer decades on an axis make a log scale hard to read as one
PAD_DECADES = 0.3  # space beyond the outermost point or roof, so a large circle stays inside the frame
R_MAX = 30.0  # radius of a kernel holding all of the stage's time
R_MIN = 3.0  # a kernel with a tiny share stays visible (and hoverable)
LABELED_POINTS = 3  # the largest points get their short name beside them; more would overlap
DASH = ' stroke-dasharray="6 4"'
SOLID = ' stroke-width="2"'


class _Axes:
    """Log10 axes covering `xs` and `ys` with PAD_DECADES to spare, at least MIN_DECADES each."""

    def __init__(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        self.x_lo, self.x_hi = _log_range(xs)
        self.y_lo, self.y_hi = _log_range(ys)

    def x(self, value: float) -> float:
        return self.lx(math.log10(value))

    def y(self, value: float) -> float:
        return self.ly(math.log10(value))

    def lx(self, log_value: float) -> float:
        return PLOT_L + (log_value - self.x_lo) / (self.x_hi - self.x_lo) * (PLOT_R - PLOT_L)

    def ly(self, log_value: float) -> float:
        return PLOT_B - (log_value - self.y_lo) / (self.y_hi - self.y_lo) * (PLOT_B - PLOT_T)


def _log_range(values: Sequence[float]) -> tuple[float, float]:
    logs = [math.log10(v) for v in values if v > 0]
    lo, hi = (min(logs) - PAD_DECADES, max(logs) + PAD_DECADES) if logs else (-2.0, 3.0)
    if hi - lo < MIN_DECADES:  # widen evenly, so the data stays central
        grow = (MIN_DECADES - (hi - lo)) / 2
        lo, hi = lo - grow, hi + grow
    return lo, hi


def _powers(lo: float, hi: float) -> range:
    """The exponents of the powers of ten inside [lo, hi] (at least two: MIN_DECADES >= 2)."""
    return range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1)


def _power_label(exponent: int) -> str:
    return f"{10.0**exponent:,.{max(-exponent, 0)}f}" if -4 <= exponent <= 5 else f"1e{exponent}"


def _minor(lo: float, hi: float) -> list[float]:
    """The logs of 2..9 x each power of ten inside [lo, hi]: the ticks that show the scale is log."""
    logs = (e + math.log10(m) for e in range(math.floor(lo), math.ceil(hi)) for m in range(2, 10))
    return [v for v in logs if lo < v < hi]


def _grid(ax: _Axes, x_label: str = "arithmetic intensity (FLOP per DRAM byte, log scale)") -> list[str]:
    """The frame, a labelled grid line at each power of ten, short unlabelled ticks at 2..9 x it."""
    out = [
        f'<rect x="{_num(PLOT_L)}" y="{_num(PLOT_T)}" width="{_num(PLOT_R - PLOT_L)}" '
        f'height="{_num(PLOT_B - PLOT_T)}" fill="none" stroke="#999"/>'
    ]
    for e in _powers(ax.x_lo, ax.x_hi):
        x = ax.lx(e)
        out += [
            _line(x, PLOT_T, x, PLOT_B, "#e4e4e4"),
            _text(x, PLOT_B + 15, _power_label(e), "middle", "#666"),
        ]
    for e in _powers(ax.y_lo, ax.y_hi):
        y = ax.ly(e)
        out += [
            _line(PLOT_L, y, PLOT_R, y, "#e4e4e4"),
            _text(PLOT_L - 6, y + 4, _power_label(e), "end", "#666"),
        ]
    out += [_line(ax.lx(v), PLOT_B, ax.lx(v), PLOT_B - 4, "#999") for v in _minor(ax.x_lo, ax.x_hi)]
    out += [_line(PLOT_L, ax.ly(v), PLOT_L + 4, ax.ly(v), "#999") for v in _minor(ax.y_lo, ax.y_hi)]
    out.append(_text((PLOT_L + PLOT_R) / 2, PLOT_B + 32, x_label, "middle"))
    mid = (PLOT_T + PLOT_B) / 2
    out.append(
        f'<text x="22" y="{_num(mid)}" text-anchor="middle" fill="#333" '
        f'transform="rotate(-90 22 {_num(mid)})">{_esc("achieved TFLOP/s (log scale)")}</text>'
    )
    return out


def _memory_segment(
    ax: _Axes, bw_tflops: float, x_from: float, x_to: float
) -> tuple[float, float, float, float] | None:
    """The part of y = bw_tflops * x (log: ly = lbw + lx) between two log intensities inside the plot."""
    lbw = math.log10(bw_tflops)
    lx0 = max(x_from, ax.y_lo - lbw, ax.x_lo)
    lx1 = min(x_to, ax.y_hi - lbw, ax.x_hi)
    if lx1 <= lx0:
        return None
    return ax.lx(lx0), ax.ly(lbw + lx0), ax.lx(lx1), ax.ly(lbw + lx1)


def _ridge(ax: _Axes, peak: float | None, bandwidth_gbs: float | None) -> float:
    """The log intensity where the memory roof meets the compute roof (the plot's right edge without
    both roofs)."""
    return math.log10(peak / (bandwidth_gbs / 1e3)) if peak and bandwidth_gbs else ax.x_hi


def _roof(
    ax: _Axes,
    peak: float | None,
    bandwidth_gbs: float | None,
    style: tuple[str, str],
    tips: tuple[str, str],
    ridge: float | None = None,
) -> list[str]:
    """One roof: the memory roof (bandwidth x intensity) up to the ridge point (log intensity; default
    `_ridge`'s), the compute roof flat from it to the plot's right edge. `style`: the lines' stroke
    and attributes; `tips`: the compute and the memory roof's tooltips."""
    out: list[str] = []
    ridge = _ridge(ax, peak, bandwidth_gbs) if ridge is None else ridge
    stroke, extra = style
    if bandwidth_gbs:
        seg = _memory_segment(ax, bandwidth_gbs / 1e3, ax.x_lo, ridge)  # TFLOP/s per FLOP/byte
        if seg:
            out.append(_line(*seg, stroke, extra, tips[1]))
    if peak:
        y = ax.y(peak)
        out.append(_line(ax.lx(ridge), y, PLOT_R, y, stroke, extra, tips[0]))
    return out


def _roofs(ax: _Axes, roofs: Roofs) -> list[str]:
    """The roof lines, each with its figure as a tooltip (the legend names them)."""
    peak, clock = compute_roof(roofs)
    boost = roofs["peak_tflops_boost"] if clock == "profiled" else None
    bandwidth = roofs["bandwidth_gbs"]
    bw_tflops = bandwidth / 1e3 if bandwidth else None  # TFLOP/s per FLOP/byte
    ridge = _ridge(ax, peak, bandwidth)
    compute_tip = f"compute roof: {number(peak)} TFLOP/s dense {roofs['dtype']} at the {clock} clock"
    tips = (compute_tip, f"memory roof: {number(bandwidth)} GB/s")
    out = _roof(ax, peak, bandwidth, ("#333", SOLID), tips)
    if boost and peak and boost > peak:
        y = ax.y(boost)
        boost_ridge = math.log10(boost / bw_tflops) if bw_tflops else ridge
        tip = f"compute roof at the boost clock: {number(boost)} TFLOP/s dense {roofs['dtype']}"
        out.append(_line(ax.lx(boost_ridge), y, PLOT_R, y, "#777", DASH, tip))
        if bw_tflops:
            seg = _memory_segment(ax, bw_tflops, ridge, boost_ridge)
            if seg:
                out.append(_line(*seg, "#777", DASH))
    return out


def _mhz(hz: float | None) -> str:
    return f" ({number(hz / 1e6)} MHz)" if hz else ""


def _point_tip(p: RooflinePoint, share_of: str, count_label: str) -> str:
    name = p["short_name"] if p["name"] == p["short_name"] else f"{p['short_name']} ({p['name']})"
    launch = launch_config(p["grid"], p["block"])
    return (
        f"{name}\n{launch} · {per_page(p['instances_per_page'])} {count_label}\n"
        f"{number(p['arithmetic_intensity'])} FLOP/byte · {number(p['achieved_tflops'])} TFLOP/s · "
        f"{pct(p['share_of_stage_kernel_time'])} of {share_of} · {p['bound']}-bound"
    )


def _legend(roofs: Roofs, share_of: str) -> list[str]:
    """Right of the plot: the bound colours, what a circle's area means, each roof with its figure."""
    x, out = PLOT_R + 18, []
    for row, (bound, color) in enumerate(BOUND_COLORS.items()):
        y = PLOT_T + 10 + row * 18
        out.append(
            f'<circle cx="{_num(x + 6)}" cy="{_num(y - 4)}" r="6" fill="{color}" fill-opacity="0.55" '
            f'stroke="{color}"/>'
        )
        out.append(_text(x + 18, y, f"{bound}-bound"))
    y = PLOT_T + 90
    out += [
        _text(x, y, "circle area: share of", fill="#666"),
        _text(x, y + 15, _short(share_of, 30), fill="#666"),
    ]
    peak, clock = compute_roof(roofs)
    entries: list[tuple[str, list[str]]] = []
    if peak:
        at = (
            f"profiled clock{_mhz(roofs['profiled_sm_clock_hz'])}:" if clock == "profiled" else "boost clock:"
        )
        entries.append(("", ["compute roof at the", at, f"{number(peak)} TFLOP/s dense {roofs['dtype']}"]))
    if roofs["bandwidth_gbs"]:
        entries.append(("", ["memory roof:", f"{number(roofs['bandwidth_gbs'])} GB/s × FLOP/byte"]))
    boost = roofs["peak_tflops_boost"]
    if clock == "profiled" and boost and peak and boost > peak:
        boost_at = f"boost clock{_mhz(roofs['max_sm_clock_hz'])}:"
        entries.append(
            (DASH, ["compute roof at the", boost_at, f"{number(boost)} TFLOP/s dense {roofs['dtype']}"])
        )
    y += 40
    for dash, lines in entries:
        color = "#777" if dash else "#333"
        out.append(_line(x, y - 4, x + 22, y - 4, color, dash or SOLID))
        for i, line in enumerate(lines):
            out.append(_text(x + 28, y + 15 * i, _short(line, 28), fill="#666"))
        y += 15 * len(lines) + 10
    return out


def _off_chart(points: Sequence[RooflinePoint], share_of: str) -> str | None:
    """The caption line for the points a log-log chart cannot show, or None when there are none."""
    reasons = Counter(r for r in (off_roofline_reason(p) for p in points) if r)
    if not reasons:
        return None
    n = sum(reasons.values())
    share = sum(p["share_of_stage_kernel_time"] for p in points if off_roofline_reason(p))
    why = next(iter(reasons)) if len(reasons) == 1 else ", ".join(f"{r} ({c})" for r, c in reasons.items())
    return f"{n} kernel{'s' if n != 1 else ''} not on the chart: {why}; {pct(share)} of {share_of}"


def roofline_chart(
    points: Sequence[RooflinePoint], roofs: Roofs, label: str, share_of: str, count_label: str
) -> Markup | None:
    """The roofline of `points` against `roofs`; None when there is nothing to draw (no point on the
    chart and no roof). `share_of` and `count_label` say what a point's share and instances count."""
    shown = sorted(
        (p for p in points if off_roofline_reason(p) is None), key=lambda p: -p["share_of_stage_kernel_time"]
    )
    peak, _ = compute_roof(roofs)
    bandwidth = roofs["bandwidth_gbs"]
    if not shown and not peak and not bandwidth:
        return None
    xs = [float(p["arithmetic_intensity"] or 0) for p in shown]
    ys = [float(p["achieved_tflops"] or 0) for p in shown]
    for top in (peak, roofs["peak_tflops_boost"]):
        if top:
            ys.append(top)
            if bandwidth:
                xs.append(top / (bandwidth / 1e3))  # the ridge point
    if not shown and bandwidth and peak:  # roofs alone: show three decades of memory roof below the ridge
        ys.append(peak / 1e3)
    ax = _Axes(xs, ys)
    body = _grid(ax) + _roofs(ax, roofs)
    for rank, p in enumerate(shown):
        cx, cy = ax.x(float(p["arithmetic_intensity"] or 0)), ax.y(float(p["achieved_tflops"] or 0))
        r = max(R_MIN, R_MAX * math.sqrt(max(p["share_of_stage_kernel_time"], 0.0)))
        color = BOUND_COLORS.get(p["bound"], BOUND_COLORS["unknown"])
        body.append(
            f'<circle cx="{_num(cx)}" cy="{_num(cy)}" r="{_num(r)}" fill="{color}" fill-opacity="0.55" '
            f'stroke="{color}"><title>{_esc(_point_tip(p, share_of, count_label))}</title></circle>'
        )
        if rank < LABELED_POINTS:  # to the right of the circle, or to its left near the right edge
            text = f"{_short(p['short_name'], 26)} [{'×'.join(map(str, p['grid']))}]"
            right = cx + r + 7 * len(text) < PLOT_R
            x = cx + r + 4 if right else cx - r - 4
            body.append(_text(x, cy + 4, text, "start" if right else "end", "#222"))
    body += _legend(roofs, share_of)
    captions = [c for c in (_off_chart(points, share_of),) if c]
    if not peak and not bandwidth:
        captions.append("no roof drawn: neither the GPU's peak nor its bandwidth is known")
    for i, caption in enumerate(captions):
        body.append(_text(PLOT_L, PLOT_B + 54 + 16 * i, caption, fill="#555"))
    return _svg(PLOT_B + 62 + 16 * len(captions), label, body)


def stage_roofline(stage: StageMeasuredWork, roofs: Roofs) -> Markup | None:
    """The roofline of one stage's profiled kernels (see the module's docstring)."""
    name = stage["stage"]
    return roofline_chart(
        stage["roofline"], roofs, f"roofline of {name}", f"{name}'s kernel time", "launches per page"
    )


def report_points(kernels: Sequence[NcuKernel]) -> list[RooflinePoint]:
    """A report's kernels as roofline points when no nsys pass weighs them (a bare .ncu-rep): one per
    name and launch configuration, its share that of the profiled kernels' summed duration."""
    total = sum(k["duration_ns"] or 0.0 for k in kernels)
    points: list[RooflinePoint] = []
    for same in by_launch_config(kernels).values():
        duration = sum(k["duration_ns"] or 0.0 for k in same)
        flops = sum(k["flops"]["total"] for k in same)
        dram = sum((k["dram_bytes_read"] or 0.0) + (k["dram_bytes_write"] or 0.0) for k in same)
        first = same[0]
        points.append(
            {
                "name": first["name"],
                "short_name": first["short_name"],
                "grid": first["grid"],
                "block": first["block"],
                "instances_per_page": float(len(same)),
                "share_of_stage_kernel_time": duration / total if total else 0.0,
                "arithmetic_intensity": flops / dram if dram else None,
                "achieved_tflops": flops / duration / 1e3 if duration else None,  # FLOP/ns = GFLOP/s
                "sm_clock_hz": first["sm_clock_hz"],
                "bound": first["bound"],
            }
        )
    return sorted(points, key=lambda p: -p["share_of_stage_kernel_time"])


def report_roofline(kernels: Sequence[NcuKernel], roofs: Roofs) -> Markup | None:
    """The roofline of a report's kernels without stages (`report_points`)."""
    return roofline_chart(
        report_points(kernels),
        roofs,
        "roofline of the profiled kernels",
        "the profiled kernels' time",
        "instances profiled",
    )
