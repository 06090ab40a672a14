"""Untrusted names (NVTX ranges and domains, kernels, models, page files, run ids) stay text in every
output: HTML and its SVG charts, summary.md, analysis.json and `--format json`.

Two real sources of hostile names: a real nsys capture of scripts/fixture_programs/hostile_names.py
(range and domain names), and the tiny model's H100 run folder with a kernel's name and short name
changed in its export and the run id, model and page names changed in its manifest
(tests/report_inputs.py)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from conftest import run_perfctl
from perfctl.analyze_run import analyze_path
from perfctl.report.markdown import NAME_LIMIT, md_text, render_markdown
from report_inputs import (
    HOSTILE_KERNEL,
    HOSTILE_MODEL,
    HOSTILE_PAGE,
    HOSTILE_RUN_ID,
    HOSTILE_SHORT,
    REPORT_TAGS,
    assert_inert,
    hostile_kernel_run,
    hostile_names_module,
)

HOSTILE = hostile_names_module()
MARKDOWN_TAGS = {"h1", "h2", "p", "table", "thead", "tbody", "tr", "th", "td", "ol", "li", "strong", "code"}


def render_markdown_html(text: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    return str(markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text))


@pytest.fixture(scope="module")
def hostile_ranges(tmp_path_factory: pytest.TempPathFactory, hostile_capture: Path) -> Any:
    return analyze_path(hostile_capture, allow_no_kernels=True, out_dir=tmp_path_factory.mktemp("ranges"))


@pytest.fixture(scope="module")
def hostile_kernels(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return analyze_path(hostile_kernel_run(tmp_path_factory.mktemp("kernels") / "run"))


def test_range_names_survive_json_exactly(hostile_ranges: Any) -> None:
    on_disk = json.loads(hostile_ranges.json_path.read_text())
    names = {(r["domain"], r["name"]) for r in on_disk["ranges"]}
    assert {("perfctl", name) for name in HOSTILE.HOSTILE_NAMES} <= names
    assert (HOSTILE.HOSTILE_DOMAIN, HOSTILE.HOSTILE_NAMES[0]) in names
    proc = run_perfctl("analyze", str(hostile_ranges.export), "--allow-no-kernels", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert {(r["domain"], r["name"]) for r in json.loads(proc.stdout)["ranges"]} == names


def test_range_names_are_text_in_the_html(hostile_ranges: Any) -> None:
    html = hostile_ranges.html_path.read_bytes().decode()  # as written: CR LF kept
    doc = assert_inert(html, REPORT_TAGS)
    for name in (*HOSTILE.HOSTILE_NAMES, HOSTILE.HOSTILE_DOMAIN):
        assert str(escape(name)) in html  # escaped once, whole (newlines kept, shown by pre-wrap)
        assert name in "".join(doc.text)  # and reads back as the very same text
    assert "<script" not in html and "<img" not in html and "<b " not in html


def test_kernel_model_page_and_run_names_are_text_in_html_and_svg(hostile_kernels: Any) -> None:
    analysis = hostile_kernels.analysis
    decode = next(s for s in analysis["stages"] if s["stage"] == "decode")
    hostile_top = [k for k in decode["top_kernels"] if k["name"] == HOSTILE_KERNEL]
    assert hostile_top and hostile_top[0]["short_name"] == HOSTILE_SHORT
    assert hostile_top[0]["category"] == "elementwise"  # its name still says so
    html = hostile_kernels.html_path.read_text()
    doc = assert_inert(html, REPORT_TAGS)
    text = "".join(doc.text)
    for name in (HOSTILE_KERNEL[:200], HOSTILE_SHORT, HOSTILE_MODEL, HOSTILE_PAGE, HOSTILE_RUN_ID):
        assert name in text, name[:40]
    titles = [attrs.get("title") for _, attrs in doc.tags]
    assert HOSTILE_KERNEL in titles  # the whole kernel name: the table cell's tooltip
    # the top-kernel chart: the short name as SVG text (flattened, cut), the full one in its tooltip
    flat = " ".join(HOSTILE_SHORT.split())
    assert f">{escape(flat[:31])}…</text>" in html
    assert f"<title>{escape(HOSTILE_SHORT)}</title>" in html
    title = next(t for t in doc.text if t.startswith("perfctl report"))
    assert title == f"perfctl report · {HOSTILE_RUN_ID}"


def test_summary_md_keeps_its_tables_and_carries_no_markup(hostile_kernels: Any) -> None:
    summary = hostile_kernels.summary_path.read_text()
    assert summary == render_markdown(hostile_kernels.analysis)
    assert "<script" not in summary and "<img" not in summary
    rendered = render_markdown_html(summary)
    doc = assert_inert(rendered, MARKDOWN_TAGS)
    assert [tag for tag, _ in doc.tags].count("table") == 3  # cost centres, MFU, stability
    for table in rendered.split("<table>")[1:]:
        rows = table.split("</table>")[0].split("<tr>")[1:]
        cells = {row.count("<th") + row.count("<td") for row in rows}
        assert len(cells) == 1  # no row gained or lost a cell
    text = "".join(doc.text)
    assert " ".join(HOSTILE_MODEL.split())[: NAME_LIMIT - 1] in text  # the model, as plain text
    assert " ".join(HOSTILE_SHORT.split()) in text  # the largest GPU work names the hostile kernel
    assert "PWNED" not in "".join(v or "" for _, attrs in doc.tags for v in attrs.values())


@pytest.mark.parametrize(
    "name", [*HOSTILE.HOSTILE_NAMES, HOSTILE_KERNEL, HOSTILE_SHORT, HOSTILE_MODEL, HOSTILE_PAGE]
)
def test_md_text_is_one_inert_table_cell(name: str) -> None:
    cell = md_text(name)
    assert "\n" not in cell and "\r" not in cell and "<" not in cell and ">" not in cell
    rendered = render_markdown_html(f"| a | b |\n|---|---|\n| {cell} | x |\n")
    assert_inert(rendered, {"table", "thead", "tbody", "tr", "th", "td"})
    cells = re.findall(r"<td>(.*?)</td>", rendered, flags=re.S)
    flat = " ".join(name.split())
    expected = flat if len(flat) <= NAME_LIMIT else flat[: NAME_LIMIT - 1] + "…"
    assert [html.unescape(c) for c in cells] == [expected, "x"]  # one cell, reading as the name
