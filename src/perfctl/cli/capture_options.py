"""The options of `perfctl capture` as one stack that any command making captures reuses.

`capture_options(exclude=...)` gives a command those options, with capture's names, defaults, help
and order, less the ones it decides itself (a sweep: --out, --run-id, --force, --batch-size per
point); `capture_options_from` builds one capture's CaptureOptions from their parsed values.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from perfctl.cli.options import profiles_option, quiet_option
from perfctl.ncu_rep.metrics import NCU_CLOCKS, NCU_SETS
from perfctl.workloads.decode import DECODE_MODES

if TYPE_CHECKING:  # perfctl.capture.run is imported in the functions that use it, for a fast --help
    from perfctl.capture.run import CaptureOptions

OptionDecorator = Callable[[Callable[..., Any]], Callable[..., Any]]
CommandFunction = TypeVar("CommandFunction", bound=Callable[..., Any])


def _option(*param_decls: str, **attrs: Any) -> tuple[str, OptionDecorator]:
    """click.option, paired with its flag (the first declaration) by which capture_options excludes it."""
    return param_decls[0], click.option(*param_decls, **attrs)


# Every capture option, in the order `perfctl capture --help` lists them.
CAPTURE_OPTIONS: tuple[tuple[str, OptionDecorator], ...] = (
    _option(
        "--tool",
        type=click.Choice(["nsys", "torch", "all", "ncu"]),
        default="nsys",
        show_default=True,
        help="nsys: the Nsight Systems pass. all: nsys, then a clean timing pass with no profiler (the "
        "stage times MFU uses), then a torch.profiler pass (operators per stage). torch: the torch.profiler "
        "pass alone (operators, memory and a Chrome trace; no kernel attribution without nsys). ncu: the "
        "nsys pass, then Nsight Compute on the kernels that hold each stage's time (needs a GPU and ncu).",
    ),
    _option("--ncu", "ncu_pass", is_flag=True, help="With --tool all: the Nsight Compute pass last."),
    _option(
        "--ncu-set",
        type=click.Choice(list(NCU_SETS)),
        default=NCU_SETS[0],
        show_default=True,
        help="What ncu collects per kernel: perfctl (SpeedOfLight, Occupancy, LaunchStats and the FLOP and "
        "DRAM counters; 14 replay passes on an H200) or one of ncu's sets (full: 38 passes), always with "
        "perfctl's counters added.",
    ),
    _option(
        "--ncu-kernels",
        type=click.IntRange(1, 200),
        default=10,
        show_default=True,
        help="Kernels profiled per stage at most (the largest by time in the nsys pass).",
    ),
    _option(
        "--ncu-coverage",
        type=click.FloatRange(0.0, 1.0, min_open=True),
        default=0.8,
        show_default=True,
        help="Stop choosing a stage's kernels once they cover this share of its kernel time.",
    ),
    _option(
        "--ncu-instances",
        type=click.IntRange(1, 100),
        default=1,
        show_default=True,
        help="Instances profiled per launch configuration of each chosen kernel.",
    ),
    _option(
        "--ncu-clock",
        type=click.Choice(list(NCU_CLOCKS)),
        default=NCU_CLOCKS[0],
        show_default=True,
        help="ncu's --clock-control: base locks the GPU at its base clock (ncu's default, repeatable "
        "figures; perfctl scales the roofs to that clock), none leaves the clocks as they run.",
    ),
    _option(
        "--model",
        default="deepseek-ocr2-tiny",
        show_default=True,
        help="Built-in model name (deepseek-ocr2-tiny, deepseek-ocr2) or a local model folder "
        "(DeepSeek-OCR-2; DeepSeek-OCR v1 with its remote code, see --driver-python; or a causal LM: "
        "prompt-only pages).",
    ),
    _option(
        "--random-weights", is_flag=True, help="Run a model folder's architecture with seeded random weights."
    ),
    _option(
        "--pages",
        "pages_dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Folder of page images, or of .txt prompts for a causal LM [default: the built-in samples].",
    ),
    _option(
        "--num-pages", type=int, default=4, show_default=True, help="Use the first N pages of the folder."
    ),
    _option("--repeats", type=int, default=1, show_default=True, help="Passes over the pages."),
    _option(
        "--profile-pages",
        type=int,
        default=None,
        help="The profiled passes (nsys, torch.profiler) run only the first N pages, once each; the clean "
        "timing pass still runs every page x --repeats [default: every pass runs them all].",
    ),
    _option(
        "--max-new-tokens",
        type=int,
        default=16,
        show_default=True,
        help="Tokens generated per page (fixed length: EOS is suppressed).",
    ),
    _option(
        "--decode",
        type=click.Choice(list(DECODE_MODES)),
        default="eager",
        show_default=True,
        help="The decode loop measured: eager (dynamic KV cache, op by op), static (static KV cache, no "
        "compile) or compiled (static KV cache with transformers' own torch.compile of the decode step, "
        "CUDA graphs; compiled in the warm-up, needs a GPU).",
    ),
    _option(
        "--batch-size",
        type=int,
        default=1,
        show_default=True,
        help="Pages per generate call, in order (the last batch holds what is left; prompts padded on the "
        "left, the padding counted as wasted work); --profile-pages must be a multiple of it.",
    ),
    _option(
        "--tiles",
        type=int,
        default=0,
        show_default=True,
        help="DeepSeek-OCR-2 local 768² views per page (0-6) besides the global view.",
    ),
    _option(
        "--mode",
        default=None,
        help="DeepSeek-OCR v1 resolution mode: tiny, small, base, large or gundam (1024² global view + 640² "
        "tiles on the grid the remote code picks per page) [default: base].",
    ),
    _option(
        "--driver-python",
        envvar="PERFCTL_DRIVER_PYTHON",
        default=None,
        help="Python interpreter that runs the driver (every pass) [default: perfctl's own; env "
        "PERFCTL_DRIVER_PYTHON]. DeepSeek-OCR v1 needs one with transformers 4.46.x.",
    ),
    _option(
        "--warmup",
        type=int,
        default=1,
        show_default=True,
        help="Warm-up runs of every distinct input shape among the measured pages (prompt length, image "
        "tiles), this many each, before them (no stage ranges inside); 0: none, so the first page of each "
        "shape pays for first use (lazy kernel loading) and the stability verdict says so.",
    ),
    _option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
    _option(
        "--dtype",
        default="auto",
        show_default=True,
        help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16.",
    ),
    _option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights."),
    ("--profiles", profiles_option),
    _option("--run-id", default=None, help="Name of the run folder [default: time-model-random]."),
    _option(
        "--out", type=click.Path(path_type=Path), default=None, help="Exact run folder (overrides --run-id)."
    ),
    _option("--force", is_flag=True, help="Replace an existing run folder."),
    _option("--nsys", "nsys_path", default=None, help="nsys executable [default: $NSYS, then PATH]."),
    _option("--trace", default="cuda,nvtx,osrt", show_default=True, help="nsys --trace value."),
    _option(
        "--nsys-telemetry",
        is_flag=True,
        help="Also sample NVML (clocks, power, memory) during the nsys pass, into telemetry.jsonl.",
    ),
    _option(
        "--calibrate",
        "calibrate_gpu",
        is_flag=True,
        help="After the passes, measure the device's matmul rate (in the run's dtype) and memory bandwidth "
        "(perfctl calibrate) into the run folder's calibration.json; analyze then shows MFU and MBU against "
        "them too. On the CPU, which has no datasheet peak, they are the only peaks.",
    ),
    _option(
        "--no-wait",
        is_flag=True,
        help="Refuse at once (exit 2) when another nsys session runs on this machine, instead of waiting "
        "for it: another perfctl's nsys pass (the machine-wide nsys lock, $PERFCTL_NSYS_LOCK) or an nsys "
        "perfctl did not start (two sessions at once lose NVTX ranges).",
    ),
    ("--quiet", quiet_option),
)


def capture_options(exclude: Set[str] = frozenset()) -> Callable[[CommandFunction], CommandFunction]:
    """A decorator that gives a command capture's options (CAPTURE_OPTIONS, in that order), less those
    whose flag is in `exclude`, e.g. {"--out", "--run-id", "--force", "--batch-size"}.

    A flag in `exclude` that is no capture option raises ValueError: a misspelt one would otherwise
    leave the option in silently."""
    unknown = set(exclude) - {flag for flag, _ in CAPTURE_OPTIONS}
    if unknown:
        raise ValueError(f"not capture options: {', '.join(sorted(unknown))}")
    kept = [option for flag, option in CAPTURE_OPTIONS if flag not in exclude]

    def apply(command: CommandFunction) -> CommandFunction:
        # Click lists a command's options top-down in the order they are written as decorators, i.e.
        # the one applied last comes first: so apply them from the last
        for option in reversed(kept):
            command = cast("CommandFunction", option(command))
        return command

    return apply


def capture_options_from(params: dict[str, Any], argv: list[str]) -> CaptureOptions:
    """The CaptureOptions of one capture from parsed capture options.

    params: the value of every capture option under Click's parameter name, as a command decorated
    with capture_options() receives them (a missing one is a KeyError); a command that excluded some
    puts its own values for them in. Other keys (the command's own options, --quiet) are not read.
    argv: the command line the run folder's manifest records."""
    from perfctl.capture.ncu import NcuSettings
    from perfctl.capture.run import CaptureOptions

    tool = params["tool"]
    # --ncu-* settings only matter where an Nsight Compute pass runs
    ncu = (
        NcuSettings(
            params["ncu_set"],
            params["ncu_kernels"],
            params["ncu_coverage"],
            params["ncu_instances"],
            params["ncu_clock"],
        )
        if params["ncu_pass"] or tool == "ncu"
        else None
    )
    return CaptureOptions(
        model=params["model"],
        random_weights=params["random_weights"],
        pages_dir=params["pages_dir"],
        num_pages=params["num_pages"],
        repeats=params["repeats"],
        profile_pages=params["profile_pages"],
        max_new_tokens=params["max_new_tokens"],
        decode=params["decode"],
        batch_size=params["batch_size"],
        tiles=params["tiles"],
        mode=params["mode"],
        driver_python=params["driver_python"],
        warmup=params["warmup"],
        device=params["device"],
        dtype=params["dtype"],
        seed=params["seed"],
        profiles_root=params["profiles_root"],
        run_id=params["run_id"],
        out=params["out"],
        force=params["force"],
        nsys=params["nsys_path"],
        trace=params["trace"],
        tool=tool,
        nsys_telemetry=params["nsys_telemetry"],
        calibrate=params["calibrate_gpu"],
        no_wait=params["no_wait"],
        ncu=ncu,
        argv=argv,
    )
