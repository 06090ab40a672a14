"""The HTML report: one self-contained, autoescaped file rendered from templates/report.html.j2.

Self-contained: styles inline, charts inline SVG (perfctl.report.charts), no scripts, fonts or other
files, so it opens offline. Every section is always there; one whose data is absent says why. Every
printed value is HTML-escaped, and text has its bidirectional overrides, isolates and marks and its
control characters shown as escapes (`formatting.visible`), so a name reads as what it is.
"""

from __future__ import annotations

import math
import os
import shlex
from typing import Any

import jinja2
from markupsafe import Markup

from perfctl.analysis.findings import SEVERITY_ORDER
from perfctl.analysis.ncu_findings import launch_config, per_page, roof_position
from perfctl.analysis.repeatability import MIN_PAGES_FOR_CI, t95
from perfctl.analysis.result import Analysis, Finding
from perfctl.analysis.result_ncu import NcuPass, RooflinePoint, Roofs
from perfctl.report import charts, formatting, roofline
from perfctl.report.text import graph_kernel_lines
from perfctl.resources import templates_dir
from perfctl.stages import STAGES

# (id, heading) of every section, in page order; tests check that a browser shows each heading.
# The findings and the stage chart come first, so that both are on the first screen (1400 x 900);
# the run's identity, a long list, follows the figures (a line under the title names the run).
SECTIONS = (
    ("findings", "Findings"),
    ("stages", "Stage breakdown per page"),
    ("efficiency", "MFU and MBU per stage"),
    ("repeatability", "Spread across repeats"),
    ("kernels", "Top kernels per stage"),
    ("operators", "Top operators"),
    ("memory", "Memory"),
    ("telemetry", "GPU telemetry"),
    ("overhead", "Profiler overhead"),
    ("run", "Run identity"),
    ("ranges", "All NVTX ranges"),
)
# The Nsight Compute section, after "kernels": only in a report whose analysis has an ncu pass (most
# runs have none, and a section saying so on every report would be noise).
NCU_SECTION = ("ncu", "Kernel level (Nsight Compute)")
NCU_TOP_KERNELS = 10  # kernels per stage in the report's table; kernels.md has them all
# Findings shown as a line each before the rest, which are grouped by severity under one <details>:
# three lines keep the stage chart on the first screen (1400 x 900) and hold a run's most severe
# finding per stage (findings come most severe first).
FINDINGS_UP_FRONT = 3


def _shown(value: Any) -> Any:
    """What the template prints of a value: text with its invisible characters escaped
    (`formatting.visible`); markup (the charts, which escape their own text) as it is."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return formatting.visible(value)
    return value


def template_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs: compiling report.html.j2 took 0.27 s of every `perfctl
    analyze` on a 2-core machine. Jinja keys each entry by the template's name and a checksum of its
    source and writes it atomically, so an edited template or a second perfctl at the same time never
    reads a stale or half-written one. In $PERFCTL_CACHE_DIR, else $XDG_CACHE_HOME/perfctl, else
    ~/.cache/perfctl; where none can be made, templates are compiled each time (only slower)."""
    root = os.environ.get("PERFCTL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "perfctl"
    )
    folder = os.path.join(root, "templates")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(folder) if os.access(folder, os.W_OK) else None


def severity_counts(findings: list[Finding]) -> str:
    """How many findings of each severity, most severe first: "3 high, 12 info"."""
    counts = [(sev, sum(f["severity"] == sev for f in findings)) for sev in SEVERITY_ORDER]
    return ", ".join(f"{n} {sev}" for sev, n in counts if n)


def template_environment() -> jinja2.Environment:
    """The one Jinja environment of perfctl's HTML (the report, the comparison)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        bytecode_cache=template_cache(),
        autoescape=True,  # NVTX texts, kernel, model and file names are untrusted: always escaped
        finalize=_shown,  # ... and their bidirectional overrides and control characters shown escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ms=formatting.ms,
        pct=formatting.pct,
        count=formatting.count,
        nbytes=formatting.nbytes,
        number=formatting.number,
        ci=formatting.confidence_interval,
        severity_counts=severity_counts,
        shell=lambda argv: shlex.join(str(a) for a in argv),
    )
    return env


def top_kernel_labels(analysis: Analysis) -> dict[str, list[str]]:
    """Per stage, the label of each of its top kernels, as its chart and table show it: the short
    name, told apart from the stage's other kernels of the same short name (formatting.kernel_labels)."""
    return {
        s["stage"]: formatting.kernel_labels([(k["short_name"], k["name"]) for k in s["top_kernels"]])
        for s in analysis.get("stages") or []
    }


def _charts(analysis: Analysis) -> dict[str, Markup | None]:
    out: dict[str, Markup | None] = {"timeline": charts.page_timeline(analysis.get("pages") or [])}
    stages = analysis.get("stages") or []
    out["categories"] = charts.category_bars(stages)
    labels = top_kernel_labels(analysis)
    for s in stages:
        out[f"top_{s['stage']}"] = charts.hbars(
            [
                (label, k["time_ns"] / 1e6, f"{k['time_ns'] / 1e6:,.3f} ms")
                for label, k in zip(labels[s["stage"]], s["top_kernels"], strict=True)
            ],
            "ms",
            f"top kernels of {s['stage']} by time",
            colors=[charts.CATEGORY_COLORS.get(k["category"], "#7f7f7f") for k in s["top_kernels"]],
            tips=[k["name"] for k in s["top_kernels"]],
            fit_label=formatting.fit_label,
        )
    eff = analysis.get("efficiency")
    if eff and eff.get("available"):
        rows = [
            (stage, None if st["mfu"] is None else 100 * st["mfu"], formatting.pct(st["mfu"]) + " of peak")
            for stage, st in eff["stages"].items()
        ]
        out["mfu"] = charts.hbars(
            rows, "%", "MFU per stage", colors=[charts.STAGE_COLORS.get(s, "#999") for s, _, _ in rows]
        )
        ratios = [
            (stage, st["nsys_over_clean"], f"{st['nsys_over_clean']:.2f}× the clean time")
            if st["nsys_over_clean"]
            else (stage, None, "no stage time under nsys")
            for stage, st in eff["stages"].items()
        ]
        out["overhead"] = charts.hbars(
            ratios, "×", "stage time under nsys / clean time", reference=(1.0, "1× = no overhead")
        )
    timing = analysis.get("timing")
    if timing:
        out["spread"] = charts.spread_chart(timing["statistics"]["stages"])
        tel = timing.get("telemetry")
        if tel and tel.get("available"):
            out["energy"] = charts.hbars(
                [
                    (
                        f"page {p['sequence']}",
                        p["energy_j"],
                        f"{p['energy_j']:,.1f} J · {p['power_w_mean']:,.0f} W",
                    )
                    for p in tel["pages"]
                ],
                "J",
                "energy per page",
            )
    return out


def sections_of(analysis: Analysis) -> tuple[tuple[str, str], ...]:
    """The report's sections in page order: SECTIONS, with NCU_SECTION after the kernels when the
    analysis has an ncu pass."""
    if not analysis.get("ncu"):
        return SECTIONS
    at = [sid for sid, _ in SECTIONS].index("kernels") + 1
    return (*SECTIONS[:at], NCU_SECTION, *SECTIONS[at:])


def _ncu_rows(points: list[RooflinePoint], roofs: Roofs) -> list[dict[str, Any]]:
    """The table rows of the largest points (by share): each with its launch and roof position."""
    top = sorted(points, key=lambda p: -p["share_of_stage_kernel_time"])[:NCU_TOP_KERNELS]
    labels = formatting.kernel_labels([(p["short_name"], p["name"]) for p in top])
    return [
        {
            "p": p,
            "label": label,
            "launch": launch_config(p["grid"], p["block"]),
            "per_page": per_page(p["instances_per_page"]),
            "position": roof_position(
                p["arithmetic_intensity"], p["achieved_tflops"], roofs, p["sm_clock_hz"]
            ),
        }
        for p, label in zip(top, labels, strict=True)
    ]


def _ncu(ncu: NcuPass | None) -> dict[str, Any] | None:
    """What the Nsight Compute section shows: per stage its roofline and top kernels; a bare report
    (no stages) its kernels weighed by their duration."""
    if not ncu:
        return None
    roofs = ncu["roofs"]
    stages = [
        {
            "work": work,
            "chart": roofline.stage_roofline(work, roofs),
            "rows": _ncu_rows(work["roofline"], roofs),
            "more": max(len(work["roofline"]) - NCU_TOP_KERNELS, 0),
        }
        for work in ncu["stages"]
    ]
    report_only = None
    if not ncu["stages"]:
        points = roofline.report_points(ncu["kernels"])
        report_only = {
            "chart": roofline.report_roofline(ncu["kernels"], roofs),
            "rows": _ncu_rows(points, roofs),
            "more": max(len(points) - NCU_TOP_KERNELS, 0),
        }
    return {"data": ncu, "roofs": roofs, "stages": stages, "report_only": report_only}


def top_memory_operators(analysis: Analysis, n: int = 10) -> list[dict[str, Any]]:
    """The torch pass's operators that allocated the most device memory (self), across stages."""
    operators = analysis.get("operators")
    stages = (operators.get("stages") if operators else None) or {}
    rows: list[dict[str, Any]] = [
        {"stage": stage, **op}
        for stage, table in stages.items()
        for op in table.get("top", [])
        if op.get("self_device_memory_bytes")
    ]
    return sorted(rows, key=lambda op: -abs(op["self_device_memory_bytes"]))[:n]


def ci_std_factor(pages: int) -> float:
    """Half the width of a 95 % t interval of the mean from `pages` values, in standard deviations."""
    return t95(pages - 1) / math.sqrt(pages)


def render_html(analysis: Analysis, manifest: dict[str, Any] | None) -> str:
    return (
        template_environment()
        .get_template("report.html.j2")
        .render(
            a=analysis,
            run=manifest or {},
            colors=charts.STAGE_COLORS,
            stage_names=list(STAGES),
            sections=sections_of(analysis),
            charts=_charts(analysis),
            kernel_labels=top_kernel_labels(analysis),
            min_pages_for_ci=MIN_PAGES_FOR_CI,
            ci_std_factor=ci_std_factor,
            findings_up_front=FINDINGS_UP_FRONT,
            severities=SEVERITY_ORDER,
            memory_operators=top_memory_operators(analysis),
            ncu=_ncu(analysis.get("ncu")),
            graph_lines=graph_kernel_lines(analysis),
        )
    )
