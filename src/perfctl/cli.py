"""The `perfctl` command line: a thin Click layer over perfctl's library functions."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from perfctl import __version__
from perfctl.capture.processes import Interrupted
from perfctl.errors import BadInput, PerfctlError

EXIT_CODES = "Exit codes: 0 ok, 1 the capture or analysis failed, 2 bad input (a one-line reason is printed)."


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="What to print: a short table, or the whole result as one JSON object on stdout.",
)


def _fail(exc: PerfctlError) -> NoReturn:
    # one line, whatever the reason quotes (a damaged file's error may carry its bytes)
    _say(str(exc), exc.exit_code)


class OneLineErrors(click.Group):
    """The `perfctl` group, with Click's own errors (a bad option value, a missing argument), a stop
    signal and a file the system refused in perfctl's form: one line on stderr, no traceback."""

    def main(  # type: ignore[override]  # one signature for Click's two overloads
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # `perfctl` alone: the help, as Click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            _say(f"{exc.format_message()}{hint}", exc.exit_code)
        except (click.Abort, Interrupted) as exc:  # Ctrl-C or SIGTERM outside a capture's handling
            _say(f"stopped by {exc}" if isinstance(exc, Interrupted) else "interrupted (Ctrl-C)", 1)
        except OSError as exc:  # the system refused a file: which one, and why
            _say(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), 1)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


def _say(message: str, exit_code: int) -> NoReturn:
    click.echo(f"perfctl: error: {' '.join(message.split())}", err=True)
    sys.exit(exit_code)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.version_option(__version__, prog_name="perfctl")
def main() -> None:
    """Profile LLM / VLM inference under Nsight Systems and analyze where the time goes.

    \b
    perfctl capture --tool nsys            # built-in DeepSeek-OCR-2-architecture model, sample pages
    perfctl analyze profiles/<run-id>      # -> analysis.json + report.html in the run folder
    """


@main.command(epilog=EXIT_CODES)
@click.option(
    "--tool",
    type=click.Choice(["nsys", "torch", "all"]),
    default="nsys",
    show_default=True,
    help="nsys: the Nsight Systems pass. all: nsys, then a clean timing pass with no profiler (the "
    "stage times MFU uses), then a torch.profiler pass (operators per stage). torch alone: not offered.",
)
@click.option(
    "--model",
    default="deepseek-ocr2-tiny",
    show_default=True,
    help="Built-in model name (deepseek-ocr2-tiny, deepseek-ocr2) or a local model folder.",
)
@click.option(
    "--random-weights", is_flag=True, help="Run a model folder's architecture with seeded random weights."
)
@click.option(
    "--pages",
    "pages_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of page images [default: the built-in sample pages].",
)
@click.option(
    "--num-pages", type=int, default=4, show_default=True, help="Use the first N pages of the folder."
)
@click.option("--repeats", type=int, default=1, show_default=True, help="Passes over the pages.")
@click.option(
    "--max-new-tokens",
    type=int,
    default=16,
    show_default=True,
    help="Tokens generated per page (fixed length: EOS is suppressed).",
)
@click.option(
    "--tiles",
    type=int,
    default=0,
    show_default=True,
    help="DeepSeek-OCR-2 local 768² views per page (0-6) besides the global view.",
)
@click.option(
    "--warmup",
    type=int,
    default=1,
    show_default=True,
    help="Warm-up generate calls before the measured pages (no stage ranges inside).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--dtype",
    default="auto",
    show_default=True,
    help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
@click.option(
    "--profiles",
    "profiles_root",
    type=click.Path(path_type=Path),
    default=Path("profiles"),
    show_default=True,
    help="Folder that holds run folders.",
)
@click.option("--run-id", default=None, help="Name of the run folder [default: time-model-random].")
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Exact run folder (overrides --run-id)."
)
@click.option("--force", is_flag=True, help="Replace an existing run folder.")
@click.option("--nsys", "nsys_path", default=None, help="nsys executable [default: $NSYS, then PATH].")
@click.option("--trace", default="cuda,nvtx,osrt", show_default=True, help="nsys --trace value.")
def capture(
    tool: str,
    model: str,
    random_weights: bool,
    pages_dir: Path | None,
    num_pages: int,
    repeats: int,
    max_new_tokens: int,
    tiles: int,
    warmup: int,
    device: str,
    dtype: str,
    seed: int,
    profiles_root: Path,
    run_id: str | None,
    out: Path | None,
    force: bool,
    nsys_path: str | None,
    trace: str,
) -> None:
    """Run the NVTX-instrumented driver under nsys into a new run folder (with --tool all, then again
    without a profiler for clean stage times and MFU, and under torch.profiler for operators).

    \b
    Examples:
      perfctl capture --tool nsys
      perfctl capture --model deepseek-ocr2 --device cuda --num-pages 3 --max-new-tokens 64 --tool all
      perfctl capture --model /models/DeepSeek-OCR-2 --pages ./scans --repeats 3 --out profiles/scan-r3
    """
    from perfctl.capture.run import CaptureOptions, capture_nsys

    if tool == "torch":
        # Announced, not faked: analysis starts from the nsys export, so the torch pass comes with it.
        _fail(BadInput("--tool torch alone is not offered: use --tool all (nsys, timing and torch.profiler)"))
    opts = CaptureOptions(
        model=model,
        random_weights=random_weights,
        pages_dir=pages_dir,
        num_pages=num_pages,
        repeats=repeats,
        max_new_tokens=max_new_tokens,
        tiles=tiles,
        warmup=warmup,
        device=device,
        dtype=dtype,
        seed=seed,
        profiles_root=profiles_root,
        run_id=run_id,
        out=out,
        force=force,
        nsys=nsys_path,
        trace=trace,
        timing_pass=tool == "all",
        argv=["perfctl", *sys.argv[1:]],
    )
    if tool == "all":
        click.echo("passes: nsys, then a clean timing pass, then a torch.profiler pass")
    try:
        result = capture_nsys(opts)
    except PerfctlError as exc:
        _fail(exc)
    click.echo(f"run folder: {result.run_dir}")
    click.echo(f"status: {result.status}" + (f" ({result.reason})" if result.reason else ""))
    if result.status != "ok":
        sys.exit(1)
    click.echo(f"next: perfctl analyze {result.run_dir}")


@main.command(epilog=EXIT_CODES)
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
def analyze(
    path: Path,
    fmt: str,
    out_dir: Path | None,
    top_n: int,
    nsys_path: str | None,
    allow_no_kernels: bool,
    peak_tflops: float | None,
    peak_bandwidth_gbs: float | None,
) -> None:
    """Analyze an nsys export (.sqlite), report (.nsys-rep) or perfctl run folder.

    \b
    Examples:
      perfctl analyze profiles/20261126-101500-deepseek-ocr2-tiny-1a2b3c
      perfctl analyze my.sqlite --format json | jq '.ranges[] | {name, kernel_time_ns}'
    """
    from perfctl.analyze_run import analyze_path
    from perfctl.report.text import render_text

    try:
        result = analyze_path(
            path,
            nsys_path=nsys_path,
            top_n=top_n,
            out_dir=out_dir,
            allow_no_kernels=allow_no_kernels,
            peak_tflops=peak_tflops,
            peak_bandwidth_gbs=peak_bandwidth_gbs,
        )
    except PerfctlError as exc:
        _fail(exc)
    if fmt == "json":
        click.echo(json.dumps(result.analysis, default=str))
    else:
        click.echo(render_text(result.analysis))
    click.echo(f"wrote {result.json_path} and {result.html_path}", err=fmt == "json")


@main.command(epilog=EXIT_CODES)
@click.argument("model")
@click.option(
    "--tiles", type=int, default=0, show_default=True, help="Local 768² tiles besides the global view."
)
@click.option(
    "--prompt-tokens",
    type=int,
    default=11,
    show_default=True,
    help="Text tokens of the prompt besides the image tokens.",
)
@click.option("--new-tokens", type=int, default=64, show_default=True, help="Generated tokens.")
@format_option
@click.option("--breakdown", is_flag=True, help="Also FLOPs per kind of block (attention, mlp, ...).")
def flops(model: str, tiles: int, prompt_tokens: int, new_tokens: int, fmt: str, breakdown: bool) -> None:
    """Analytic FLOPs per stage (vision, prefill, decode) of one page, from the model's config.

    \b
    MODEL: a built-in name (deepseek-ocr2, deepseek-ocr2-tiny), a model folder or a config.json.
    Examples:
      perfctl flops deepseek-ocr2 --tiles 2 --new-tokens 256 --format json
    """
    from perfctl.flops import count_flops

    try:
        report = count_flops(model, tiles=tiles, prompt_tokens=prompt_tokens, new_tokens=new_tokens)
    except PerfctlError as exc:
        _fail(exc)
    data = report.to_json(breakdown=breakdown)
    if fmt == "json":
        click.echo(json.dumps(data))
        return
    f, t = data["flops"], data["tokens"]
    click.echo(
        f"{data['model']}: {t['image']} image + {t['prompt_total'] - t['image']} text tokens, {t['new']} new"
    )
    for stage in ("vision", "prefill", "decode"):
        click.echo(f"{stage:<8} {f[stage] / 1e9:>14,.2f} GFLOP")
    steps = f["decode_per_token"]
    if steps:
        click.echo(
            f"decode per token: {steps[0] / 1e9:,.3f} GFLOP (first step) to {steps[-1] / 1e9:,.3f} (last)"
        )
    click.echo(data["conventions"])
