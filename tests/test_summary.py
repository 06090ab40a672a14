"""summary.md, the one-page stakeholder summary, from real runs: its figures are the analysis's own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from perfctl.commands.analyze import analyze_path
from perfctl.commands.analyze_options import AnalyzeOptions
from perfctl.report.formatting import ms, number, pct
from perfctl.report.markdown import MAX_ACTIONS, render_markdown
from report_inputs import FIXTURES, clean_pass_only, tiny_all_run

HEADINGS = [
    "## Where the time goes",
    "## MFU per stage",
    "## Throughput",
    "## Stability",
    "## What to do next",
]


def _rows(summary: str, heading: str) -> list[list[str]]:
    """The cells of the table under a heading, header and rule left out."""
    section = summary.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return analyze_path(tiny_all_run(tmp_path_factory.mktemp("summary") / "run"))


def test_summary_of_a_full_run(full_run: Any) -> None:
    summary = full_run.summary_path.read_text()
    analysis = full_run.analysis
    assert summary.startswith("# perfctl summary: j-deepseek-ocr2-tiny\n")
    assert [line for line in summary.splitlines() if line.startswith("## ")] == HEADINGS
    centres = analysis["cost_centres"][:3]
    assert [(r[1], r[3], r[5]) for r in _rows(summary, HEADINGS[0])] == [
        (c["stage"], ms(c["time_ns"]), pct(c["share_of_all_stages"])) for c in centres
    ]
    # the three are idle time on this launch-bound run, so the largest GPU work is named too
    assert all(c["kind"] == "gpu_idle" for c in centres) and "Largest GPU work: decode elementwise" in summary
    eff = analysis["efficiency"]["stages"]
    assert [(r[0], r[4]) for r in _rows(summary, HEADINGS[1])] == [
        (s, pct(st["mfu"])) for s, st in eff.items()
    ]
    rate = analysis["throughput"]
    assert f"At batch size 1 ({rate['pages']} pages in {rate['generate_calls']} generate calls" in summary
    pages_per_s, tokens_per_s = number(rate["pages_per_s"]), number(rate["tokens_per_s"])
    assert f"**{pages_per_s} pages/s**, {tokens_per_s} new tokens/s" in summary
    stats = analysis["timing"]["statistics"]
    assert [r[3] for r in _rows(summary, HEADINGS[3])] == ["stable"] * 4  # 3 stages and the whole page
    actions = re.findall(r"^\d+\. \*\*(.*?)\*\*", summary.split(HEADINGS[4])[1], flags=re.M)
    steps: dict[str, str] = {}  # each next step once, with the first (most severe) finding that asks it
    for f in analysis["findings"]:
        if f["next"]:
            steps.setdefault(f["next"], f["title"])
    assert len(actions) == MAX_ACTIONS and actions == list(steps.values())[:MAX_ACTIONS]
    assert stats["page"]["count"] == 2 and len(summary.splitlines()) < 60  # one page


def test_summary_without_export_uses_the_clean_pass() -> None:
    """The full-size H100 run keeps no export: the clean stage times stand in for the cost centres,
    and the unstable verdicts lead to what to do."""
    analysis, _ = clean_pass_only(FIXTURES / "h100-full-ocr2-clean10")
    summary = render_markdown(analysis)
    stats = analysis["timing"]["statistics"]
    page = stats["page"]["mean"]
    by_time = sorted(stats["stages"].items(), key=lambda kv: -kv[1]["mean"])
    assert _rows(summary, HEADINGS[0]) == [[s, ms(st["mean"]), pct(st["mean"] / page)] for s, st in by_time]
    assert [r[3] for r in _rows(summary, HEADINGS[3])] == ["**not stable**"] * 4
    assert "taskset" in summary and "host-side" in summary


def test_summary_of_a_cpu_capture_says_what_was_not_measured(tmp_path: Path, hostile_capture: Path) -> None:
    summary = analyze_path(
        hostile_capture, AnalyzeOptions(allow_no_kernels=True, out_dir=tmp_path)
    ).summary_path.read_text()
    assert "Not measured: MFU needs a perfctl run folder with a clean timing pass" in summary
    assert "Not measured: no clean timing pass in this run" in summary
    assert {r[2] for r in _rows(summary, HEADINGS[0])} == {"stage wall time (no kernel data)"}
    assert "1. **no clean timing pass**: capture with --tool all." in summary
