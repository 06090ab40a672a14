"""The HTML report: sections present, untrusted names escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

from perfctl.analysis.analyze import analyze_export
from perfctl.report.html import page_bars, render_html

FIXTURES = Path(__file__).parent / "fixtures"


def test_report_of_real_gpu_capture(tiny_gpu_export: Path) -> None:
    analysis = analyze_export(tiny_gpu_export)
    manifest = json.loads((FIXTURES / "h200-tiny-ocr2.manifest.json").read_text())
    html = render_html(analysis, manifest)
    for section in ('id="run"', 'id="stages"', 'id="pages"', 'id="kernels"', 'id="ranges"'):
        assert section in html
    assert "NVIDIA H200" in html and "deepseek-ocr2-tiny" in html
    top = analysis["stages"][2]["top_kernels"][0]
    assert top["short_name"] in html
    assert "&lt;" in html  # C++ template kernel names are escaped, not raw markup


def test_page_bars_are_drawn_one_row_per_page(tiny_gpu_export: Path) -> None:
    html = render_html(analyze_export(tiny_gpu_export), None)
    rect_rows = sorted({int(y) for y in re.findall(r'<rect x="[^"]+" y="(\d+)"', html)})
    assert rect_rows == [4, 26]  # two pages, three stage segments each, on their own rows


def test_hostile_range_names_are_escaped(tiny_gpu_export: Path) -> None:
    analysis = analyze_export(tiny_gpu_export)
    analysis["ranges"][0]["name"] = '<script>alert("x")</script>'
    analysis["warnings"].append("<img src=x onerror=alert(1)>")
    html = render_html(analysis, None)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_page_bars_scale_to_the_longest_page() -> None:
    pages = [
        {
            "sequence": 0,
            "wall_ns": 100,
            "stages": {s: {"wall_ns": w} for s, w in (("vision", 10), ("prefill", 20), ("decode", 60))},
        },
        {
            "sequence": 1,
            "wall_ns": 50,
            "stages": {s: {"wall_ns": 10} for s in ("vision", "prefill", "decode")},
        },
    ]
    bars = page_bars(pages)
    assert bars[0]["total_width"] == 820 and bars[1]["total_width"] == 410
    assert [seg["x"] for seg in bars[0]["segments"]] == [0, 82, 246]
    assert page_bars([]) == []
