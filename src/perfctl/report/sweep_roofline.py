"""The decode roofline of a batch sweep (`perfctl sweep`): inline SVG, on the log-log axes, grid and
roofs of perfctl.report.roofline, escaped as its charts are (every text through `charts._esc`;
attribute values are numbers or constants).

One point per analyzed batch size: its decode step's analytic FLOPs per modelled DRAM byte against
the TFLOP/s the clean pass achieved (perfctl.analysis.sweep), not a kernel-level measurement (that is
the Nsight Compute pass's roofline). The datasheet roofs (the peaks MFU and MBU divide by) are solid,
the calibrated ones (`perfctl calibrate`, when a point's run folder has one) dashed.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

from perfctl.analysis.result_sweep import DecodeRoofline, SweepPoint, SweepRoofs
from perfctl.report.charts import FONT_SIZE, _esc, _line, _num, _short, _svg, _text
from perfctl.report.formatting import number, pct, text_width
from perfctl.report.roofline import DASH, PLOT_B, PLOT_L, PLOT_R, PLOT_T, SOLID, _Axes, _grid, _ridge, _roof

SWEEP_COLOR = "#2ca02c"  # decode's colour in the report's stage charts
SWEEP_R = 6.0
BAR = ' stroke-width="3"'


def attainable_tflops(intensity: float, peak: float | None, bandwidth_gbs: float | None) -> float | None:
    """The roofline's bound at an arithmetic intensity (FLOP/byte), in TFLOP/s: min(peak, bandwidth x
    intensity); None unless both roofs are known."""
    return min(peak, bandwidth_gbs * intensity / 1e3) if peak and bandwidth_gbs else None


def span(low: str, high: str, unit: str = "") -> str:
    """Two figures of one unit as "low–high unit", the unit once ("3.7–14.9 %")."""
    return f"{low.removesuffix(unit)}–{high}"


def roofline_figures(at: DecodeRoofline, roofs: SweepRoofs) -> tuple[str, str, str]:
    """A point's arithmetic intensity (FLOP/byte), the datasheet roof there (TFLOP/s) and achieved /
    roof, as the tables and the tooltips print them: ranges for a mixture of experts (from its
    most-bytes end to its fewest-bytes end); "–" for the roof without both roofs."""
    least = at.get("arithmetic_intensity_least")
    ends = [at["arithmetic_intensity"]] if least is None else [least, at["arithmetic_intensity"]]
    intensity = "–".join(number(x) for x in ends)
    roof_at = [attainable_tflops(x, roofs["peak_tflops"], roofs["bandwidth_gbs"]) for x in ends]
    if not all(roof_at):
        return intensity, "–", "–"
    shares = sorted(at["achieved_tflops"] / float(r or 1) for r in roof_at)
    share = span(pct(shares[0]), pct(shares[-1]), " %") if least is not None else pct(shares[0])
    return intensity, "–".join(number(r) for r in roof_at), share


def _sweep_tip(p: SweepPoint, at: DecodeRoofline, roofs: SweepRoofs) -> str:
    intensity, roof, share = roofline_figures(at, roofs)
    achieved = number(at["achieved_tflops"])
    lines = [f"batch {p['batch_size']}: decode step, {intensity} FLOP/byte, {achieved} TFLOP/s"]
    if "arithmetic_intensity_least" in at:
        lines.append("a mixture of experts: from the most to the fewest expert bytes a step may read")
    if roof != "–":
        lines.append(f"roof there: {roof} TFLOP/s ({share} of it)")
    return "\n".join(lines)


def _sweep_legend(roofs: SweepRoofs) -> list[str]:
    """Right of the plot: each roof drawn with its figures, what a point and a bar are."""
    x, y, out = PLOT_R + 18, PLOT_T + 10, []
    dtype = roofs["dtype"] or "dtype unknown"
    entries = [
        (SOLID, "#333", "datasheet", roofs["peak_tflops"], roofs["bandwidth_gbs"], f"dense {dtype}"),
        (DASH, "#777", "calibrated", roofs["measured_tflops"], roofs["measured_bandwidth_gbs"], "measured"),
    ]
    for extra, color, name, peak, bandwidth, what in entries:
        if peak or bandwidth:
            lines = [f"{name} roofs:"] + [f"{number(peak)} TFLOP/s {what}"] * bool(peak)
            lines += [f"{number(bandwidth)} GB/s × FLOP/byte"] * bool(bandwidth)
            out.append(_line(x, y - 4, x + 22, y - 4, color, extra))
            out += [_text(x + 28, y + 15 * i, _short(t, 28), fill="#666") for i, t in enumerate(lines)]
            y += 15 * len(lines) + 10
    out.append(f'<circle cx="{_num(x + 11)}" cy="{_num(y - 4)}" r="{_num(SWEEP_R)}" fill="{SWEEP_COLOR}"/>')
    out += [
        _text(x + 28, y, "one batch size", fill="#666"),
        _line(x, y + 18, x + 22, y + 18, SWEEP_COLOR, BAR),
    ]
    for i, line in enumerate(
        ("a mixture of experts: from", "most to fewest expert", "bytes a step may read")
    ):
        out.append(_text(x + 28, y + 22 + 15 * i, line, fill="#666"))
    return out


def _off_sweep_chart(p: SweepPoint) -> str | None:
    """Why a point is not on the sweep's roofline, or None when it is."""
    if not p["analyzed"]:
        return f"batch {p['batch_size']}: no analysis (capture {p['status']})"
    return None if p["decode_roofline"] else f"batch {p['batch_size']}: no decode MFU and MBU to place it"


def _sweep_roofs(ax: _Axes, roofs: SweepRoofs) -> list[str]:
    """The datasheet roofs solid, the calibrated ones dashed: a measured line meets the other roof,
    measured or else the datasheet's; without a bandwidth the compute roof spans the plot."""
    peak, bandwidth = roofs["peak_tflops"], roofs["bandwidth_gbs"]
    measured_peak, measured_bw = roofs["measured_tflops"], roofs["measured_bandwidth_gbs"]
    out: list[str] = []
    for name, top, bw, style, ridge_of in (
        ("datasheet", peak, bandwidth, ("#333", SOLID), (peak, bandwidth)),
        (
            "calibrated",
            measured_peak,
            measured_bw,
            ("#777", DASH),
            (measured_peak or peak, measured_bw or bandwidth),
        ),
    ):
        tips = (f"{name} compute roof: {number(top)} TFLOP/s", f"{name} memory roof: {number(bw)} GB/s")
        ridge = _ridge(ax, *ridge_of) if ridge_of[1] else ax.x_lo
        out += _roof(ax, top, bw, style, tips, ridge)
    return out


def sweep_roofline(points: Sequence[SweepPoint], roofs: SweepRoofs) -> Markup | None:
    """The decode step of each batch size of a sweep on log-log axes, analytic FLOPs per modelled DRAM
    byte against achieved TFLOP/s (perfctl.analysis.sweep): a point labelled "batch N" each; a batch
    through a mixture of experts has a bar from its most-bytes intensity to its fewest-bytes one, where
    its point is. None when there is nothing to draw (no point on the chart and no roof)."""
    shown = [(p, at) for p in points if _off_sweep_chart(p) is None and (at := p["decode_roofline"])]
    peak, bandwidth = roofs["peak_tflops"], roofs["bandwidth_gbs"]
    measured = (roofs["measured_tflops"] or peak, roofs["measured_bandwidth_gbs"] or bandwidth)
    if not shown and not any((peak, bandwidth, *measured)):
        return None
    xs = [at["arithmetic_intensity"] for _, at in shown]
    xs += [at["arithmetic_intensity_least"] for _, at in shown if "arithmetic_intensity_least" in at]
    ys = [at["achieved_tflops"] for _, at in shown]
    for top, bw in ((peak, bandwidth), measured):
        ys += [top] if top else []
        xs += [top / (bw / 1e3)] if top and bw else []  # the ridge point
    if not shown and peak and bandwidth:  # roofs alone: three decades of memory roof below the ridge
        ys.append(peak / 1e3)
    ax = _Axes(xs, ys)
    body = _grid(ax, "arithmetic intensity (analytic FLOP per modelled DRAM byte, log scale)")
    body += _sweep_roofs(ax, roofs)
    for p, at in shown:
        tip = _sweep_tip(p, at, roofs)
        cx, cy = ax.x(at["arithmetic_intensity"]), ax.y(at["achieved_tflops"])
        least = at.get("arithmetic_intensity_least")
        if least is not None:
            x0 = ax.x(least)
            body += [
                _line(x0, cy, cx, cy, SWEEP_COLOR, BAR, tip),
                _line(x0, cy - 5, x0, cy + 5, SWEEP_COLOR, SOLID),
            ]
        body.append(
            f'<circle cx="{_num(cx)}" cy="{_num(cy)}" r="{_num(SWEEP_R)}" fill="{SWEEP_COLOR}" '
            f'fill-opacity="0.8" stroke="#1b6e1b"><title>{_esc(tip)}</title></circle>'
        )
        text = f"batch {p['batch_size']}"
        right = cx + SWEEP_R + 4 + text_width(text, FONT_SIZE) < PLOT_R  # to the right, or left near the edge
        body.append(
            _text(
                cx + SWEEP_R + 4 if right else cx - SWEEP_R - 4,
                cy + 4,
                text,
                "start" if right else "end",
                "#222",
            )
        )
    body += _sweep_legend(roofs)
    captions = [c for c in (_off_sweep_chart(p) for p in points) if c]
    if not peak and not bandwidth:
        captions.append("no datasheet roof drawn: neither the GPU's peak nor its bandwidth is known")
    elif not peak or not bandwidth:
        roof, what = ("compute", "peak") if not peak else ("memory", "bandwidth")
        captions.append(f"no datasheet {roof} roof: the GPU's {what} is unknown")
    for i, caption in enumerate(captions):
        body.append(_text(PLOT_L, PLOT_B + 54 + 16 * i, caption, fill="#555"))
    return _svg(PLOT_B + 62 + 16 * len(captions), "decode roofline per batch size", body)
