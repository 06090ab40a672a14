"""The HTML report: one self-contained, autoescaped file rendered from templates/report.html.j2."""

from __future__ import annotations

from typing import Any

import jinja2

from perfctl.report import formatting
from perfctl.resources import templates_dir


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,  # NVTX texts and kernel names are untrusted: always escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ms=formatting.ms, pct=formatting.pct, count=formatting.count, nbytes=formatting.nbytes)
    return env


STAGE_COLORS = {"vision": "#1f77b4", "prefill": "#ff7f0e", "decode": "#2ca02c"}
BAR_WIDTH = 820  # SVG user units for the longest page


def page_bars(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Geometry of the per-page stage bars: each stage's wall time, to one scale for all pages."""
    longest = max((p["wall_ns"] for p in pages), default=0)
    if longest <= 0:
        return []
    bars = []
    for page in pages:
        x, segments = 0.0, []
        for stage in STAGE_COLORS:
            width = BAR_WIDTH * page["stages"][stage]["wall_ns"] / longest
            segments.append(
                {
                    "stage": stage,
                    "x": round(x, 2),
                    "width": round(width, 2),
                    "wall_ns": page["stages"][stage]["wall_ns"],
                }
            )
            x += width
        bars.append(
            {
                "sequence": page["sequence"],
                "wall_ns": page["wall_ns"],
                "segments": segments,
                "total_width": round(BAR_WIDTH * page["wall_ns"] / longest, 2),
            }
        )
    return bars


def render_html(analysis: dict[str, Any], manifest: dict[str, Any] | None) -> str:
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            a=analysis,
            run=manifest or {},
            colors=STAGE_COLORS,
            stage_names=list(STAGE_COLORS),
            page_bars=page_bars(analysis["pages"]),
        )
    )
