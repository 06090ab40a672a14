"""The `perfctl` command line: a thin Click layer over perfctl's library functions."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from perfctl import __version__, progress
from perfctl.capture.processes import Interrupted
from perfctl.errors import PerfctlError
from perfctl.ncu_rep.metrics import NCU_CLOCKS, NCU_SETS
from perfctl.workloads.decode import DECODE_MODES

EXIT_CODES = (
    "Exit codes: 0 ok, 1 a check, capture or analysis failed, 2 bad input (a one-line reason is printed)."
)


# capture writes run folders there, runs lists them from its registry
profiles_option = click.option(
    "--profiles",
    "profiles_root",
    type=click.Path(path_type=Path),
    default=Path("profiles"),
    show_default=True,
    help="Folder that holds the run folders and their registry (index.db); a run folder elsewhere is "
    "recorded only where perfctl's index.db already is.",
)


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="What to print: a short table, or the whole result as one JSON object on stdout.",
)
quiet_option = click.option(
    "--quiet",
    is_flag=True,
    help="No progress lines on stderr (they are off anyway when stderr is not a terminal).",
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
    Examples:
      perfctl doctor                         # can this machine make a capture? each problem with its fix
      perfctl capture --tool nsys            # built-in DeepSeek-OCR-2-architecture model, sample pages
      perfctl analyze profiles/<run-id>      # -> analysis.json + report.html in the run folder
    """


@main.command(epilog=EXIT_CODES)
@click.option(
    "--tool",
    type=click.Choice(["nsys", "torch", "all", "ncu"]),
    default="nsys",
    show_default=True,
    help="nsys: the Nsight Systems pass. all: nsys, then a clean timing pass with no profiler (the "
    "stage times MFU uses), then a torch.profiler pass (operators per stage). torch: the torch.profiler "
    "pass alone (operators, memory and a Chrome trace; no kernel attribution without nsys). ncu: the "
    "nsys pass, then Nsight Compute on the kernels that hold each stage's time (needs a GPU and ncu).",
)
@click.option("--ncu", "ncu_pass", is_flag=True, help="With --tool all: the Nsight Compute pass last.")
@click.option(
    "--ncu-set",
    type=click.Choice(list(NCU_SETS)),
    default=NCU_SETS[0],
    show_default=True,
    help="What ncu collects per kernel: perfctl (SpeedOfLight, Occupancy, LaunchStats and the FLOP and "
    "DRAM counters; 14 replay passes on an H200) or one of ncu's sets (full: 38 passes), always with "
    "perfctl's counters added.",
)
@click.option(
    "--ncu-kernels",
    type=click.IntRange(1, 200),
    default=10,
    show_default=True,
    help="Kernels profiled per stage at most (the largest by time in the nsys pass).",
)
@click.option(
    "--ncu-coverage",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.8,
    show_default=True,
    help="Stop choosing a stage's kernels once they cover this share of its kernel time.",
)
@click.option(
    "--ncu-instances",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="Instances profiled per launch configuration of each chosen kernel.",
)
@click.option(
    "--ncu-clock",
    type=click.Choice(list(NCU_CLOCKS)),
    default=NCU_CLOCKS[0],
    show_default=True,
    help="ncu's --clock-control: base locks the GPU at its base clock (ncu's default, repeatable "
    "figures; perfctl scales the roofs to that clock), none leaves the clocks as they run.",
)
@click.option(
    "--model",
    default="deepseek-ocr2-tiny",
    show_default=True,
    help="Built-in model name (deepseek-ocr2-tiny, deepseek-ocr2) or a local model folder "
    "(DeepSeek-OCR-2; DeepSeek-OCR v1 with its remote code, see --driver-python; or a causal LM: "
    "prompt-only pages).",
)
@click.option(
    "--random-weights", is_flag=True, help="Run a model folder's architecture with seeded random weights."
)
@click.option(
    "--pages",
    "pages_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of page images, or of .txt prompts for a causal LM [default: the built-in samples].",
)
@click.option(
    "--num-pages", type=int, default=4, show_default=True, help="Use the first N pages of the folder."
)
@click.option("--repeats", type=int, default=1, show_default=True, help="Passes over the pages.")
@click.option(
    "--profile-pages",
    type=int,
    default=None,
    help="The profiled passes (nsys, torch.profiler) run only the first N pages, once each; the clean "
    "timing pass still runs every page x --repeats [default: every pass runs them all].",
)
@click.option(
    "--max-new-tokens",
    type=int,
    default=16,
    show_default=True,
    help="Tokens generated per page (fixed length: EOS is suppressed).",
)
@click.option(
    "--decode",
    type=click.Choice(list(DECODE_MODES)),
    default="eager",
    show_default=True,
    help="The decode loop measured: eager (dynamic KV cache, op by op), static (static KV cache, no "
    "compile) or compiled (static KV cache with transformers' own torch.compile of the decode step, "
    "CUDA graphs; compiled in the warm-up, needs a GPU).",
)
@click.option(
    "--batch-size",
    type=int,
    default=1,
    show_default=True,
    help="Pages per generate call, in order (the last batch holds what is left; prompts padded on the "
    "left, the padding counted as wasted work); --profile-pages must be a multiple of it.",
)
@click.option(
    "--tiles",
    type=int,
    default=0,
    show_default=True,
    help="DeepSeek-OCR-2 local 768² views per page (0-6) besides the global view.",
)
@click.option(
    "--mode",
    default=None,
    help="DeepSeek-OCR v1 resolution mode: tiny, small, base, large or gundam (1024² global view + 640² "
    "tiles on the grid the remote code picks per page) [default: base].",
)
@click.option(
    "--driver-python",
    envvar="PERFCTL_DRIVER_PYTHON",
    default=None,
    help="Python interpreter that runs the driver (every pass) [default: perfctl's own; env "
    "PERFCTL_DRIVER_PYTHON]. DeepSeek-OCR v1 needs one with transformers 4.46.x.",
)
@click.option(
    "--warmup",
    type=int,
    default=1,
    show_default=True,
    help="Warm-up runs of every distinct input shape among the measured pages (prompt length, image "
    "tiles), this many each, before them (no stage ranges inside); 0: none, so the first page of each shape "
    "pays for first use (lazy kernel loading) and the stability verdict says so.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--dtype",
    default="auto",
    show_default=True,
    help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
@profiles_option
@click.option("--run-id", default=None, help="Name of the run folder [default: time-model-random].")
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Exact run folder (overrides --run-id)."
)
@click.option("--force", is_flag=True, help="Replace an existing run folder.")
@click.option("--nsys", "nsys_path", default=None, help="nsys executable [default: $NSYS, then PATH].")
@click.option("--trace", default="cuda,nvtx,osrt", show_default=True, help="nsys --trace value.")
@click.option(
    "--nsys-telemetry",
    is_flag=True,
    help="Also sample NVML (clocks, power, memory) during the nsys pass, into telemetry.jsonl.",
)
@click.option(
    "--calibrate",
    "calibrate_gpu",
    is_flag=True,
    help="After the passes, measure the device's matmul rate (in the run's dtype) and memory bandwidth "
    "(perfctl calibrate) into the run folder's calibration.json; analyze then shows MFU and MBU against "
    "them too. On the CPU, which has no datasheet peak, they are the only peaks.",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="Refuse at once (exit 2) when another nsys session runs on this machine, instead of waiting "
    "for it: another perfctl's nsys pass (the machine-wide nsys lock, $PERFCTL_NSYS_LOCK) or an nsys "
    "perfctl did not start (two sessions at once lose NVTX ranges).",
)
@quiet_option
def capture(
    tool: str,
    model: str,
    random_weights: bool,
    pages_dir: Path | None,
    num_pages: int,
    repeats: int,
    profile_pages: int | None,
    max_new_tokens: int,
    decode: str,
    batch_size: int,
    tiles: int,
    mode: str | None,
    driver_python: str | None,
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
    nsys_telemetry: bool,
    calibrate_gpu: bool,
    no_wait: bool,
    quiet: bool,
    ncu_pass: bool,
    ncu_set: str,
    ncu_kernels: int,
    ncu_coverage: float,
    ncu_instances: int,
    ncu_clock: str,
) -> None:
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
    from perfctl.capture.ncu import NcuSettings
    from perfctl.capture.run import CaptureOptions, capture_run

    progress.configure(quiet)
    opts = CaptureOptions(
        model=model,
        random_weights=random_weights,
        pages_dir=pages_dir,
        num_pages=num_pages,
        repeats=repeats,
        profile_pages=profile_pages,
        max_new_tokens=max_new_tokens,
        decode=decode,
        batch_size=batch_size,
        tiles=tiles,
        mode=mode,
        driver_python=driver_python,
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
        tool=tool,
        nsys_telemetry=nsys_telemetry,
        calibrate=calibrate_gpu,
        no_wait=no_wait,
        ncu=NcuSettings(ncu_set, ncu_kernels, ncu_coverage, ncu_instances, ncu_clock)
        if ncu_pass or tool == "ncu"
        else None,
        argv=["perfctl", *sys.argv[1:]],
    )
    if tool == "all":
        then_ncu = ", then an Nsight Compute pass" if ncu_pass else ""
        click.echo(f"passes: nsys, then a clean timing pass, then a torch.profiler pass{then_ncu}")
    elif tool == "ncu":
        click.echo("passes: nsys, then an Nsight Compute pass on the kernels it chose")
    try:
        result = capture_run(opts)
    except PerfctlError as exc:
        _fail(exc)
    progress.finish()
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
            _fail(exc)
        click.echo(json.dumps(report) if fmt == "json" else render_ncu_report(report))
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
        _fail(exc)
    progress.finish()
    if fmt == "json":
        click.echo(json.dumps(result.analysis, default=str))
    else:
        click.echo(render_text(result.analysis))
    kernels = f", {result.kernels_path}" if result.kernels_path else ""
    click.echo(
        f"wrote {result.json_path}, {result.html_path}{kernels} and {result.summary_path}", err=fmt == "json"
    )


@main.command(epilog=EXIT_CODES)
@click.option(
    "--device", default="cuda", show_default=True, help="What to measure: cuda, cuda:N, or cpu (this CPU)."
)
@click.option(
    "--dtype",
    type=click.Choice(["bfloat16", "float16", "float32"]),
    default=None,
    help="The matmul's dtype [default: bfloat16 on a GPU, float32 on the CPU: what perfctl's runs "
    "compute in].",
)
@format_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the result (JSON) to this file, for `perfctl analyze --calibration FILE`.",
)
def calibrate(device: str, dtype: str | None, fmt: str, out: Path | None) -> None:
    """Measure the dense matmul rate and memory bandwidth this GPU (or this CPU) reaches.

    \b
    A GPU: a few large square GEMMs and a 1 GiB device-to-device copy, warmed up and timed with CUDA
    events (bytes read + written). The CPU (--device cpu): smaller GEMMs and a 256 MiB copy on torch's
    threads, the fastest of a few batches on the host clock; a busy CPU measures lower. Either way a
    measured figure, not a datasheet one. A GPU asked for where torch sees none: one line, exit 2.
    Examples:
      perfctl calibrate --device cuda:0 --out h100.json
      perfctl calibrate --device cpu --out this-cpu.json
      perfctl analyze profiles/<run-id> --calibration h100.json
    """
    from perfctl.commands.calibrate import calibrate as calibrate_command
    from perfctl.report.calibrate import render_calibration_text

    try:
        result = calibrate_command(device, dtype, out)
    except PerfctlError as exc:
        _fail(exc)
    if fmt == "json":
        click.echo(json.dumps(result.to_json()))
    else:
        click.echo(render_calibration_text(result))
    if out is not None:
        click.echo(f"wrote {out}", err=fmt == "json")


@main.command(epilog=EXIT_CODES)
@click.argument("model")
@click.option(
    "--tiles",
    type=int,
    default=None,
    help="DeepSeek-OCR-2 only: local 768² tiles besides the global view (0-6) [default: 0].",
)
@click.option(
    "--mode",
    default=None,
    help="DeepSeek-OCR v1 only: resolution mode tiny, small, base, large, gundam[-N|-WxH], "
    "gundam-m[-N|-WxH] [default: base].",
)
@click.option(
    "--prompt-tokens",
    type=int,
    default=11,
    show_default=True,
    help="Text tokens of the prompt besides the image tokens (a causal LM: the whole prompt).",
)
@click.option("--new-tokens", type=int, default=64, show_default=True, help="Generated tokens.")
@format_option
@click.option("--breakdown", is_flag=True, help="Also FLOPs per kind of block (attention, mlp, ...).")
def flops(
    model: str,
    tiles: int | None,
    mode: str | None,
    prompt_tokens: int,
    new_tokens: int,
    fmt: str,
    breakdown: bool,
) -> None:
    """Analytic FLOPs per stage (vision, prefill, decode) of one page, from the model's config.

    \b
    MODEL: a built-in name (deepseek-ocr2, deepseek-ocr2-tiny, deepseek-ocr), a model folder or a
    config.json (DeepSeek-OCR-2, DeepSeek-OCR v1, or a llama / mistral / qwen2 / qwen3 / qwen2_moe /
    qwen3_moe / mixtral / deepseek_v2 / deepseek_v3 causal LM).
    Examples:
      perfctl flops deepseek-ocr2 --tiles 2 --new-tokens 256 --format json
      perfctl flops deepseek-ocr --mode gundam-6
      perfctl flops /models/Qwen2.5-7B --prompt-tokens 512 --new-tokens 128
    """
    from perfctl.commands.flops import flops as flops_command
    from perfctl.report.flops import render_flops_text

    try:
        data = flops_command(model, tiles, mode, prompt_tokens, new_tokens, breakdown)
    except PerfctlError as exc:
        _fail(exc)
    if fmt == "json":
        click.echo(json.dumps(data))
    else:
        click.echo(render_flops_text(data))


COMPARE_EXIT_CODES = (
    "Exit codes: 0 compared (and the gate passed), 1 --fail-if-slower: a stage got slower beyond noise "
    "by more than PCT, 2 bad input (a one-line reason is printed; also runs of a different model, mode, "
    "device, GPU model, batch size or decode mode without --allow-different), 3 --fail-if-slower cannot "
    "tell: a stage's runs cannot detect a change of PCT (too few pages for their noise; the line says how "
    "many pages per run would)."
)


@main.command(epilog=COMPARE_EXIT_CODES)
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
    try:
        result = compare_paths(
            run_a, run_b, top=top, fail_if_slower_pct=fail_if_slower_pct, allow_different=allow_different
        )
    except PerfctlError as exc:
        _fail(exc)
    progress.finish()
    if fmt == "json":
        click.echo(json.dumps(result))
    elif fmt == "md":
        click.echo(render_compare_markdown(result), nl=False)
    elif fmt == "html":
        click.echo(render_compare_html(result), nl=False)
    else:
        click.echo(render_compare_text(result))
    verdict = result.get("gate")
    if verdict is not None and verdict["failed"]:
        click.echo(f"perfctl: {gate_line(result)}", err=True)
        sys.exit(verdict["exit_code"])


@main.command(epilog="Exit codes: 0 listed (none is fine), 2 bad input (a one-line reason is printed).")
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
        _fail(exc)
    if fmt == "json":
        click.echo(json.dumps(found))
    else:
        filtered = any(x is not None for x in (model, status, gpu, since))
        click.echo(render_runs_text(found, profiles_root, filtered))


@main.command(epilog="Exit codes: 0 copied, 2 bad input (a one-line reason is printed).")
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
        _fail(exc)
    for run, folder in copied:
        click.echo(str(folder))
        click.echo(f"{run.name}: {run.label['label']}; next: perfctl analyze {folder}", err=True)


# --- doctor and open (kept together at the end of the file) ---


@main.command(epilog="Exit codes: 0 no check failed (warnings allowed), 1 a check failed, 2 bad input.")
@click.option(
    "--nsys", "nsys_path", default=None, help="nsys executable to check [default: $NSYS, then PATH]."
)
@format_option
@click.option("--skip-capture", is_flag=True, help="Leave out the live self-test capture under nsys.")
@quiet_option
def doctor(nsys_path: str | None, fmt: str, skip_capture: bool, quiet: bool) -> None:
    """Check that this machine can make a trustworthy capture, and say how to fix what is missing.

    \b
    Checks (each ok, warn, fail or skip, with what was found and the fix):
      nsys          found, version, its importer (QdstrmImporter), the CUPTI it carries
      nvtx          the nvtx package's version against this nsys
      torch, cuda   torch's version and build; a CUDA GPU it can use
      transformers  its version, and whether it has deepseek_ocr2
      nvml          nvidia-ml-py and the driver (a warning on a machine without NVIDIA GPU)
      gpu_peak      each GPU in perfctl's dense-peak table (else MFU is unknown)
      selftest      a tiny program under nsys profile, its export read back: NVTX ranges
                    arrive, and on a GPU its kernels too
    \b
    Examples:
      perfctl doctor
      perfctl doctor --nsys /opt/nsys/bin/nsys --format json
      perfctl doctor --skip-capture
    """
    from perfctl.commands.doctor import exit_code, report_json, run_checks
    from perfctl.report.doctor import render_doctor_text

    progress.configure(quiet)
    results = run_checks(nsys_path, skip_capture=skip_capture)
    if fmt == "json":
        click.echo(json.dumps(report_json(results), default=str))
    else:
        click.echo(render_doctor_text(results))
    sys.exit(exit_code(results))


@main.command(
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
        _fail(exc)
    click.echo(str(outcome.report))
    if outcome.ui is not None:
        click.echo(f"opened in {outcome.ui} (pid {outcome.pid})", err=True)
    else:
        click.echo(f"{outcome.reason}: open the report above in Nsight Systems yourself", err=True)
