"""The report in a real headless browser (Debian's chromium): it loads offline, shows every section
heading, shows hostile names as text without running them, and renders to a screenshot that is not
blank.

chromium missing: skipped, unless PERFCTL_REQUIRE_BROWSER=1 (CI), which makes it a failure.
PERFCTL_SCREENSHOTS=DIR keeps the screenshots there for a person to look at.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from perfctl.commands.analyze import analyze_path
from perfctl.report.html import SECTIONS, render_html
from report_inputs import (
    FIXTURES,
    HOSTILE_KERNEL,
    HOSTILE_MODEL,
    HOSTILE_RUN_ID,
    HOSTILE_SHORT,
    PWNED,
    REPORT_TAGS,
    assert_inert,
    clean_pass_only,
    hostile_kernel_run,
    hostile_names_module,
)

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1280, 2400)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = os.environ.get("PERFCTL_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not path:
        how = "Debian/Ubuntu: apt-get install chromium"
        if os.environ.get("PERFCTL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"chromium is required (PERFCTL_REQUIRE_BROWSER=1) but not installed: {how}")
        pytest.skip(f"chromium not installed ({how}); the report's browser check did not run")
    return path


def browse(chromium: str, page: Path, *args: str) -> str:
    """Load a local file in headless chromium, network off; its stdout (e.g. the DOM after load)."""
    profile = page.parent / f".chromium-{page.stem}"
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
        "--disable-extensions", f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9",  # no network
        "--virtual-time-budget=3000",  # let any script (there must be none) run before the DOM is read
        *args, page.resolve().as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real report with data in every section and hostile kernel, model, page and run names."""
    return analyze_path(hostile_kernel_run(tmp_path_factory.mktemp("browser") / "run"))


def _dom_checks(dom: str, expected_title: str) -> str:
    """The DOM after load: only perfctl's elements, every section heading, the title as written."""
    doc = assert_inert(dom, REPORT_TAGS | {"tbody"})  # the parser adds tbody to tables
    assert re.findall(r"<h2>(.*?)</h2>", dom) == [heading for _, heading in SECTIONS]
    title = html.unescape(dom.split("<title>", 1)[1].split("</title>", 1)[0])
    # an injected script would have set the title to PWNED and marked the body
    assert title == expected_title and PWNED not in title
    assert [attrs for tag, attrs in doc.tags if tag == "body"] == [{}]
    return "".join(doc.text)


def test_browser_shows_every_section_and_hostile_names_as_text(chromium: str, hostile_report: Any) -> None:
    dom = browse(chromium, hostile_report.html_path, "--dump-dom")
    text = _dom_checks(dom, f"perfctl report · {HOSTILE_RUN_ID}")
    for name in (HOSTILE_KERNEL[:200], HOSTILE_SHORT, HOSTILE_MODEL):  # long names are cut in tables
        assert name in text, name[:40]
    assert "<script" not in dom and "<img" not in dom


def test_browser_shows_range_names_as_text(chromium: str, hostile_capture: Path, tmp_path: Path) -> None:
    result = analyze_path(hostile_capture, allow_no_kernels=True, out_dir=tmp_path)
    text = _dom_checks(browse(chromium, result.html_path, "--dump-dom"), "perfctl report")
    for name in hostile_names_module().HOSTILE_NAMES:
        assert name.replace("\r\n", "\n") in text, name[:40]  # HTML parsing normalizes CR LF


def _screenshot(chromium: str, page: Path, name: str) -> Image.Image:
    png = page.parent / f"{name}.png"
    browse(chromium, page, f"--screenshot={png}", f"--window-size={WINDOW[0]},{WINDOW[1]}")
    assert png.is_file() and png.stat().st_size > 10_000
    keep = os.environ.get("PERFCTL_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / png.name)
    image = Image.open(png).convert("RGB")
    assert image.size == WINDOW
    return image


def _not_blank(image: Image.Image) -> None:
    pixels = np.asarray(image.resize((320, 600)), dtype=np.int16).reshape(-1, 3)
    inked = float((pixels.min(axis=1) < 200).mean())
    assert inked > 0.02, f"only {inked:.1%} of the screenshot is not near-white"
    saturated = pixels[pixels.max(axis=1) - pixels.min(axis=1) > 60]  # the charts' stage colours
    assert len({tuple(p) for p in saturated.tolist()}) > 10


def test_screenshot_of_a_full_report(chromium: str, hostile_report: Any) -> None:
    _not_blank(_screenshot(chromium, hostile_report.html_path, "report-tiny-all-hostile"))


def test_screenshot_of_the_full_size_h100_clean_pass(chromium: str, tmp_path: Path) -> None:
    """The full-size model's 10-page H100 run (its export not kept: the nsys sections say so)."""
    analysis, manifest = clean_pass_only(FIXTURES / "h100-full-ocr2-clean10")
    page = tmp_path / "report.html"
    page.write_text(render_html(analysis, manifest))
    _not_blank(_screenshot(chromium, page, "report-h100-full-ocr2-clean10"))
