"""The Nsight Compute pass rendered: the roofline SVG, kernels.md, the report's "Kernel level" section
and the ncu findings, on the kernels of a real H200 report (a 4096^3 bf16 GEMM, a 256 MiB fp32
elementwise multiply, a small CUDA-graph node kernel: scripts/ncu_known_work.py). The stage figures
(instances per page, shares, analytic FLOPs) and the roofs are written here by hand: an H200 SXM's
dense bf16 peak 989.4 TFLOP/s at its 1.98 GHz boost clock, 4,800 GB/s."""

from __future__ import annotations

import copy
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from conftest import decompress_fixture
from perfctl.analysis.ncu_findings import FAR_BELOW_ROOF, FLOP_MISMATCH, ncu_findings
from perfctl.analysis.result import Analysis
from perfctl.analysis.result_ncu import KernelFlops, NcuKernel, NcuPass, RooflinePoint, Roofs
from perfctl.ncu_rep.reader import read_ncu_report
from perfctl.report import roofline
from perfctl.report.html import NCU_SECTION, render_html
from perfctl.report.kernels_md import render_kernels_md
from perfctl.report.markdown import md_text
from report_inputs import HOSTILE_KERNEL, HOSTILE_SHORT, REPORT_TAGS, assert_inert

# committed xz-compressed (tests/fixtures/README.md); each test session decompresses it once
REPORT_FIXTURE = "h200-ncu-known-work.ncu-rep.xz"
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script>\u202etxt.exe|`k`*b*'

# the median of the three kernels' SM clocks under ncu's base clock control (1,262 / 1,474 / 1,499
# MHz), which perfctl.analysis.measured_work takes as the profiled clock
BOOST_HZ, PROFILED_HZ = 1.98e9, 1474077581.369
ROOFS: Roofs = {
    "gpu": "NVIDIA H200",
    "dtype": "bf16",
    "peak_tflops_boost": 989.4,
    "peak_tflops_at_profiled_clock": 989.4 * PROFILED_HZ / BOOST_HZ,
    "profiled_sm_clock_hz": PROFILED_HZ,
    "max_sm_clock_hz": BOOST_HZ,
    "bandwidth_gbs": 4800.0,
    "source": "NVIDIA H200 SXM datasheet, dense bf16 (docs/gpu-peaks.md)",
}
PER_PAGE = {"nvjet": 4.0, "elementwise": 2.0, "graph": 8.0}  # launches per page, by the kernel's role


def _role(k: NcuKernel) -> str:
    return (
        "nvjet" if k["short_name"].startswith("nvjet") else "graph" if k["grid"][0] == 1024 else "elementwise"
    )


def _point(k: NcuKernel, share: float) -> RooflinePoint:
    return {
        "name": k["name"],
        "short_name": k["short_name"],
        "grid": k["grid"],
        "block": k["block"],
        "instances_per_page": PER_PAGE[_role(k)],
        "share_of_stage_kernel_time": share,
        "arithmetic_intensity": k["arithmetic_intensity"],
        "achieved_tflops": k["flops"]["total"] / (k["duration_ns"] or 1) / 1e3,
        "sm_clock_hz": k["sm_clock_hz"],
        "bound": k["bound"],
    }


def _flops(total: float) -> KernelFlops:
    return {
        "fp64": 0.0,
        "fp32": 0.0,
        "fp16": 0.0,
        "fp64_tensor": 0.0,
        "tf32_tensor": 0.0,
        "fp16_tensor": 0.0,
        "bf16_tensor": total,
        "fp8_tensor": 0.0,
        "total": total,
    }


# a copy kernel (no floating-point work) in the stage's nsys figures that ncu did not profile: its
# point has FLOPs 0, which a log axis cannot show
COPY_POINT: RooflinePoint = {
    "name": "void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>(int)",
    "short_name": "unrolled_elementwise_kernel",
    "grid": [512, 1, 1],
    "block": [128, 1, 1],
    "instances_per_page": 6.0,
    "share_of_stage_kernel_time": 0.04,
    "arithmetic_intensity": 0.0,
    "achieved_tflops": 0.0,
    "sm_clock_hz": None,
    "bound": "memory",
}


def _ncu_pass(report: Path, kernels: list[NcuKernel]) -> NcuPass:
    for k in kernels:
        k["stage"] = "prefill"
    per_page_ns = {_role(k): PER_PAGE[_role(k)] * (k["duration_ns"] or 0) for k in kernels}
    covered = sum(per_page_ns.values())
    stage_time = covered / 0.96  # the copy kernel holds the other 4 %
    points = [_point(k, per_page_ns[_role(k)] / stage_time) for k in kernels] + [COPY_POINT]
    measured = sum(PER_PAGE[_role(k)] * k["flops"]["total"] for k in kernels)
    analytic = 4 * 2 * 4096.0**3  # the GEMMs alone: 2 FLOPs per multiply-accumulate
    decode_points = [_point(kernels[1], 0.7)]  # a stage the elementwise kernel dominates
    return {
        "report": str(report),
        "command": ["ncu", "--clock-control", "base", "--nvtx", "python", "-m", "perfctl.driver"],
        "clock_control": "base",
        "kernels": kernels,
        "stages": [
            {
                "stage": "prefill",
                "kernel_time_ns_per_page": stage_time,
                "covered_time_ns_per_page": covered,
                "coverage": covered / stage_time,
                "profiled_kernels": 3,
                "measured_flops_per_page": _flops(measured),
                "measured_dram_bytes_per_page": 1.2e9,
                "analytic_flops_per_page": analytic,
                "measured_over_analytic": measured / analytic,
                "gap": ["elementwise fp32 work the FLOP model leaves out (0.02 %)"],
                "roofline": points,
            },
            {
                "stage": "decode",
                "kernel_time_ns_per_page": 400e3,
                "covered_time_ns_per_page": 250e3,
                "coverage": 0.625,
                "profiled_kernels": 1,
                "measured_flops_per_page": _flops(1.34e8),
                "measured_dram_bytes_per_page": 1.03e9,
                "analytic_flops_per_page": 2.68e8,
                "measured_over_analytic": 0.5,
                "gap": ["attention <not profiled>"],
                "roofline": decode_points,
            },
        ],
        "roofs": ROOFS,
        "warnings": [],
    }


@pytest.fixture(scope="module")
def report_kernels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[NcuKernel]]:
    """The real report, decompressed, and its kernels as perfctl reads them (once for the module)."""
    # perfctl reads .ncu-rep through NVIDIA's ncu-report package, a dependency that setup installs
    pytest.importorskip("ncu_report", reason="NVIDIA's ncu-report package reads .ncu-rep files")
    report = decompress_fixture(REPORT_FIXTURE, tmp_path_factory.mktemp("ncu-render"))
    return report, read_ncu_report(report)["kernels"]


@pytest.fixture
def ncu(report_kernels: tuple[Path, list[NcuKernel]]) -> NcuPass:
    """The pass built on the report's kernels; a fresh copy per test, since tests change it."""
    report, kernels = report_kernels
    return _ncu_pass(report, copy.deepcopy(kernels))


def _analysis(ncu: NcuPass | None) -> Analysis:
    analysis: Analysis = {"perfctl_version": "test", "warnings": []}
    if ncu is not None:
        analysis["ncu"] = ncu
    return analysis


def _plotted(svg: ET.Element) -> list[ET.Element]:
    """The kernel circles (the legend's circles carry no tooltip)."""
    return [c for c in svg.iter(f"{SVG}circle") if c.find(f"{SVG}title") is not None]


def _decade_lines(svg: ET.Element, axis: str) -> dict[str, float]:
    """Tick label -> the position of its grid line, for the x (labels centred under the plot) or the
    y axis (labels right-aligned left of it)."""
    anchor = "middle" if axis == "x" else "end"
    return {
        t.text: float(t.get(axis) or 0)
        for t in svg.iter(f"{SVG}text")
        if t.text and re.fullmatch(r"[0-9.,e-]+", t.text) and t.get("text-anchor") == anchor
    }


def _tip(element: ET.Element) -> str:
    title = element.find(f"{SVG}title")
    return (title.text or "") if title is not None else ""


def test_roofline_svg_has_a_circle_per_plottable_kernel_on_log_axes(ncu: NcuPass) -> None:
    stage = ncu["stages"][0]
    chart = roofline.stage_roofline(stage, ncu["roofs"])
    assert chart is not None
    svg = ET.fromstring(str(chart))
    circles = _plotted(svg)
    assert len(circles) == 3  # GEMM, elementwise, graph node; the copy kernel has no FLOPs
    caption = "1 kernel not on the chart: no floating-point work; 4.0 % of prefill's kernel time"
    assert caption in [t.text for t in svg.iter(f"{SVG}text")]
    # x: a grid line at each power of ten, equally spaced; the points sit at log10 of their intensity
    xs = _decade_lines(svg, "x")
    assert {"0.1", "1", "10", "100", "1,000"} <= set(xs)
    decade = xs["10"] - xs["1"]
    assert xs["1,000"] - xs["100"] == pytest.approx(decade) and decade > 0
    gemm = next(p for p in stage["roofline"] if p["short_name"].startswith("nvjet"))
    ew = next(p for p in stage["roofline"] if p["grid"] == [65536, 1, 1])
    cx_gemm = next(float(c.get("cx") or 0) for c in circles if _tip(c).startswith("nvjet"))
    cx_ew = next(float(c.get("cx") or 0) for c in circles if "grid 65536×1×1" in _tip(c))
    log_span = math.log10(gemm["arithmetic_intensity"] or 1) - math.log10(ew["arithmetic_intensity"] or 1)
    assert cx_gemm - cx_ew == pytest.approx(decade * log_span, abs=0.05)
    # y: the same on TFLOP/s; the GEMM's tooltip carries its figures
    ys = _decade_lines(svg, "y")
    assert ys["1"] - ys["10"] == pytest.approx(ys["100"] - ys["1,000"]) and ys["1"] > ys["10"]
    tip = next(_tip(c) for c in circles if _tip(c).startswith("nvjet"))
    assert "grid 2×66×1, block 384×1×1" in tip and "784.8 FLOP/byte" in tip and "618.0 TFLOP/s" in tip


def test_circle_area_is_proportional_to_the_share(ncu: NcuPass) -> None:
    stage = ncu["stages"][0]
    svg = ET.fromstring(str(roofline.stage_roofline(stage, ncu["roofs"])))
    shares = sorted(
        p["share_of_stage_kernel_time"] for p in stage["roofline"] if roofline.off_roofline_reason(p) is None
    )
    radii = sorted(float(c.get("r") or 0) for c in _plotted(svg))
    big = [(r, s) for r, s in zip(radii, shares, strict=True) if r > roofline.R_MIN]
    assert len(big) >= 2
    ratios = [r * r / s for r, s in big]
    assert max(ratios) == pytest.approx(min(ratios), rel=0.01)


def test_roofs_memory_slope_one_and_both_compute_roofs(ncu: NcuPass) -> None:
    svg = ET.fromstring(str(roofline.stage_roofline(ncu["stages"][0], ncu["roofs"])))
    xs, ys = _decade_lines(svg, "x"), _decade_lines(svg, "y")
    x_decade, y_decade = xs["10"] - xs["1"], ys["1"] - ys["10"]
    lines = {_tip(ln).split(":")[0]: ln for ln in svg.iter(f"{SVG}line") if _tip(ln)}
    mem = lines["memory roof"]
    dx = (float(mem.get("x2") or 0) - float(mem.get("x1") or 0)) / x_decade
    dy = (float(mem.get("y1") or 0) - float(mem.get("y2") or 0)) / y_decade
    assert dx > 0 and dy == pytest.approx(dx, rel=1e-3)  # bandwidth x intensity: slope 1 in log-log
    profiled, boost = lines["compute roof"], lines["compute roof at the boost clock"]
    assert "stroke-dasharray" not in profiled.attrib and boost.get("stroke-dasharray")
    y_of = {k: float(ln.get("y1") or 0) for k, ln in (("p", profiled), ("b", boost))}
    assert (y_of["p"] - y_of["b"]) / y_decade == pytest.approx(math.log10(BOOST_HZ / PROFILED_HZ), abs=1e-3)
    # the memory roof meets the profiled compute roof at the ridge point
    assert float(mem.get("x2") or 0) == pytest.approx(float(profiled.get("x1") or 0), abs=0.01)
    assert float(mem.get("y2") or 0) == pytest.approx(y_of["p"], abs=0.01)


def test_hostile_kernel_name_is_escaped_in_the_svg(ncu: NcuPass) -> None:
    stage = ncu["stages"][0]
    stage["roofline"][0]["short_name"] = HOSTILE
    stage["roofline"][0]["name"] = HOSTILE + " long"
    chart = str(roofline.stage_roofline(stage, ncu["roofs"]))
    ET.fromstring(chart)  # still well-formed
    assert "<script" not in chart and "\u202e" not in chart
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;\\u202etxt.exe" in chart


def test_no_chart_without_points_or_roofs(ncu: NcuPass) -> None:
    stage = ncu["stages"][0]
    no_roofs: Roofs = {**ROOFS, "peak_tflops_boost": None, "peak_tflops_at_profiled_clock": None}
    no_roofs["bandwidth_gbs"] = None
    assert roofline.stage_roofline({**stage, "roofline": []}, no_roofs) is None
    assert roofline.stage_roofline({**stage, "roofline": [COPY_POINT]}, no_roofs) is None
    only_roofs = roofline.stage_roofline({**stage, "roofline": [COPY_POINT]}, ROOFS)
    assert only_roofs is not None and not _plotted(ET.fromstring(str(only_roofs)))
    unroofed = str(roofline.stage_roofline(stage, no_roofs))
    assert len(_plotted(ET.fromstring(unroofed))) == 3 and "no roof drawn" in unroofed


def test_kernels_md_lists_each_kernel_per_stage(ncu: NcuPass) -> None:
    text = render_kernels_md(_analysis(ncu))
    assert text.count("\n## ") == 2 and "## prefill" in text and "## decode" in text
    for k in ncu["kernels"]:
        assert md_text(k["short_name"]) in text
    assert "grid 2×66×1, block 384×1×1" in text and "grid 65536×1×1, block 128×1×1" in text
    assert "measured / analytic 1.00×" in text and "measured / analytic 0.50×" in text
    assert "attention &lt;not profiled&gt;" in text
    assert (
        "--clock-control base: the kernels ran at an SM clock of 1,474 MHz, 74.4 % of the 1,980 MHz" in text
    )
    assert "unrolled\\_elementwise\\_kernel" in text  # the unprofiled point keeps its own figures
    # every table row has the header's columns (no name broke a row)
    for table in re.findall(r"((?:^\|.*\|\n)+)", text, flags=re.M):
        widths = {len(re.findall(r"(?<!\\)\|", row)) for row in table.splitlines()}
        assert len(widths) == 1


def test_kernels_md_escapes_names(ncu: NcuPass) -> None:
    ncu["stages"][0]["roofline"][0]["short_name"] = HOSTILE
    text = render_kernels_md(_analysis(ncu))
    assert "<script" not in text and "\u202e" not in text
    assert md_text(HOSTILE) in text and '&lt;script&gt;alert("x")&lt;/script&gt;' in text
    assert "\\\\u202etxt.exe\\|\\`k\\`\\*b\\*" in text  # the override shown as \u202e, Markdown inert


def test_kernels_md_tables_stay_tables_with_hostile_names(ncu: NcuPass) -> None:
    """Rendered by a CommonMark parser, kernels.md carries no markup and no row gains a cell."""
    markdown_it = pytest.importorskip("markdown_it")
    point = ncu["stages"][0]["roofline"][0]
    point["name"], point["short_name"] = HOSTILE_KERNEL, HOSTILE_SHORT
    ncu["stages"][1]["gap"] = [HOSTILE_SHORT]
    rendered = (
        markdown_it.MarkdownIt("commonmark").enable(["table"]).render(render_kernels_md(_analysis(ncu)))
    )
    doc = assert_inert(
        rendered, {"h1", "h2", "p", "ul", "li", "table", "thead", "tbody", "tr", "th", "td", "code"}
    )
    assert [tag for tag, _ in doc.tags].count("table") == 2
    for table in rendered.split("<table>")[1:]:
        rows = table.split("</table>")[0].split("<tr>")[1:]
        assert {row.count("<th") + row.count("<td") for row in rows} == {13}
    assert " ".join(HOSTILE_SHORT.split()) in "".join(doc.text)


def test_kernels_md_of_a_bare_report(ncu: NcuPass) -> None:
    ncu["stages"] = []
    text = render_kernels_md(_analysis(ncu))
    assert "## Profiled kernels" in text
    rows = [line for line in text.splitlines() if re.match(r"\| [0-9]+ \|", line)]
    assert [row.split(" | ")[0] for row in rows] == ["| 0", "| 1", "| 2"]
    assert "vectorized\\_elementwise\\_kernel" in rows[1] and "compute" in rows[0]


def test_html_section_only_with_ncu(ncu: NcuPass) -> None:
    heading = f"<h2>{NCU_SECTION[1]}</h2>"
    without = render_html(_analysis(None), None)
    assert heading not in without and 'id="ncu"' not in without and 'href="#ncu"' not in without
    ncu["stages"][0]["roofline"][0]["short_name"] = HOSTILE
    html = render_html(_analysis(ncu), None)
    section = re.search(r'<section id="ncu">(.*?)</section>', html, flags=re.S)
    assert section and heading in section.group(1) and 'href="#ncu"' in html
    body = section.group(1)
    assert body.count("<svg") == 2  # prefill and decode
    assert "<script" not in html and "\u202e" not in html and "&lt;script&gt;" in body
    assert_inert(html, REPORT_TAGS | {"circle"})  # the roofline adds circles, nothing else
    assert "74.4 % of the 1,980 MHz boost clock" in body and "measured / analytic 1.00×" in body
    # the sections keep their order: the ncu one right after the nsys kernels
    assert html.index('<section id="kernels">') < html.index('<section id="ncu">')
    assert html.index('<section id="ncu">') < html.index('<section id="operators">')


def test_html_of_a_bare_report(ncu: NcuPass) -> None:
    ncu["stages"] = []
    html = render_html(_analysis(ncu), None)
    body = re.search(r'<section id="ncu">(.*?)</section>', html, flags=re.S)
    assert body and "a bare report" in body.group(1)
    assert len(_plotted(ET.fromstring(re.search(r"<svg.*?</svg>", body.group(1), flags=re.S).group(0)))) == 3  # type: ignore[union-attr]


def test_findings_place_the_top_kernel_against_its_roof(ncu: NcuPass) -> None:
    found: dict[tuple[str | None, str], Any] = {
        (f["stage"], f["id"]): f for f in ncu_findings(_analysis(ncu))
    }
    gemm = found[("prefill", "ncu_top_kernel")]
    point = max(ncu["stages"][0]["roofline"], key=lambda p: p["share_of_stage_kernel_time"])
    # judged at the SM clock the kernel itself ran at under ncu, not the report's median clock
    own_roof = (ROOFS["peak_tflops_boost"] or 0) * (point["sm_clock_hz"] or 0) / BOOST_HZ
    expected = (point["achieved_tflops"] or 0) / own_roof
    assert gemm["evidence"]["roof"] == "compute" and gemm["evidence"]["fraction_of_roof"] == pytest.approx(
        expected
    )
    # 618 TFLOP/s: 98 % of the roof at the 1,262 MHz the GEMM ran at (84 % at the median clock)
    assert expected == pytest.approx(0.98, abs=0.01)
    assert gemm["severity"] == "info" and "of the compute roof" in gemm["title"] and "gemm" in gemm["title"]
    # decode's top kernel streams memory: judged by its DRAM bandwidth against the 4,800 GB/s
    ew = found[("decode", "ncu_top_kernel")]
    k = ncu["kernels"][1]
    achieved_gbs = k["flops"]["total"] / (k["duration_ns"] or 1) / (k["arithmetic_intensity"] or 1)
    assert ew["evidence"]["roof"] == "memory"
    assert ew["evidence"]["fraction_of_roof"] == pytest.approx(achieved_gbs / 4800)
    assert ew["evidence"]["fraction_of_roof"] == pytest.approx(
        (k["dram_throughput_pct"] or 0) / 100, abs=0.02
    )
    # measured / analytic 0.5 is beyond the threshold, 1.0003 is not; decode's coverage is under the goal
    assert ("decode", "ncu_flops_mismatch") in found and ("prefill", "ncu_flops_mismatch") not in found
    assert found[("decode", "ncu_flops_mismatch")]["evidence"]["threshold"] == FLOP_MISMATCH
    assert ("decode", "ncu_low_coverage") in found and ("prefill", "ncu_low_coverage") not in found
    assert ncu_findings(_analysis(None)) == []


def test_top_kernel_far_below_its_roof_is_high(ncu: NcuPass) -> None:
    point = ncu["stages"][1]["roofline"][0]
    point["achieved_tflops"] = (point["achieved_tflops"] or 0) * FAR_BELOW_ROOF / 2  # 4,800 GB/s -> ~600
    top = next(
        f for f in ncu_findings(_analysis(ncu)) if f["id"] == "ncu_top_kernel" and f["stage"] == "decode"
    )
    assert top["severity"] == "high" and top["evidence"]["fraction_of_roof"] < FAR_BELOW_ROOF
