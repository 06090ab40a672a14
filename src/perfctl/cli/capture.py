"""`perfctl capture`: one capture into a new run folder (its options: perfctl.cli.capture_options)."""

from __future__ import annotations

import sys
from typing import Any

import click

from perfctl import progress
from perfctl.cli.capture_options import capture_options, capture_options_from
from perfctl.cli.errors import EXIT_CODES, fail
from perfctl.errors import PerfctlError


@click.command(epilog=EXIT_CODES)
@capture_options()
def capture(**params: Any) -> None:
    """Run the NVTX-instrumented driver under nsys into a new run folder (with --tool all, then again
    without a profiler for clean stage times and MFU, and under torch.profiler for operators).
    One nsys session at a time runs on a machine: the nsys pass waits for another one (--no-wait
    refuses instead).

    \b
    Examples:
      perfctl capture --tool nsys
      perfctl capture --tool torch --num-pages 2
      perfctl capture --model deepseek-ocr2 --device cuda --num-pages 3 --max-new-tokens 64 --tool all
      perfctl capture --model /models/DeepSeek-OCR-2 --pages ./scans --repeats 3 --out profiles/scan-r3
      perfctl capture --model deepseek-ocr2 --num-pages 10 --repeats 3 --profile-pages 2 --tool all
      perfctl capture --model deepseek-ocr2 --device cuda --num-pages 1 --tool all --ncu
    """
    from perfctl.capture.run import capture_run

    progress.configure(params["quiet"])
    opts = capture_options_from(params, ["perfctl", *sys.argv[1:]])
    if opts.tool == "all":
        then_ncu = ", then an Nsight Compute pass" if params["ncu_pass"] else ""
        click.echo(f"passes: nsys, then a clean timing pass, then a torch.profiler pass{then_ncu}")
    elif opts.tool == "ncu":
        click.echo("passes: nsys, then an Nsight Compute pass on the kernels it chose")
    try:
        result = capture_run(opts)
    except PerfctlError as exc:
        fail(exc)
    progress.finish()
    click.echo(f"run folder: {result.run_dir}")
    click.echo(f"status: {result.status}" + (f" ({result.reason})" if result.reason else ""))
    if result.status != "ok":
        sys.exit(1)
    click.echo(f"next: perfctl analyze {result.run_dir}")
