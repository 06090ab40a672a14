"""Run a workload file under whatever profiler launched us, marking stages with NVTX.

    python -m perfctl.driver RUN_DIR/workload.json

The workload file (written by `perfctl capture`) names the model, pages, repeats and generation
settings, and where to write: per-page records (JSON lines, appended as each page finishes so that a
crash keeps the pages already done), `driver-info.json` (versions, device, model facts; once the
pages are done, `nvtx_ranges_pushed`: how many NVTX ranges the driver handed to nvtx) and the log.
Exit status: 0 ok, 2 the workload file is not a perfctl workload (`perfctl.workloads.workload`),
3 NVTX ranges would be invisible to this nsys, 1 anything else.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from perfctl.driver.decode_loop import CacheProbe, CompileWatch
from perfctl.driver.markers import NvtxEmitter, RangeEmitter, StageMarker
from perfctl.driver.nvtx_compat import installed_nvtx_version, nvtx_problem
from perfctl.driver.stage_probes import (
    CudaStageProbe,
    host_cpu_delta,
    host_cpu_sample,
    host_speed_probe,
)
from perfctl.driver.telemetry import TelemetrySampler
from perfctl.driver.torch_pass import RecordFunctionEmitter, finish_profiler, start_profiler
from perfctl.errors import BadInput
from perfctl.files import write_json_atomic
from perfctl.flops import resolved_config_json
from perfctl.records import append_page_record
from perfctl.run_folder import RESOLVED_CONFIG_FILE
from perfctl.stages import DECODE_STEP_SPAN, LOAD, PAGE, STAGES, WARMUP
from perfctl.workloads.batching import batch_fields, batches_of, collate, pad_token_id
from perfctl.workloads.decode import EAGER, cpu_refusal, generate_args
from perfctl.workloads.loader import load_workload
from perfctl.workloads.shapes import describe_shape, input_shape, plan_warmup
from perfctl.workloads.workload import Workload

EXIT_NVTX_INVISIBLE = 3


def _redirect_output(log_path: Path | None) -> None:
    """Send this process's stdout/stderr (C libraries included) to the run's driver log."""
    if log_path is None:
        return
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _log(message: str) -> None:
    print(f"[perfctl.driver {time.strftime('%H:%M:%S')}] {message}", flush=True)


def resolve_device_dtype(device: str, dtype: str) -> tuple[str, str]:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            f"device '{device}' asked for, but this torch ({torch.__version__}) sees no CUDA GPU"
        )
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return device, dtype


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def device_identity(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"device": device, "cpu": platform.processor() or platform.machine()}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(
            {
                "gpu_name": props.name,
                "gpu_capability": f"{props.major}.{props.minor}",
                "gpu_sm_count": props.multi_processor_count,
                "gpu_memory_bytes": props.total_memory,
                "cuda_runtime": torch.version.cuda,
            }
        )
    return info


def _device_index(device: str) -> int:
    return int(device.split(":")[1]) if ":" in device else 0


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def stage_marker(
    emitter: RangeEmitter, device: str, sync_stage_edges: bool
) -> tuple[StageMarker, CudaStageProbe | None]:
    """The driver's stage marker and, where it has one, its CUDA stage probe. The clean timing pass
    (`sync_stage_edges`) waits for the GPU at every stage edge, so its stage clocks are true, and there
    CUDA events time each stage on the GPU's clock and the allocator's peak per stage is read; the nsys
    pass does neither, so as not to change the timeline it records. scripts/instrumentation_overhead.py
    measures what these cost with this same function."""
    sync = (lambda: _synchronize(device)) if sync_stage_edges else None
    probe = CudaStageProbe(device) if sync is not None and device.startswith("cuda") else None
    return StageMarker(emitter, sync=sync, probe=probe), probe


def run(workload: Workload) -> int:
    problem = nvtx_problem(installed_nvtx_version(), os.environ.get("PERFCTL_NSYS_VERSION"))
    if problem:
        _log(f"error: {problem}")
        return EXIT_NVTX_INVISIBLE

    import torch

    device, dtype = resolve_device_dtype(workload.device, workload.dtype)
    refusal = cpu_refusal(workload.decode, device.split(":")[0])  # --device auto on a machine with no GPU
    if refusal is not None:
        _log(f"error: {refusal}")
        return BadInput.exit_code
    spec = workload.model
    outputs = workload.outputs
    nvtx_emitter = NvtxEmitter()
    emitter: RangeEmitter = nvtx_emitter
    _log(
        f"loading {spec.name} ({'random weights' if spec.random_weights else 'weights'}) on {device} {dtype}"
    )
    emitter.push(LOAD)
    t0 = time.perf_counter()
    work = load_workload(spec, device, dtype, workload.seed, workload.tiles, workload.mode)
    _synchronize(device)
    emitter.pop()
    load_s = time.perf_counter() - t0

    pages = list(workload.pages)
    prepared = [work.prepare(p) for p in pages]
    # what one generate call runs: a page, or with --batch-size a batch of pages (workloads.batching)
    units: list[Any] = prepared
    batches = batches_of(len(pages), workload.batch_size)
    if workload.batch_size > 1:
        pad = pad_token_id(work.model.config)
        units = [collate([prepared[i] for i in batch], pad) for batch in batches]
    # the warm-up runs every distinct input shape of the measured generate calls (workloads.shapes:
    # first use of a shape loads kernels lazily), --warmup rounds of each
    plan = plan_warmup([input_shape(unit.inputs) for unit in units], workload.warmup)
    info = {
        **device_identity(device),
        "dtype": dtype,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "nvtx": installed_nvtx_version(),
        "nvtx_enabled": nvtx_emitter.enabled,  # False: NVTX_DISABLE is set, no range can arrive
        "parameters": sum(p.numel() for p in work.model.parameters()),
        "attn_implementation": getattr(work.model.config, "_attn_implementation", None),
        "image_tokens_per_page": prepared[0].image_tokens,
        "local_tiles_per_page": work.tiles,
        **({"mode": workload.mode, "flops_mode": prepared[0].flops_mode} if prepared[0].flops_mode else {}),
        "prompt_tokens_per_page": prepared[0].prompt_tokens,
        "prompt_source": work.prompt_source,
        "load_seconds": round(load_s, 3),
        "decode_ranges_per_page": workload.max_new_tokens - 1,
        **({"decode": workload.decode} if workload.decode != EAGER else {}),
        **({"batch_size": workload.batch_size, "batches": batches} if workload.batch_size > 1 else {}),
        **plan.to_json(),
    }
    write_json_atomic(outputs.driver_info, info)
    # the config as this transformers resolved it, so that analysis reads it without transformers
    write_json_atomic(
        outputs.driver_info.with_name(RESOLVED_CONFIG_FILE), resolved_config_json(work.model.config)
    )
    _log(
        f"model: {info['parameters'] / 1e6:.1f} M parameters, {prepared[0].prompt_tokens} prompt tokens/page"
    )
    unit = "pages" if workload.batch_size == 1 else "batches"
    for index, shape in enumerate(plan.shapes):
        _log(f"input shape {index} ({describe_shape(shape)}): {unit} {plan.pages_of(index)}")
    if plan.not_warmed_up():
        _log(f"no warm-up of the shapes of {unit} {plan.not_warmed_up()}: their first runs include first use")

    torch_folder = outputs.torch_profiler  # the torch.profiler pass
    if torch_folder is not None:
        emitter = RecordFunctionEmitter(emitter)
    marker, probe = stage_marker(emitter, device, workload.sync_stage_edges)
    sampler = None
    if outputs.telemetry is not None:  # the clean timing pass samples NVML; nothing else perturbs it
        if device.startswith("cuda"):
            sampler = TelemetrySampler(outputs.telemetry, _device_index(device))
            why_not = sampler.start()
            info["telemetry"] = why_not or f"NVML, every {sampler.period_s * 1000:.0f} ms"
            sampler = None if why_not else sampler
        else:
            info["telemetry"] = "absent: the workload runs on the CPU"
        write_json_atomic(outputs.driver_info, info)
    decoder, vision = work.stage_modules()
    n_new = workload.max_new_tokens
    marker.attach(work.model, decoder, vision, new_tokens=n_new)
    cache_probe = CacheProbe()  # the KV cache class of the first generate: what transformers used
    cache_probe.attach(work.model)
    # Fixed-length generation: every page does the same amount of work, so stages are comparable
    # across pages and runs (random weights would otherwise stop at an arbitrary EOS).
    gen_args: dict[str, Any] = {"max_new_tokens": n_new, "min_new_tokens": n_new, "do_sample": False}
    gen_args |= generate_args(workload.decode)
    gen_args["logits_processor"] = marker.logits_processors()  # marks each decode step, token to token
    # static / compiled: dynamo's counters around every generate (compilation belongs in the warm-up)
    compile_watch = CompileWatch() if workload.decode != EAGER else None

    records = outputs.records

    shapes_run: set[int] = set()  # the shapes this process has run a generate of

    def run_page(index: int, record: dict[str, Any], warmup: bool) -> None:
        """One generate call of units[index] (a page, or a batch of pages), recorded."""
        page = units[index]
        record |= {"page_index": index} if workload.batch_size == 1 else {"batch_index": index}
        shape = plan.shape_of_page[index]
        record["input_shape"] = plan.shapes[shape]
        if not warmup:  # the first generate of its shape in this process: no warm-up ran this shape
            record["shape_first_seen"] = shape not in shapes_run
        shapes_run.add(shape)
        speed = host_speed_probe() if probe is not None else None  # timing pass only, between pages
        cpu_before = host_cpu_sample()
        dynamo_before = compile_watch.before() if compile_watch is not None else None
        marker.begin_page(ranges=not warmup)
        start = time.perf_counter_ns()
        out = work.model.generate(**page.inputs, **gen_args)
        _synchronize(device)
        times = marker.end_page()
        wall = time.perf_counter_ns() - start
        if compile_watch is not None and dynamo_before is not None:
            record |= compile_watch.after(dynamo_before, record, shape, wall, warmup)
        record["host_cpu"] = host_cpu_delta(cpu_before, host_cpu_sample())
        if speed is not None:
            record["host_cpu"]["speed_probe_ns"] = speed
        if probe is not None:
            gpu = probe.collect()
            record |= {
                "stage_gpu_ns": gpu.gpu_ns,
                "decode_step_gpu_ns": gpu.decode_step_gpu_ns,
                "stage_peak_allocated_bytes": gpu.peak_allocated_bytes,
                "allocated_at_start_bytes": gpu.allocated_at_start_bytes,
            }
        record |= (
            {
                "page": pages[index].name,
                "prompt_tokens": page.prompt_tokens,
                "image_tokens": page.image_tokens,
                **({"flops_mode": page.flops_mode} if page.flops_mode else {}),
            }
            if workload.batch_size == 1
            else batch_fields(page, [pages[i] for i in batches[index]], batches[index])
        )
        record |= {
            "new_tokens": int(out.shape[1]) - page.prompt_tokens,
            "decode_steps": times.decode_steps,
            "wall_ns": wall,
            "started_ns": times.started_at,
            "stage_wall_ns": times.wall_ns,
            "first_token_ns": times.first_token_ns,
            "decode_step_ns": times.decode_step_ns,
            "hooks_ns": times.hooks_ns,
        }
        append_page_record(records, record)
        what = f"page {index} ({pages[index].name})" if workload.batch_size == 1 else f"batch {index}"
        _log(
            f"{'warm-up ' if warmup else ''}{what}: {wall / 1e6:.1f} ms"
            + (" (first of its input shape)" if record.get("shape_first_seen") else "")
        )

    with torch.inference_mode():
        # warm-up runs: recorded (marked, and left out of every statistic), no stage ranges
        for w, index in enumerate(plan.runs):
            emitter.push(WARMUP, w)
            run_page(index, {"warmup": True, "sequence": -1 - w}, True)
            emitter.pop()
        sequence = 0
        profiler = start_profiler(device) if torch_folder is not None else None  # after warm-up
        for repeat in range(workload.repeats):
            for index in range(len(units)):
                # one page range per generate call: with --batch-size, around the whole batch
                emitter.push(PAGE, sequence)
                run_page(index, {"sequence": sequence, "repeat": repeat}, False)
                emitter.pop()
                sequence += 1
        if profiler is not None and torch_folder is not None:
            seconds = finish_profiler(profiler, torch_folder, list(STAGES))
            steps = ", ".join(f"{step} {s:.1f} s" for step, s in seconds.items())
            _log(f"torch.profiler: operators and trace written to {torch_folder} ({steps})")
    marker.detach()
    cache_probe.detach()
    info["kv_cache"] = cache_probe.cache_class
    info["decode_step_span"] = DECODE_STEP_SPAN  # what a decode step's range and clocks cover
    # transformers compiles the forward only when it decided to (generate's auto-compile criteria):
    # get_compiled_call keeps the compiled callable on the model
    info["compiled_forward"] = hasattr(work.model, "_compiled_call")
    if compile_watch is not None:
        info["compile"] = compile_watch.summary()
    if sampler is not None:
        sampler.stop()
    # the ranges this driver handed to nvtx (load, warm-up, pages, stages): the capture's evidence
    # should none arrive in the export
    info["nvtx_ranges_pushed"] = nvtx_emitter.pushed
    write_json_atomic(outputs.driver_info, info)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        workload = Workload.load(Path(args[0]))
    except BadInput as exc:  # before the log is known: one line on stderr, perfctl's exit status for it
        print(f"perfctl.driver: error: {exc}", file=sys.stderr)
        return exc.exit_code
    _redirect_output(workload.outputs.log)
    try:
        return run(workload)
    except Exception:  # the log must say why; the capture reads our exit status
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
