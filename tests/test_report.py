"""The HTML report: every section present (one with absent data says why), charts drawn from the data,
untrusted names escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from perfctl.analysis.analyze import analyze_export
from perfctl.analysis.findings import findings
from perfctl.commands.analyze import analyze_path
from perfctl.commands.analyze_options import AnalyzeOptions
from perfctl.report.charts import BAR_W, page_bars, page_timeline
from perfctl.report.html import SECTIONS, render_html
from report_inputs import FIXTURES, clean_pass_only, tiny_all_run


def _sections(html: str) -> dict[str, str]:
    """Each section's HTML by its id."""
    found = dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', html, flags=re.S))
    assert list(found) == [sid for sid, _ in SECTIONS]
    return found


def _absent(section: str) -> list[str]:
    return re.findall(r'<p class="absent">(.*?)</p>', section, flags=re.S)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """perfctl analyze of the tiny model's H100 run folder: nsys, clean timing and torch passes."""
    run = tiny_all_run(tmp_path_factory.mktemp("report") / "run")
    analyze_path(run)
    return run


def test_full_run_has_every_section_with_data(full_run: Path) -> None:
    html = (full_run / "report.html").read_text()
    analysis = json.loads((full_run / "analysis.json").read_text())
    sections = _sections(html)
    for sid, heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in sections[sid]
    # data everywhere except the telemetry, whose samples this fixture did not keep, and the spread
    # chart and confidence intervals, which its 2 clean pages are too few for
    assert {sid for sid, body in sections.items() if _absent(body)} == {
        "telemetry",
        "memory",
        "repeatability",
    }
    assert _absent(sections["repeatability"])[0].startswith(
        "2 clean pages (× repeats, warm-up excluded): no spread chart and no confidence interval, which "
        "need 5 pages or more."
    )
    assert _absent(sections["telemetry"]) == [
        "No NVML telemetry: timing/telemetry.jsonl is not in this run folder, though the driver sampled "
        "NVML every 50 ms (the file was not kept)."
    ]
    assert "how much was used is unknown" in _absent(sections["memory"])[0]
    # findings with their evidence, the run's commands, MFU against the peak with its inputs
    for f in analysis["findings"]:
        assert f'<details class="finding {f["severity"]}"><summary>' in sections["findings"]
    assert "perfctl capture --model deepseek-ocr2-tiny --device cuda" in sections["run"]
    assert "nsys profile --trace=cuda,nvtx,osrt" in sections["run"]
    assert "989.5 TFLOP/s" in sections["efficiency"] and "Decode MBU <strong>" in sections["efficiency"]
    assert "1.46×" in sections["overhead"]  # vision under nsys / clean, as analysis.json has it
    assert analysis["efficiency"]["stages"]["vision"]["nsys_over_clean"] == pytest.approx(1.46, abs=0.005)
    # every chart is inline SVG; nothing is fetched
    assert html.count("<svg") == 7  # timeline, MFU, categories, 3 stages' top kernels, overhead
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<script" not in html
    assert "<link" not in html and "@import" not in html


def test_timeline_splits_each_stage_into_gpu_busy_and_idle(full_run: Path) -> None:
    analysis = json.loads((full_run / "analysis.json").read_text())
    timeline = _sections((full_run / "report.html").read_text())["stages"]
    for page in analysis["pages"]:
        assert f">page {page['sequence']}</text>" in timeline
        for stage, cell in page["stages"].items():
            share = cell["gpu_busy_ns"] / cell["wall_ns"]
            tip = f"page {page['sequence']} {stage}: wall {cell['wall_ns'] / 1e6:,.3f} ms, GPU busy "
            assert f"{tip}{cell['gpu_busy_ns'] / 1e6:,.3f} ms ({share:.1%})" in timeline


def test_page_bars_scale_to_the_longest_page() -> None:
    def cell(wall: int, busy: int) -> dict[str, int]:
        return {"wall_ns": wall, "gpu_busy_ns": busy}

    pages = [
        {
            "sequence": 0,
            "wall_ns": 100,
            "stages": {"vision": cell(10, 5), "prefill": cell(20, 20), "decode": cell(60, 6)},
        },
        {"sequence": 1, "wall_ns": 50, "stages": {s: cell(10, 0) for s in ("vision", "prefill", "decode")}},
    ]
    bars = page_bars(pages)
    assert bars[0]["total_width"] == BAR_W and bars[1]["total_width"] == BAR_W / 2
    assert [seg.x for seg in bars[0]["segments"]] == [0, BAR_W * 0.1, BAR_W * 0.3]
    assert [seg.busy_width for seg in bars[0]["segments"]] == [BAR_W * 0.05, BAR_W * 0.2, BAR_W * 0.06]
    assert page_bars([]) == []


def test_a_page_without_a_sequence_number_is_named_by_its_place() -> None:
    cells = {s: {"wall_ns": 10, "gpu_busy_ns": 5} for s in ("vision", "prefill", "decode")}
    pages = [
        {"sequence": 4, "wall_ns": 40, "stages": cells},
        {"sequence": None, "wall_ns": 40, "stages": cells},
    ]
    assert [bar["label"] for bar in page_bars(pages)] == ["page 4", "unnumbered #2"]
    svg = str(page_timeline(pages))
    assert "page None" not in svg and "unnumbered #2" in svg


def test_report_of_an_export_without_manifest(tiny_gpu_export: Path) -> None:
    """A bare export (the H200 tiny-model capture): nsys sections filled, the run folder's own passes
    absent, each saying why."""
    analysis = analyze_export(tiny_gpu_export)
    analysis["findings"] = findings(analysis)
    sections = _sections(render_html(analysis, None))
    for sid in ("efficiency", "repeatability", "operators", "telemetry", "overhead", "run"):
        assert _absent(sections[sid]), sid
    for sid in ("stages", "kernels", "ranges"):
        assert not _absent(sections[sid]), sid
    assert "--tool all" in _absent(sections["repeatability"])[0]
    assert "NVIDIA H200" in sections["run"]


def test_report_of_the_full_size_clean_pass_without_export() -> None:
    """The full-size H100 run (10 pages) keeps no export: MFU, spread, telemetry and findings shown,
    the nsys sections say there is no export."""
    analysis, manifest = clean_pass_only(FIXTURES / "h100-full-ocr2-clean10")
    sections = _sections(render_html(analysis, manifest))
    for sid in ("stages", "kernels", "overhead", "ranges"):
        assert any("nsys export" in text for text in _absent(sections[sid])), sid
    for sid in ("findings", "efficiency", "repeatability", "telemetry", "run"):
        assert not _absent(sections[sid]), sid
    tel = analysis["timing"]["telemetry"]
    assert len(tel["pages"]) == 10 and "1,980–1,980 MHz" in sections["telemetry"]
    assert "not stable" in sections["repeatability"]
    assert sections["repeatability"].count("<svg") == 1 and sections["telemetry"].count("<svg") == 1


def test_cpu_capture_report_says_what_is_absent(tmp_path: Path, hostile_capture: Path) -> None:
    result = analyze_path(hostile_capture, AnalyzeOptions(allow_no_kernels=True, out_dir=tmp_path))
    sections = _sections(result.html_path.read_text())
    assert "No CUDA kernels in this export" in _absent(sections["kernels"])[0]
    assert "No manifest.json" in _absent(sections["run"])[0]
    assert _absent(sections["efficiency"]) and _absent(sections["telemetry"])
    # the timeline is still drawn from the NVTX wall times, every GPU-busy part empty
    assert "GPU busy 0.000 ms (0.0%)" in sections["stages"]


def test_hostile_names_set_in_the_analysis_are_escaped(tiny_gpu_export: Path) -> None:
    analysis: dict[str, Any] = analyze_export(tiny_gpu_export)
    analysis["ranges"][0]["name"] = '<script>alert("x")</script>'
    analysis["warnings"].append("<img src=x onerror=alert(1)>")
    analysis["stages"][2]["top_kernels"][0]["short_name"] = "<svg onload=alert(1)>"
    html = render_html(analysis, None)
    assert "<script>alert" not in html and "<img src=x" not in html and "<svg onload" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;svg onload=alert(1)&gt;" in html  # in the top-kernel chart's SVG text as well


def test_compiled_templates_are_kept_where_they_can_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from perfctl.report.html import template_cache, template_environment

    monkeypatch.setenv("PERFCTL_CACHE_DIR", str(tmp_path / "cache"))
    template_environment().get_template("report.html.j2")
    kept = list((tmp_path / "cache" / "templates").iterdir())
    assert len(kept) == 1 and kept[0].stat().st_size > 0
    template_environment().get_template("report.html.j2")  # read back, not compiled again
    assert list((tmp_path / "cache" / "templates").iterdir()) == kept
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("PERFCTL_CACHE_DIR", str(blocked))
    assert template_cache() is None  # (then templates are compiled each time, nothing fails)
