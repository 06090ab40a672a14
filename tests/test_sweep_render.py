"""A batch sweep's renderers (perfctl.report.sweep): the terminal table, sweep-summary.md and
sweep-report.html with its decode roofline, on the analyses of a real compiled-decode sweep of the
full-size DeepSeek-OCR-2 on an H200 (tests/fixtures/h200-compiled-sweep: batch 1, 16 and 64; 16 and 64
bounded MBU, a mixture of experts). Also: a point whose capture failed, hostile names, no peaks."""

from __future__ import annotations

import copy
import json
import lzma
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from perfctl.analysis.result import Analysis
from perfctl.analysis.result_sweep import SweepAnalysis
from perfctl.analysis.sweep import analyze_sweep
from perfctl.report.formatting import INVISIBLE, number, pct
from perfctl.report.markdown import md_text
from perfctl.report.sweep import (
    SECTIONS,
    render_sweep_html,
    render_sweep_markdown,
    render_sweep_text,
    report_link,
)
from perfctl.report.sweep_roofline import attainable_tflops, sweep_roofline
from report_inputs import REPORT_TAGS, URL_ATTRIBUTES, Elements

FIXTURE = Path(__file__).parent / "fixtures" / "h200-compiled-sweep"
BATCHES = (1, 16, 64)
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(1)</script>\u202etxt.exe"
HOSTILE_REASON = '<img src=x onerror="alert(2)"> out of memory \u202e|`x`*'


def manifest(
    sweep_id: str = "h200-compiled", model: str = "deepseek-ocr2", extra: Any = ()
) -> dict[str, Any]:
    """sweep.json as `perfctl sweep` writes it; `extra`: more points, (batch size, status, reason)."""
    points = [{"batch_size": b, "run": f"batch-{b}", "status": "ok", "reason": None} for b in BATCHES]
    points += [{"batch_size": b, "run": f"batch-{b}", "status": s, "reason": r} for b, s, r in extra]
    return {
        "kind": "perfctl-sweep",
        "sweep_id": sweep_id,
        "perfctl_command": ["perfctl", "sweep", "--batch-sizes", "1,16,64", "--decode", "compiled"],
        "status": "ok",
        "batch_sizes": sorted(p["batch_size"] for p in points),
        "options": {"model": model, "decode": "compiled", "device": "cuda", "max_new_tokens": 128},
        "points": points,
    }


@pytest.fixture(scope="module")
def analyses() -> dict[int, Analysis]:
    return {b: json.loads(lzma.open(FIXTURE / f"batch-{b}.analysis.json.xz").read()) for b in BATCHES}


@pytest.fixture(scope="module")
def sweep(analyses: dict[int, Analysis]) -> SweepAnalysis:
    return analyze_sweep(manifest(), "profiles/h200-compiled", analyses)


@pytest.fixture(scope="module")
def with_failed(analyses: dict[int, Analysis]) -> SweepAnalysis:
    """The sweep with a batch-4 point whose capture failed (no analysis), its reason hostile."""
    found = manifest(extra=[(4, "failed", HOSTILE_REASON)])
    return analyze_sweep(found, "profiles/h200-compiled", analyses)


class Page(HTMLParser):
    """The headings of a page, its SVGs' sources and every element with its attributes."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.h2: list[str] = []
        self._in_h2 = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "h2":
            self._in_h2 = True
            self.h2.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_h2 = self._in_h2 and tag != "h2"

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.h2[-1] += data


def roofline_svg(html: str) -> ET.Element:
    chart = re.search(r'<svg [^>]*aria-label="decode roofline per batch size".*?</svg>', html, re.S)
    assert chart, "the decode roofline"
    return ET.fromstring(chart.group())


def plotted(svg: ET.Element) -> list[str]:
    """The tooltips of the chart's points (the legend's circle has none)."""
    return [t.text or "" for c in svg.iter(f"{SVG}circle") if (t := c.find(f"{SVG}title")) is not None]


def roof_lines(svg: ET.Element) -> list[str]:
    tips = [t.text or "" for line in svg.iter(f"{SVG}line") if (t := line.find(f"{SVG}title")) is not None]
    return [t for t in tips if "roof:" in t]


def inert(html: str, links: set[str]) -> Elements:
    """No element outside the report's and the roofline's, no event handler, and no URL but in-page
    links and the points' relative report links."""
    doc = Elements(html)
    assert {tag for tag, _ in doc.tags} <= REPORT_TAGS | {"circle"}
    assert not [(tag, a) for tag, attrs in doc.tags for a in attrs if a.startswith("on")]
    urls = {v for _, attrs in doc.tags for k, v in attrs.items() if k in URL_ATTRIBUTES and v}
    assert {u for u in urls if not u.startswith("#")} <= links
    return doc


def text_rows(text: str) -> dict[int, dict[str, str]]:
    """The terminal table's rows by batch size, each cell by its column's header (cells are set apart
    by two spaces at least; a figure and its unit by one)."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:2] == ["batch", "status"])
    header = re.split(r"\s{2,}", lines[at].strip())
    rows = {}
    for line in lines[at + 1 :]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) != len(header) or not cells[0].isdigit():
            break
        rows[int(cells[0])] = dict(zip(header, cells, strict=True))
    return rows


def test_text_carries_each_batch_figures_and_the_saturation(sweep: SweepAnalysis) -> None:
    text = render_sweep_text(sweep)
    rows = text_rows(text)
    assert sorted(rows) == list(BATCHES)
    for p in sweep["points"]:
        row = rows[p["batch_size"]]
        assert row["status"] == "ok"
        assert row["pages/s"] == number(p["pages_per_s"]) and row["tok/s"] == number(p["tokens_per_s"])
        assert row["decode tok/s"] == number(p["decode_tokens_per_s"])
        assert row["TTFT ms"] == number(p["time_to_first_token_p50_ms"])
        assert row["TPOT ms"] == number(p["time_per_output_token_p50_ms"])
        assert row["step ms"] == number(p["decode_step_p50_ms"])
        assert [row[f"MFU {s}"] for s in ("vision", "prefill", "decode")] == [
            pct(p["mfu"][s]) for s in ("vision", "prefill", "decode")
        ]
        assert row["decode CV"] == pct(p["stage_cv"]["decode"])
    assert rows[1]["decode MBU"] == pct(sweep["points"][0]["decode_mbu"]) == "7.4 %"  # a dense step
    for p in sweep["points"][1:]:  # bounds: a mixture of experts
        low, high = pct(p.get("decode_mbu_least")), pct(p.get("decode_mbu_most"))
        assert rows[p["batch_size"]]["decode MBU"] == f"{low.removesuffix(' %')}–{high}"
    assert not sweep["saturation"]["reached"]
    assert f"Saturation: {sweep['saturation']['why']}." in text.splitlines()
    assert "(64): elementwise (60.5 % of decode's kernel time)." in text


def test_markdown_has_headline_tables_and_definitions(sweep: SweepAnalysis) -> None:
    md = render_sweep_markdown(sweep)
    best = sweep["points"][-1]
    assert f"**Peak throughput {number(best['pages_per_s'])} pages/s at batch 64" in md
    assert md_text(f"Saturation: {sweep['saturation']['why']}.", limit=None) in md
    peaks = (sweep["roofs"]["peak_tflops"], sweep["roofs"]["bandwidth_gbs"])
    assert peaks == (989.5, 4800.0)  # the H200's datasheet row
    for p in sweep["points"]:
        b = p["batch_size"]
        assert f"| {b} | ok | {number(p['pages_per_s'])} | {number(p['tokens_per_s'])} |" in md
        assert f"| {b} | {pct(p['mfu']['vision'])} | {pct(p['mfu']['prefill'])} |" in md
        at = p["decode_roofline"]
        assert at is not None
        roof = attainable_tflops(at["arithmetic_intensity"], *peaks)
        assert roof is not None and number(roof) in md  # the roof at its intensity: memory-bound here
        assert f"| {number(at['achieved_tflops'])} |" in md
        cvs = " | ".join(pct(p["stage_cv"][s]) for s in ("vision", "prefill", "decode"))
        assert f"| {b} | {cvs} | GPU clock (CUDA events) |" in md
    assert "| 1 | 1.00 | 0.357 | 4.80 | 7.4 % |" in md  # batch 1: 1 FLOP/byte x 4,800 GB/s = 4.8 TFLOP/s
    for heading in ("## Headline", "## Decode roofline", "## Stability", "## What each number is"):
        assert heading in md
    # one line each, every figure with its unit: a rate (/s) or a unit in parentheses
    definitions = md.split("## What each number is")[1].split("## Warnings")[0].strip().splitlines()
    assert len(definitions) > 10
    assert all(re.match(r"- \*\*[^*]+(/s|\(\S+\))\*\*: \S", line) for line in definitions), definitions


def test_html_parses_with_every_section_and_one_point_per_batch(sweep: SweepAnalysis) -> None:
    html = render_sweep_html(sweep)
    inert(html, {f"batch-{b}/report.html" for b in BATCHES})
    assert Page(html).h2 == [heading for _, heading in SECTIONS]
    svg = roofline_svg(html)
    tips = plotted(svg)
    assert [t.split(":")[0] for t in tips] == [f"batch {b}" for b in BATCHES]
    labels = [t.text for t in svg.iter(f"{SVG}text")]
    assert all(f"batch {b}" in labels for b in BATCHES)
    assert roof_lines(svg) == ["datasheet memory roof: 4,800 GB/s", "datasheet compute roof: 989.5 TFLOP/s"]
    # the two batches through a mixture of experts have a bar, from the most-bytes intensity to the
    # fewest-bytes one (where the point is): the point's x is the bar's right end
    circles = [c for c in svg.iter(f"{SVG}circle") if c.find(f"{SVG}title") is not None]
    bars = [
        line
        for line in svg.iter(f"{SVG}line")
        if line.get("stroke-width") == "3" and line.find(f"{SVG}title") is not None
    ]
    assert [(b.findtext(f"{SVG}title") or "").split(":")[0] for b in bars] == ["batch 16", "batch 64"]
    for bar, circle in zip(bars, circles[1:], strict=True):
        assert float(bar.get("x1") or 0) < float(bar.get("x2") or 0) == float(circle.get("cx") or 0)
    for b in BATCHES:
        assert f'<a href="batch-{b}/report.html">batch-{b}</a>' in html
    assert "<svg" in html and html.count('role="img"') == 6  # pages/s, tokens/s, TTFT, TPOT, MFU, roofline


def test_a_failed_point_shows_its_status_and_no_figures(with_failed: SweepAnalysis) -> None:
    failed = next(p for p in with_failed["points"] if p["batch_size"] == 4)
    assert failed["status"] == "failed" and not failed["analyzed"]
    text = render_sweep_text(with_failed)
    row = next(line for line in text.splitlines() if line.split()[:2] == ["4", "failed"])
    assert set(row.split()[2:]) == {"–"}  # no figures, every cell says so
    assert "warning: batch 4: no analysis (capture failed: " in text
    md = render_sweep_markdown(with_failed)
    assert "| 4 | failed | – | – | – | – | – | – |" in md
    html = render_sweep_html(with_failed)
    inert(html, {f"batch-{b}/report.html" for b in BATCHES})  # no link to the failed point's report
    assert '<td>4</td><td class="l">batch-4</td><td class="l">failed (no analysis)</td>' in html
    svg = roofline_svg(html)
    assert len(plotted(svg)) == len(BATCHES)
    assert "batch 4: no analysis (capture failed)" in [t.text for t in svg.iter(f"{SVG}text")]


def test_hostile_names_stay_text_everywhere(analyses: dict[int, Analysis]) -> None:
    hostile = analyze_sweep(
        manifest(sweep_id=HOSTILE, model=HOSTILE, extra=[(4, HOSTILE, HOSTILE_REASON)]), HOSTILE, analyses
    )
    text = render_sweep_text(hostile)
    md = render_sweep_markdown(hostile)
    html = render_sweep_html(hostile)
    for out in (text, md, html):
        assert not INVISIBLE.search(out)  # the override shown as \u202e, never raw
        assert "\\u202e" in out
    assert "<script>" not in md and "<img" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "<script" not in html and "<img" not in html
    doc = inert(html, {f"batch-{b}/report.html" for b in BATCHES})
    shown = "".join(doc.text)
    assert "<script>alert(1)</script>\\u202etxt.exe" in shown  # reads as what it is
    title = next(t for t in doc.text if t.startswith("perfctl sweep"))
    assert title == "perfctl sweep · <script>alert(1)</script>\\u202etxt.exe"


def test_report_links_stay_inside_the_sweep_folder() -> None:
    assert report_link("batch-16") == "batch-16/report.html"
    assert report_link("javascript:alert(1)") == "javascript%3Aalert%281%29/report.html"  # a relative path
    assert report_link("../elsewhere") is None and report_link("/etc") is None and report_link("") is None


def _unknown_gpu(analysis: Analysis) -> Analysis:
    """An analysis as perfctl.analysis.efficiency writes it for a GPU with no datasheet row: no peak,
    so no MFU, and no bandwidth, so no MBU (its decode_mbu says why)."""
    out = copy.deepcopy(analysis)
    eff: Any = out["efficiency"]
    eff["inputs"]["peak_tflops"] = None
    eff["inputs"]["peak_source"] = "no datasheet row for this GPU"
    for stage in eff["stages"].values():
        stage["mfu"] = None
    eff["page"]["mfu"] = None
    eff["decode_mbu"] = {"mbu": None, "reason": "needs a clean pass with a known peak bandwidth"}
    return out


def test_a_sweep_without_peaks_draws_no_roof_and_says_why(analyses: dict[int, Analysis]) -> None:
    unknown = analyze_sweep(manifest(), "p", {b: _unknown_gpu(a) for b, a in analyses.items()})
    assert unknown["roofs"]["peak_tflops"] is None and unknown["roofs"]["bandwidth_gbs"] is None
    html = render_sweep_html(unknown)
    assert 'aria-label="decode roofline per batch size"' not in html
    why = "No roof: the GPU's peak and bandwidth are unknown (no datasheet row for this GPU)"
    assert why.replace("'", "&#39;") in html
    assert "No decode roofline: no point has a decode position" in html
    assert md_text(why, limit=None) in render_sweep_markdown(unknown)
    # points placed without any roof (the chart alone): drawn, no roof line, the caption says why
    sweep = analyze_sweep(manifest(), "p", analyses)
    none = dict.fromkeys(("peak_tflops", "bandwidth_gbs", "measured_tflops", "measured_bandwidth_gbs"))
    chart = sweep_roofline(sweep["points"], {**sweep["roofs"], **none})
    assert chart is not None
    svg = ET.fromstring(str(chart))
    assert len(plotted(svg)) == len(BATCHES) and roof_lines(svg) == []
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "no datasheet roof drawn: neither the GPU's peak nor its bandwidth is known" in texts
    assert not any(t and "roofs:" in t for t in texts)  # the legend names no roof


def test_calibrated_roofs_are_dashed(sweep: SweepAnalysis) -> None:
    roofs = {**sweep["roofs"], "measured_tflops": 700.0, "measured_bandwidth_gbs": 4000.0}
    svg = ET.fromstring(str(sweep_roofline(sweep["points"], roofs)))
    lines = {
        (line.findtext(f"{SVG}title") or ""): line.get("stroke-dasharray")
        for line in svg.iter(f"{SVG}line")
        if "roof:" in (line.findtext(f"{SVG}title") or "")
    }
    assert lines == {
        "datasheet memory roof: 4,800 GB/s": None,
        "datasheet compute roof: 989.5 TFLOP/s": None,
        "calibrated memory roof: 4,000 GB/s": "6 4",
        "calibrated compute roof: 700.0 TFLOP/s": "6 4",
    }
