"""Real inputs for the report tests (HTML, summary.md, findings, the browser check).

* `tiny_all_run`: the H100 run folder of the tiny model with every pass (tests/fixtures/h100-tiny-ocr2-all),
  its export decompressed: every section of the report has data.
* `hostile_kernel_run`: the same folder with hostile text put into it, the way an attacker-named kernel
  or model would arrive: the export's StringIds text of one kernel's name and of its short name
  (SQLite UPDATE on the copy), and the manifest's run id, model name and first page file name.
* `clean_pass_only`: what the library makes of a run folder whose export was not kept (the full-size
  H100 fixtures keep only their small files): run identity, the clean pass's statistics, telemetry,
  MFU and MBU, findings; no nsys part.
* `capture_hostile_names`: a real nsys capture (CPU, NVTX only) of
  scripts/fixture_programs/hostile_names.py, whose range and domain names are hostile.
And `assert_inert`: the check that a rendered document holds only the elements perfctl writes.
"""

from __future__ import annotations

import importlib.util
import json
import lzma
import shutil
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any

from perfctl import __version__
from perfctl.analysis.cost_centres import cost_centres
from perfctl.analysis.efficiency import efficiency
from perfctl.analysis.findings import findings
from perfctl.analysis.repeatability import load_clean_pass, timing_statistics
from perfctl.analysis.telemetry import page_telemetry

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent
HOSTILE_PROGRAM = REPO / "scripts" / "fixture_programs" / "hostile_names.py"

PWNED = "PWNED"  # what an injected script would set the page title to
# the kernel keeps "elementwise_kernel" in its name, so it keeps its category and its place in the tables
HOSTILE_KERNEL = (
    'void at::native::elementwise_kernel<(int)128, <script>document.title="PWNED";'
    'document.body.setAttribute("data-pwned","1")</script> | `tick` **bold**\n[x](javascript:alert(1)), '
    + ", ".join(f"cute::tuple<cute::C<(int){i}>, cute::C<(int){2 * i}>>" for i in range(80))
    + ">(int, T3)"
)
HOSTILE_SHORT = "<img src=x onerror=\"document.title='PWNED'\">|`elementwise_kernel`\n**k** & co"
HOSTILE_MODEL = '<script>document.title="PWNED"</script> | `model` **x**\nsecond line'
HOSTILE_PAGE = "page <b>|`01`|</b>\n.png"
HOSTILE_RUN_ID = "run-<i>id</i>|`x`"


def tiny_all_run(target: Path) -> Path:
    shutil.copytree(FIXTURES / "h100-tiny-ocr2-all", target, ignore=shutil.ignore_patterns("*.xz"))
    with (
        lzma.open(FIXTURES / "h100-tiny-ocr2-all" / "run.sqlite.xz") as src,
        (target / "run.sqlite").open("wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    return target


def hostile_kernel_run(target: Path) -> Path:
    """tiny_all_run with the most expensive elementwise kernel renamed (name and short name) and a
    hostile run id, model name and page file name in the manifest."""
    run = tiny_all_run(target)
    conn = sqlite3.connect(run / "run.sqlite")
    try:
        name_id, short_id = conn.execute(
            "SELECT k.demangledName, k.shortName FROM CUPTI_ACTIVITY_KIND_KERNEL k "
            "JOIN StringIds s ON s.id = k.demangledName WHERE s.value LIKE '%elementwise_kernel<%' "
            "GROUP BY k.demangledName ORDER BY SUM(k.end - k.start) DESC LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE StringIds SET value = ? WHERE id = ?", (HOSTILE_KERNEL, name_id))
        conn.execute("UPDATE StringIds SET value = ? WHERE id = ?", (HOSTILE_SHORT, short_id))
        conn.commit()
    finally:
        conn.close()
    manifest_path = run / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["run_id"] = HOSTILE_RUN_ID
    manifest["model_spec"]["name"] = HOSTILE_MODEL  # display only: the FLOP model reads workload.model
    manifest["pages"][0]["file"] = HOSTILE_PAGE
    manifest_path.write_text(json.dumps(manifest))
    return run


def clean_pass_only(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(analysis, manifest) of a run folder that kept no nsys export, through the library functions
    `perfctl analyze` uses for a run folder's other passes."""
    manifest: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    clean = load_clean_pass(run_dir, manifest)
    assert clean is not None
    run_keys = ("run_id", "status", "reason", "pages_completed", "pages_expected", "model_spec", "workload")
    analysis: dict[str, Any] = {
        "perfctl_version": __version__,
        "warnings": [],
        "run": {k: manifest.get(k) for k in (*run_keys, "driver")},
        "timing": {
            "pass": "clean",
            "statistics": timing_statistics(clean.records),
            "telemetry": page_telemetry(
                run_dir / "timing" / "telemetry.jsonl", clean.records, clean.info.get("telemetry")
            ),
        },
        "efficiency": efficiency(clean, manifest, {}),
    }
    analysis["cost_centres"] = cost_centres(analysis)
    analysis["findings"] = findings(analysis)
    return analysis, manifest


def hostile_names_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hostile_names", HOSTILE_PROGRAM)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def capture_hostile_names(nsys: str, target: Path) -> Path:
    """nsys profile (NVTX only, no GPU) of the hostile-names program, under perfctl's machine-wide
    nsys lock; returns the SQLite export."""
    from faults_support import own_nsys_session

    target.mkdir(parents=True, exist_ok=True)
    cmd = [
        nsys,
        "profile",
        "--trace=nvtx",
        "--sample=none",
        "--cpuctxsw=none",
        "--export=sqlite",
        "--force-overwrite=true",
        "-o",
        str(target / "run"),
        sys.executable,
        str(HOSTILE_PROGRAM),
    ]
    with own_nsys_session("the hostile-names capture") as env:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    export = target / "run.sqlite"
    assert proc.returncode == 0 and export.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return export


# the only elements perfctl's HTML and Markdown outputs may contain
REPORT_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "nav", "ol", "li", "a",
    "section", "div", "span", "strong", "details", "summary", "table", "tr", "th", "td", "dl", "dt",
    "dd", "code", "br", "svg", "g", "rect", "line", "text",
}  # fmt: skip


URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "srcset", "data"}


class Elements(HTMLParser):
    """Every element and attribute of a document, and its text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_inert(html: str, allowed: set[str]) -> Elements:
    """No element outside `allowed` (no script, img, b, i ...), no event-handler attribute, no URL
    but in-page links."""
    doc = Elements(html)
    assert {tag for tag, _ in doc.tags} <= allowed
    assert not [(tag, a) for tag, attrs in doc.tags for a in attrs if a.startswith("on")]
    urls = [v for _, attrs in doc.tags for k, v in attrs.items() if k in URL_ATTRIBUTES and v]
    assert not [v for v in urls if not v.startswith("#")]  # in-page links only: nothing to load or run
    return doc
