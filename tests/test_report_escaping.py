"""Untrusted names (NVTX ranges and domains, kernels, models, page files, run ids) stay text in every
output: HTML and its SVG charts, summary.md, analysis.json and `--format json`; and characters that
would make a name display other than it reads (bidirectional overrides, NUL and other control
characters) are shown escaped (\\u202e) in HTML, SVG, Markdown and the terminal, JSON-escaped in JSON.

Two real sources of hostile names: a real nsys capture of scripts/fixture_programs/hostile_names.py
(range and domain names), and the tiny model's H100 run folder with a kernel's name and short name
changed in its export and the run id, model and page names changed in its manifest
(tests/report_inputs.py); and that folder again with a kernel named with NUL and overrides."""

from __future__ import annotations

import hashlib
import html
import json
import re
import sqlite3
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from conftest import run_perfctl
from perfctl.commands.analyze import analyze_path
from perfctl.commands.analyze_options import AnalyzeOptions
from perfctl.report.formatting import INVISIBLE, visible
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
    tiny_all_run,
)

HOSTILE = hostile_names_module()
MARKDOWN_TAGS = {"h1", "h2", "p", "table", "thead", "tbody", "tr", "th", "td", "ol", "li", "strong", "code"}


def render_markdown_html(text: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    return str(markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text))


@pytest.fixture(scope="module")
def hostile_ranges(tmp_path_factory: pytest.TempPathFactory, hostile_capture: Path) -> Any:
    return analyze_path(
        hostile_capture, AnalyzeOptions(allow_no_kernels=True, out_dir=tmp_path_factory.mktemp("ranges"))
    )


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
    # the kernels table: the short name (told apart from the other kernels of that short name), the
    # top-kernel chart: the same label on one line, cut in its middle to fit its column; both with
    # the whole kernel name as their tooltip
    cell = re.search(
        rf'<td class="name" title="{re.escape(str(escape(HOSTILE_KERNEL)))}">(.*?)<br>', html, re.S
    )
    assert cell and unescape(cell.group(1)).startswith(HOSTILE_SHORT)
    flat = " ".join(unescape(cell.group(1)).split())
    label = re.search(
        rf"<g><title>{re.escape(str(escape(HOSTILE_KERNEL)))}</title><text [^>]*>(.*?)</text>", html
    )
    assert label, "the chart's label of the hostile kernel, with its whole name as the tooltip"
    head, cut, tail = unescape(label.group(1)).partition("…")
    assert cut and flat.startswith(head) and flat.endswith(tail) and len(head) > len(tail) > 5
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
    "name",
    [
        *HOSTILE.HOSTILE_NAMES,
        *HOSTILE.INVISIBLE_NAMES,
        HOSTILE_KERNEL,
        HOSTILE_SHORT,
        HOSTILE_MODEL,
        HOSTILE_PAGE,
    ],
)
def test_md_text_is_one_inert_table_cell(name: str) -> None:
    cell = md_text(name)
    assert "\n" not in cell and "\r" not in cell and "<" not in cell and ">" not in cell
    assert not INVISIBLE.search(cell)
    rendered = render_markdown_html(f"| a | b |\n|---|---|\n| {cell} | x |\n")
    assert_inert(rendered, {"table", "thead", "tbody", "tr", "th", "td"})
    cells = re.findall(r"<td>(.*?)</td>", rendered, flags=re.S)
    flat = " ".join(visible(name).split())  # (issue 14: overrides and control characters shown escaped)
    expected = flat if len(flat) <= NAME_LIMIT else flat[: NAME_LIMIT - 1] + "…"
    assert [html.unescape(c) for c in cells] == [expected, "x"]  # one cell, reading as the name


# A kernel name no NVTX string can carry: NUL, and an override that would show "elementwise" backwards.
INVISIBLE_KERNEL = (
    "void at::native::elementwise_kernel<nul\x00here, \u202eright to left\u202c, esc\x1b[2J>(int)"
)
INVISIBLE_SHORT = "elementwise\u202e_kernel\x00"


def _no_raw_invisible(text: str) -> None:
    found = sorted({f"U+{ord(c):04X}" for c in INVISIBLE.findall(text)})
    assert not found, found


def test_bidi_overrides_and_control_characters_in_range_names_are_shown_escaped(
    hostile_ranges: Any, tmp_path: Path
) -> None:
    """The real capture's range names with overrides, isolates, marks, ESC, BEL, DEL and C1: the HTML
    (text, attributes and SVG), summary.md and the terminal show each as its escape, never raw;
    analysis.json keeps them exactly, JSON-escaped."""
    page = hostile_ranges.html_path.read_text()
    _no_raw_invisible(page)
    text = "".join(assert_inert(page, REPORT_TAGS).text)
    for name in HOSTILE.INVISIBLE_NAMES:
        assert INVISIBLE.search(name)
        assert str(escape(visible(name))) in page  # e.g. access_granted\u202e } ...
        assert visible(name) in text
    _no_raw_invisible(hostile_ranges.summary_path.read_text())
    raw_json = hostile_ranges.json_path.read_text()
    _no_raw_invisible(raw_json)
    names = {r["name"] for r in json.loads(raw_json)["ranges"]}
    assert set(HOSTILE.INVISIBLE_NAMES) <= names  # the very same names, in JSON's escapes
    as_text = run_perfctl(
        "analyze", str(hostile_ranges.export), "--allow-no-kernels", "--out-dir", str(tmp_path)
    )
    assert as_text.returncode == 0, as_text.stderr
    _no_raw_invisible(as_text.stdout + as_text.stderr)


def test_nul_and_overrides_in_a_kernel_name_are_shown_escaped(tmp_path: Path) -> None:
    """A kernel (its name and short name changed in a copy of a real export) named with NUL, an
    override and ESC: through the CLI, the HTML table, its tooltip and the SVG chart show the
    escapes; the JSON keeps the name exactly; the export is unchanged."""
    run = tiny_all_run(tmp_path / "run")
    export = run / "run.sqlite"
    with sqlite3.connect(export) as conn:
        name_id, short_id = conn.execute(
            "SELECT k.demangledName, k.shortName FROM CUPTI_ACTIVITY_KIND_KERNEL k "
            "JOIN StringIds s ON s.id = k.demangledName WHERE s.value LIKE '%elementwise_kernel<%' "
            "GROUP BY k.demangledName ORDER BY SUM(k.end - k.start) DESC LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE StringIds SET value = ? WHERE id = ?", (INVISIBLE_KERNEL, name_id))
        conn.execute("UPDATE StringIds SET value = ? WHERE id = ?", (INVISIBLE_SHORT, short_id))
    before = hashlib.sha256(export.read_bytes()).hexdigest()
    out = tmp_path / "out"
    proc = run_perfctl("analyze", str(run), "--format", "json", "--out-dir", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert hashlib.sha256(export.read_bytes()).hexdigest() == before
    decode = next(s for s in json.loads(proc.stdout)["stages"] if s["stage"] == "decode")
    (top,) = [k for k in decode["top_kernels"] if k["name"] == INVISIBLE_KERNEL]  # exact, NUL kept
    assert top["short_name"] == INVISIBLE_SHORT and top["category"] == "elementwise"
    page = (out / "report.html").read_text()
    _no_raw_invisible(page)
    doc = assert_inert(page, REPORT_TAGS)
    assert visible(INVISIBLE_KERNEL) in [attrs.get("title") for _, attrs in doc.tags]  # the tooltip
    assert "nul\\u0000here, \\u202eright to left\\u202c, esc\\u001b[2J" in page
    # the SVG chart: the whole name, escapes shown, as the tooltip; the short one as its label
    assert f"<title>{escape(visible(INVISIBLE_KERNEL))}</title>" in page
    assert re.search(rf">{re.escape(str(escape(visible(INVISIBLE_SHORT))))}( · [^<]*)?</text>", page)
    _no_raw_invisible((out / "summary.md").read_text())
    _no_raw_invisible((out / "analysis.json").read_text())
