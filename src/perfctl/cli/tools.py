"""Commands about this machine and a model, with no run folder: `perfctl doctor`, `perfctl calibrate`
and `perfctl flops`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from perfctl import progress
from perfctl.cli.errors import EXIT_CODES, fail
from perfctl.cli.options import format_option, quiet_option
from perfctl.errors import PerfctlError


@click.command(epilog="Exit codes: 0 no check failed (warnings allowed), 1 a check failed, 2 bad input.")
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


@click.command(epilog=EXIT_CODES)
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
        fail(exc)
    if fmt == "json":
        click.echo(json.dumps(result.to_json()))
    else:
        click.echo(render_calibration_text(result))
    if out is not None:
        click.echo(f"wrote {out}", err=fmt == "json")


@click.command(epilog=EXIT_CODES)
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
        fail(exc)
    if fmt == "json":
        click.echo(json.dumps(data))
    else:
        click.echo(render_flops_text(data))
