"""The report's rendering points of issue 18 on real runs: kernels of one short name told apart, chart
labels that fit their column, intervals and the spread chart only from MIN_PAGES_FOR_CI pages and never
below 0 ms, findings one line each up front with the rest grouped."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from perfctl.analysis.repeatability import MIN_PAGES_FOR_CI
from perfctl.commands.analyze import analyze_path
from perfctl.report.charts import FONT_SIZE, LABEL_GAP, LABEL_MARGIN, MAX_LABEL_W
from perfctl.report.formatting import fit, fit_label, kernel_labels, text_width
from perfctl.report.html import FINDINGS_UP_FRONT, render_html
from report_inputs import FIXTURES, clean_pass_only, tiny_all_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """perfctl analyze of the tiny model's H100 run (2 clean pages): its analysis and report."""
    run = tiny_all_run(tmp_path_factory.mktemp("render") / "run")
    result = analyze_path(run)
    return json.loads((run / "analysis.json").read_text()), Path(result.html_path).read_text()


def _section(page: str, sid: str) -> str:
    found = re.search(rf'<section id="{sid}">(.*?)</section>', page, flags=re.S)
    assert found, sid
    return found.group(1)


def test_kernels_sharing_a_short_name_are_told_apart(tiny_run: tuple[dict[str, Any], str]) -> None:
    analysis, page = tiny_run
    vision = next(s for s in analysis["stages"] if s["stage"] == "vision")
    kernels = [(k["short_name"], k["name"]) for k in vision["top_kernels"]]
    # the real run: three different at::native elementwise kernels among vision's top ten
    assert [short for short, _ in kernels].count("elementwise_kernel") == 3
    labels = kernel_labels(kernels)
    assert len(set(labels)) == len(labels)
    assert sorted(label for label in labels if label.startswith("elementwise_kernel ")) == [
        "elementwise_kernel · BinaryFunctor MulFunctor",
        "elementwise_kernel · CUDAFunctor_add",
        "elementwise_kernel · direct_copy_kernel_cuda",
    ]
    for label, (short, name) in zip(labels, kernels, strict=True):
        if label != short:
            assert all(word in name for word in label.removeprefix(f"{short} · ").split())
    kernels_html = unescape(_section(page, "kernels"))
    column = MAX_LABEL_W - LABEL_GAP - LABEL_MARGIN
    for label in labels:  # in the table (with the whole name as tooltip) and in the chart, fitted
        assert (
            f">{label}<br>" in kernels_html
            and f">{fit_label(label, column, FONT_SIZE)}</text>" in kernels_html
        )


def test_one_kernel_keeps_one_label_and_number_only_names_are_numbered() -> None:
    """ncu lists one kernel once per launch configuration: one label (the launch column tells them
    apart); names differing only in numbers get #1, #2."""
    add = "void at::native::elementwise_kernel<(int)128, (int)4, CUDAFunctor_add<c10::BFloat16>>(int, T3)"
    sort = "void at::native::radixSortKVInPlace<(int)-2, (int)-1, (int)%d, (int)32, long>(T7)"
    rows = [("elementwise_kernel", add), ("radixSortKVInPlace", sort % 32), ("elementwise_kernel", add)]
    rows.append(("radixSortKVInPlace", sort % 64))
    assert kernel_labels(rows) == [
        "elementwise_kernel",
        "radixSortKVInPlace #1",
        "elementwise_kernel",
        "radixSortKVInPlace #2",
    ]


def test_chart_labels_fit_their_column(tiny_run: tuple[dict[str, Any], str]) -> None:
    _, page = tiny_run
    column = MAX_LABEL_W - LABEL_GAP - LABEL_MARGIN
    longest = (
        "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x64_4x1x1_cga1x1x1_"
        "kernel0_0"
    )
    assert f">{longest}<br>" in page  # the table has it whole
    shown = fit(longest, column, FONT_SIZE)
    head, cut, tail = shown.partition("…")
    assert (
        cut and longest.startswith(head) and longest.endswith(tail) and text_width(shown, FONT_SIZE) <= column
    )
    assert tail.endswith("_kernel0_0") and f">{shown}</text>" in page
    for label in re.findall(r"<g><title>[^<]*</title><text [^>]*>([^<]*)</text></g>", page):
        assert text_width(unescape(label), FONT_SIZE) <= column
    # a label with a tag keeps the tag whole and cuts the shared short name before it
    tagged = "vectorized_elementwise_kernel · bfloat16_copy_kernel_cuda"
    assert f">{tagged}<br>" in page
    short = fit_label(tagged, column, FONT_SIZE)
    assert short.startswith("vectorized_elementw") and short.endswith("… · bfloat16_copy_kernel_cuda")
    assert text_width(short, FONT_SIZE) <= column and f">{short}</text>" in page


def test_two_clean_pages_get_their_values_not_an_interval(tiny_run: tuple[dict[str, Any], str]) -> None:
    analysis, page = tiny_run
    stats = analysis["timing"]["statistics"]
    assert stats["page"]["count"] == 2 < MIN_PAGES_FOR_CI
    assert stats["stages"]["vision"]["ci95_low"] < stats["stages"]["vision"]["min"]  # what was printed
    section = _section(page, "repeatability")
    assert (
        "<svg" not in section and "95 % CI" not in section and "confidence interval, which need 5" in section
    )
    assert "spans ±8.98 standard deviations" in section  # t(1) / sqrt(2) = 12.706 / 1.414
    for stage, st in stats["stages"].items():
        assert st["pages"] == [0, 1] and len(st["values"]) == 2
        for value in st["values"]:
            assert f"<td>{value / 1e6:,.3f} ms</td>" in section, stage


def test_an_unstable_stage_of_two_pages_is_told_by_its_values(tmp_path: Path) -> None:
    """The tiny run with its second page's vision made 3 times longer: vision is not stable, and the
    finding quotes the two pages' times, not an interval reaching below 0 ms."""
    run = tiny_all_run(tmp_path / "run")
    pages = run / "timing" / "pages.jsonl"
    records = [json.loads(line) for line in pages.read_text().splitlines() if line.strip()]
    records[1]["stage_wall_ns"]["vision"] *= 3
    pages.write_text("".join(json.dumps(r) + "\n" for r in records))
    analysis = json.loads((Path(analyze_path(run).html_path).parent / "analysis.json").read_text())
    (finding,) = [f for f in analysis["findings"] if f["id"] == "unstable" and f["stage"] == "vision"]
    values = [r["stage_wall_ns"]["vision"] for r in records]
    assert analysis["timing"]["statistics"]["stages"]["vision"]["ci95_low"] < 0  # what it used to print
    assert "95 % CI" not in finding["text"] and "ci95_low_ns" not in finding["evidence"]
    assert f"pages {values[0] / 1e6:,.3f} ms, {values[1] / 1e6:,.3f} ms;" in finding["text"]
    assert finding["evidence"]["values_ns"] == values


def test_an_interval_below_zero_is_clipped(tmp_path: Path) -> None:
    """The 10-page H100 clean pass with one page's vision made 50 times longer: the interval of the
    mean reaches below 0 ms; the report and the chart show it from 0 ms and say so."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "h100-full-ocr2-clean10", run)
    pages = run / "timing" / "pages.jsonl"
    records = [json.loads(line) for line in pages.read_text().splitlines() if line.strip()]
    records[3]["stage_wall_ns"]["vision"] *= 50
    pages.write_text("".join(json.dumps(r) + "\n" for r in records))
    analysis, manifest = clean_pass_only(run)
    vision = analysis["timing"]["statistics"]["stages"]["vision"]
    assert vision["count"] == 10 and vision["ci95_low"] < 0
    section = _section(render_html(analysis, manifest), "repeatability")
    low, high = vision["ci95_low"] / 1e6, vision["ci95_high"] / 1e6
    assert f"<td>0 ms (clipped from {low:,.3f} ms) – {high:,.3f} ms</td>" in section
    assert f"(clipped at 0 ms from {vision['ci95_low'] / 1e6:,.3f} ms)" in section  # the chart's tooltip
    assert "<svg" in section
    (finding,) = [f for f in analysis["findings"] if f["id"] == "unstable" and f["stage"] == "vision"]
    assert f"95 % CI 0 ms (clipped from {low:,.3f} ms) – {high:,.3f} ms;" in finding["text"]


def test_findings_up_front_and_the_rest_grouped(tiny_run: tuple[dict[str, Any], str]) -> None:
    analysis, page = tiny_run
    section = _section(page, "findings")
    shown, more = section.split('<details class="more">')
    titles = [unescape(t) for t in re.findall(r'<span class="title">(.*?)</span>', shown)]
    assert titles == [f["title"] for f in analysis["findings"][:FINDINGS_UP_FRONT]]
    rest = analysis["findings"][FINDINGS_UP_FRONT:]
    assert f"<summary>{len(rest)} more findings: 3 high, 4 info</summary>" in more
    assert [unescape(t) for t in re.findall(r'<span class="title">(.*?)</span>', more)] == [
        f["title"] for f in rest
    ]
    assert re.findall(r"<h3>(.*?)</h3>", more) == ["high: 3", "info: 4"]
    # every finding still carries its text, next step and evidence, one click away
    for f in analysis["findings"]:
        assert f"<p>{f['text']}</p>" in unescape(section)
