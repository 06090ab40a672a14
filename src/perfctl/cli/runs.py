"""The run folders of a profiles folder: `perfctl runs` (its registry), `perfctl shipped` (the runs that
come with perfctl) and `perfctl open` (a run's report in nsys-ui)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from perfctl.cli.errors import fail
from perfctl.cli.options import profiles_option
from perfctl.errors import PerfctlError


@click.command(epilog="Exit codes: 0 listed (none is fine), 2 bad input (a one-line reason is printed).")
@profiles_option
@click.option("--model", default=None, help="Only runs of this model (as given to capture).")
@click.option(
    "--status", default=None, help="Only runs with this status: running, ok, failed or interrupted."
)
@click.option(
    "--gpu", default=None, help="Only runs on a GPU whose name contains this (any case), e.g. H100."
)
@click.option(
    "--since", default=None, help="Only runs started at or after this date (YYYY-MM-DD[THH:MM], UTC)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="A table, or the runs as one JSON list on stdout.",
)
def runs(
    profiles_root: Path, model: str | None, status: str | None, gpu: str | None, since: str | None, fmt: str
) -> None:
    """List the runs recorded in a profiles folder's registry (index.db), newest first: every capture
    (running, ok, failed or interrupted, with its reason) and the headline metrics of its last analysis.

    \b
    Examples:
      perfctl runs
      perfctl runs --status failed --since 2026-11-01
      perfctl runs --gpu h100 --model deepseek-ocr2 --format json
    """
    from perfctl.commands.runs import runs as runs_command
    from perfctl.report.runs import render_runs_text

    try:
        found = runs_command(profiles_root, model=model, status=status, gpu=gpu, since=since)
    except PerfctlError as exc:
        fail(exc)
    if fmt == "json":
        click.echo(json.dumps(found))
    else:
        filtered = any(x is not None for x in (model, status, gpu, since))
        click.echo(render_runs_text(found, profiles_root, filtered))


@click.command(epilog="Exit codes: 0 copied, 2 bad input (a one-line reason is printed).")
@profiles_option
def shipped(profiles_root: Path) -> None:
    """Copy the runs that come with perfctl (real runs on real GPUs) into a profiles folder, to analyze.

    \b
    Prints each copy's run folder on stdout, and on stderr what it is. A folder of the same name is
    replaced only when it is an earlier copy of that shipped run. Every analysis and report of a
    shipped run says it was shipped, not captured by you.
    Examples:
      perfctl shipped
      perfctl analyze profiles/h200-deepseek-ocr2
    """
    from perfctl.shipped import copy_shipped_runs

    try:
        copied = copy_shipped_runs(profiles_root)
    except PerfctlError as exc:
        fail(exc)
    for run, folder in copied:
        click.echo(str(folder))
        click.echo(f"{run.name}: {run.label['label']}; next: perfctl analyze {folder}", err=True)


@click.command(
    name="open", epilog="Exit codes: 0 opened, or the path printed; 2 bad input (no such run or report)."
)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--nsys", "nsys_path", default=None, help="nsys whose nsys-ui to use [default: $NSYS, PATH].")
def open_command(run: Path, nsys_path: str | None) -> None:
    """Open a run's Nsight Systems report (.nsys-rep) in nsys-ui, or print its path.

    \b
    RUN: a run folder (its run.nsys-rep) or a .nsys-rep file. nsys-ui is looked for on PATH, then
    beside nsys, and started detached. Without nsys-ui or a display, the path is printed and the
    reason said. The report's path always goes to stdout.

    \b
    Examples:
      perfctl open profiles/20261126-101500-deepseek-ocr2-tiny-1a2b3c
      perfctl open my-capture.nsys-rep --nsys /opt/nvidia/nsight-systems/2025.3.1/bin/nsys
    """
    from perfctl.commands.open import open_report

    try:
        outcome = open_report(run, nsys_path)
    except PerfctlError as exc:
        fail(exc)
    click.echo(str(outcome.report))
    if outcome.ui is not None:
        click.echo(f"opened in {outcome.ui} (pid {outcome.pid})", err=True)
    else:
        click.echo(f"{outcome.reason}: open the report above in Nsight Systems yourself", err=True)
