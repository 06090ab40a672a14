"""`perfctl analyze`: an nsys export, report or run folder (or an Nsight Compute report) into
analysis.json, report.html and a summary."""

from __future__ import annotations

import json
from pathlib import Path

import click

from perfctl import progress
from perfctl.cli.errors import EXIT_CODES, fail
from perfctl.cli.options import format_option, profiles_option, quiet_option
from perfctl.errors import BadInput, PerfctlError


@click.command(epilog=EXIT_CODES)
@click.argument("path", type=click.Path(path_type=Path))
@format_option
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write analysis.json and report.html [default: beside the export].",
)
@click.option(
    "--top",
    "top_n",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Top kernels kept per range.",
)
@click.option(
    "--nsys", "nsys_path", default=None, help="nsys for exporting a .nsys-rep [default: $NSYS, PATH]."
)
@click.option(
    "--allow-no-kernels",
    is_flag=True,
    help="Analyze an export without CUDA kernels (NVTX wall times only) instead of refusing it; "
    "implied for perfctl runs made with --device cpu.",
)
@click.option(
    "--peak-tflops",
    type=float,
    default=None,
    help="Dense peak TFLOP/s for MFU instead of the GPU table's (docs/gpu-peaks.md).",
)
@click.option(
    "--peak-bandwidth-gbs", type=float, default=None, help="Peak memory GB/s for MBU instead of the table's."
)
@click.option(
    "--calibration",
    "calibration_path",
    type=click.Path(path_type=Path),
    default=None,
    help="A `perfctl calibrate` result: MFU/MBU also against the measured matmul rate and bandwidth "
    "[default: the run folder's calibration.json, if any].",
)
@profiles_option
@quiet_option
def analyze(
    path: Path,
    fmt: str,
    out_dir: Path | None,
    top_n: int,
    nsys_path: str | None,
    allow_no_kernels: bool,
    peak_tflops: float | None,
    peak_bandwidth_gbs: float | None,
    calibration_path: Path | None,
    profiles_root: Path,
    quiet: bool,
) -> None:
    """Analyze an nsys export (.sqlite), report (.nsys-rep) or perfctl run folder (with its Nsight
    Compute pass, when ncu/ holds one), or an Nsight Compute report (.ncu-rep) on its own.

    \b
    Examples:
      perfctl analyze profiles/20261126-101500-deepseek-ocr2-tiny-1a2b3c
      perfctl analyze my.sqlite --format json | jq '.ranges[] | {name, kernel_time_ns}'
      perfctl analyze profiles/<run>/ncu/run.ncu-rep --format json | jq '.kernels[] | {name, bound}'
    """
    from perfctl.commands.analyze import analyze as analyze_command
    from perfctl.commands.analyze_ncu import analyze_ncu_report, is_ncu_report
    from perfctl.commands.analyze_options import AnalyzeOptions
    from perfctl.report.kernels_md import render_ncu_report
    from perfctl.report.text import render_text

    progress.configure(quiet)
    if is_ncu_report(path):
        try:
            report = analyze_ncu_report(path)
        except PerfctlError as exc:
            fail(exc)
        click.echo(json.dumps(report) if fmt == "json" else render_ncu_report(report))
        return
    from perfctl.sweep_folder import SweepFolder

    if SweepFolder.is_sweep(path):  # a sweep folder: every point again, then the sweep's report
        if out_dir is not None or calibration_path is not None:
            fail(BadInput("--out-dir and --calibration are for one run; a sweep writes into its own folder"))
        _analyze_sweep(path, fmt, nsys_path, top_n, peak_tflops, peak_bandwidth_gbs)
        return
    try:
        options = AnalyzeOptions(  # refuses an unbelievable peak override (BadInput)
            nsys_path=nsys_path,
            top_n=top_n,
            out_dir=out_dir,
            allow_no_kernels=allow_no_kernels,
            peak_tflops=peak_tflops,
            peak_bandwidth_gbs=peak_bandwidth_gbs,
            calibration=calibration_path,
        )
        result = analyze_command(path, profiles_root, options)
    except PerfctlError as exc:
        fail(exc)
    progress.finish()
    if fmt == "json":
        click.echo(json.dumps(result.analysis, default=str))
    else:
        click.echo(render_text(result.analysis))
    kernels = f", {result.kernels_path}" if result.kernels_path else ""
    click.echo(
        f"wrote {result.json_path}, {result.html_path}{kernels} and {result.summary_path}", err=fmt == "json"
    )


def _analyze_sweep(
    path: Path,
    fmt: str,
    nsys_path: str | None,
    top_n: int,
    peak_tflops: float | None,
    peak_bandwidth_gbs: float | None,
) -> None:
    from perfctl.commands.analyze_options import AnalyzeOptions
    from perfctl.commands.sweep import analyze_sweep_folder
    from perfctl.report.sweep import render_sweep_text

    try:
        options = AnalyzeOptions(
            nsys_path=nsys_path, top_n=top_n, peak_tflops=peak_tflops, peak_bandwidth_gbs=peak_bandwidth_gbs
        )
        result = analyze_sweep_folder(path, options)
    except PerfctlError as exc:
        fail(exc)
    progress.finish()
    click.echo(json.dumps(result.analysis) if fmt == "json" else render_sweep_text(result.analysis))
    click.echo(f"wrote {', '.join(str(p) for p in result.outputs)}", err=fmt == "json")
