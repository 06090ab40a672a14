"""`perfctl sweep`: one capture per batch size into a sweep folder, and the sweep's report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from perfctl import progress
from perfctl.cli.capture_options import capture_options, capture_options_from
from perfctl.cli.errors import fail
from perfctl.cli.options import format_option
from perfctl.errors import PerfctlError

SWEEP_EXIT_CODES = (
    "Exit codes: 0 every point ok, 1 a point's capture or analysis failed (the others are kept and "
    "reported), 2 bad input (a one-line reason is printed)."
)
# capture options a sweep sets per point itself, or declares as its own
PER_POINT = {"--tool", "--num-pages", "--profile-pages", "--batch-size", "--out", "--run-id", "--force"}


@click.command(epilog=SWEEP_EXIT_CODES)
@click.option(
    "--batch-sizes",
    required=True,
    help="Batch sizes to capture, comma-separated (1,4,16,64): one run folder per batch size.",
)
@click.option(
    "--calls",
    type=int,
    default=2,
    show_default=True,
    help="Generate calls per batch size in the clean timing pass (calls x batch size pages; a pages "
    "folder holding fewer is gone through again, in order).",
)
@click.option(
    "--profile-calls",
    type=int,
    default=1,
    show_default=True,
    help="Of those calls, how many the profiled passes (nsys, torch.profiler) run.",
)
@click.option(
    "--tool",
    type=click.Choice(["all", "nsys", "ncu"]),
    default="all",
    show_default=True,
    help="The passes of every point, as `perfctl capture --tool` (all: nsys, the clean timing pass that "
    "throughput and MFU come from, torch.profiler).",
)
@click.option("--sweep-id", default=None, help="Name of the sweep folder [default: sweep-time-model-random].")
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Exact sweep folder (overrides --sweep-id)."
)
@click.option("--force", is_flag=True, help="Replace an existing sweep folder (only one perfctl made).")
@format_option
@capture_options(exclude=PER_POINT)
def sweep(**params: Any) -> None:
    """Capture the same workload at several batch sizes, analyze each, and report throughput, latency,
    MFU/MBU and decode's roofline position against batch, and where throughput stops growing.

    \b
    Examples:
      perfctl sweep --batch-sizes 1,2 --decode static --max-new-tokens 8
      perfctl sweep --model deepseek-ocr2 --device cuda --batch-sizes 1,4,16,64 --decode compiled \\
          --max-new-tokens 128 --calls 3
    """
    from perfctl.commands.sweep import SweepOptions, parse_batch_sizes, run_sweep
    from perfctl.report.sweep import render_sweep_text

    progress.configure(params["quiet"])
    argv = ["perfctl", *sys.argv[1:]]
    point = params | {"num_pages": None, "profile_pages": None, "batch_size": 1}
    point |= {"out": None, "run_id": None, "force": False}
    try:
        opts = SweepOptions(
            capture=capture_options_from(point, argv),
            batch_sizes=parse_batch_sizes(params["batch_sizes"]),
            calls=params["calls"],
            profile_calls=params["profile_calls"],
            sweep_id=params["sweep_id"],
            out=params["out"],
            force=params["force"],
        )
        result = run_sweep(opts, argv)
    except PerfctlError as exc:
        fail(exc)
    progress.finish()
    if params["fmt"] == "json":
        click.echo(json.dumps(result.analysis))
    else:
        click.echo(render_sweep_text(result.analysis))
    click.echo(f"sweep folder: {result.folder} ({result.status})", err=params["fmt"] == "json")
    click.echo(f"wrote {', '.join(str(p) for p in result.outputs)}", err=params["fmt"] == "json")
    if result.status != "ok":
        sys.exit(1)
