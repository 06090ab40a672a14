"""`perfctl compare`: run B against run A, per stage, with confidence intervals and an optional gate."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from perfctl import progress
from perfctl.cli.errors import fail
from perfctl.cli.options import quiet_option
from perfctl.errors import BadInput, PerfctlError

COMPARE_EXIT_CODES = (
    "Exit codes: 0 compared (and the gate passed), 1 --fail-if-slower: a stage got slower beyond noise "
    "by more than PCT, 2 bad input (a one-line reason is printed; also runs of a different model, mode, "
    "device, GPU model, batch size or decode mode without --allow-different), 3 --fail-if-slower cannot "
    "tell: a stage's runs cannot detect a change of PCT (too few pages for their noise; the line says how "
    "many pages per run would)."
)


@click.command(epilog=COMPARE_EXIT_CODES)
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "md", "html"]),
    default="text",
    show_default=True,
    help="Tables for the terminal, the whole comparison as JSON, Markdown, or one self-contained HTML page.",
)
@click.option(
    "--fail-if-slower",
    "fail_if_slower_pct",
    type=click.FloatRange(min=0),
    default=None,
    metavar="PCT",
    help="Exit 1 when a stage of B is slower than A's beyond noise and by more than PCT percent; "
    "exit 3 when a stage's runs cannot detect a PCT change (its minimum detectable change is above "
    "PCT, or unknown with fewer than 2 pages).",
)
@click.option(
    "--allow-different",
    is_flag=True,
    default=False,
    help="Compare runs of a different model, mode, device, GPU model, batch size or decode mode (refused "
    "otherwise, exit 2); each difference is listed.",
)
@click.option(
    "--top",
    type=click.IntRange(0, 100),
    default=5,
    show_default=True,
    help="Kernels shown per stage in the top-kernel changes.",
)
@quiet_option
def compare(
    run_a: Path,
    run_b: Path,
    fmt: str,
    fail_if_slower_pct: float | None,
    allow_different: bool,
    top: int,
    quiet: bool,
) -> None:
    """Compare run B against run A (the baseline): per-stage time, MFU, kernel count and top-kernel
    deltas, each with a 95 % confidence interval from the pages of both runs (Welch's t-test), the
    smallest change the runs can detect, and a verdict per stage: faster, slower or within noise.

    \b
    RUN_A, RUN_B: run folders or analysis.json files (a run folder without analysis.json is
    analyzed on the fly; nothing is written into it).
    Examples:
      perfctl compare profiles/baseline profiles/candidate
      perfctl compare base/analysis.json new/analysis.json --fail-if-slower 5 --format md
    """
    from perfctl.commands.compare import compare_paths
    from perfctl.report.compare import (
        gate_line,
        render_compare_html,
        render_compare_markdown,
        render_compare_text,
    )

    progress.configure(quiet)
    from perfctl.sweep_folder import SweepFolder

    sweeps = [SweepFolder.is_sweep(p) for p in (run_a, run_b)]
    if any(sweeps):
        _compare_sweeps(run_a, run_b, sweeps, fmt, fail_if_slower_pct, allow_different, top)
        return
    try:
        result = compare_paths(
            run_a, run_b, top=top, fail_if_slower_pct=fail_if_slower_pct, allow_different=allow_different
        )
    except PerfctlError as exc:
        fail(exc)
    progress.finish()
    renderers = {"md": render_compare_markdown, "html": render_compare_html, "text": render_compare_text}
    _show(result, fmt, renderers, gate_line(result))


def _compare_sweeps(
    sweep_a: Path,
    sweep_b: Path,
    sweeps: list[bool],
    fmt: str,
    fail_if_slower_pct: float | None,
    allow_different: bool,
    top: int,
) -> None:
    """Two sweep folders: batch size by batch size (perfctl.commands.compare_sweeps)."""
    from perfctl.commands.compare_sweeps import compare_sweeps
    from perfctl.report.compare_sweeps import (
        render_sweep_comparison_markdown,
        render_sweep_comparison_text,
        sweep_gate_line,
    )

    try:
        if not all(sweeps):
            sweep, other = (sweep_a, sweep_b) if sweeps[0] else (sweep_b, sweep_a)
            raise BadInput(f"{sweep} is a sweep folder and {other} is not: compare a sweep with a sweep")
        if fmt == "html":
            raise BadInput("two sweeps compare as text, json or md (--format html compares two runs)")
        result = compare_sweeps(sweep_a, sweep_b, top, fail_if_slower_pct, allow_different)
    except PerfctlError as exc:
        fail(exc)
    progress.finish()
    renderers = {"md": render_sweep_comparison_markdown, "text": render_sweep_comparison_text}
    _show(result, fmt, renderers, sweep_gate_line(result))


def _show(
    result: Mapping[str, Any], fmt: str, renderers: Mapping[str, Callable[[Any], str]], gate: str | None
) -> None:
    """Print a comparison in `fmt` (json: as it is; else its renderer's text), then, when its gate
    failed, the gate's line on stderr and its exit code."""
    if fmt == "json":
        click.echo(json.dumps(result))
    else:
        click.echo(renderers[fmt](result), nl=fmt == "text")
    verdict = result.get("gate")
    if verdict is not None and verdict["failed"]:
        click.echo(f"perfctl: {gate}", err=True)
        sys.exit(verdict["exit_code"])
