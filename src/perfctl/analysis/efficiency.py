"""MFU per stage and MBU for decode, for a run folder with a clean timing pass.

MFU = analytic FLOPs of the stage (perfctl.flops) / (the stage's time in the clean timing pass ×
the GPU's dense peak for the compute dtype (perfctl.hardware.peaks)). MBU for decode = bytes one
step must read (active weights + KV cache) / the step's clean time / the GPU's peak memory
bandwidth. With a calibration (`perfctl calibrate`: the bf16 matmul rate and copy bandwidth measured
on the GPU), the same ratios against those measured ceilings too. Every input is returned beside the
result so the number can be checked by hand; a missing input (no timing pass, an unknown GPU, a CPU
run, a model whose config or FLOP model is not available) gives null or `available: false` with the
reason, never a guess, and never stops the rest of the analysis. The profiler overhead is the ratio
of the stage times under nsys to the clean ones.

FLOPs are counted per clean page from its own prompt length (text prompts differ in length), so a
stage's FLOPs per page are the mean over the clean pages, as its time is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perfctl.analysis.repeatability import CleanPass
from perfctl.analysis.result_passes import Efficiency, EfficiencyStage, MeasuredCeiling
from perfctl.errors import BadInput
from perfctl.flops.decoder import DecoderShape, decode_step_bytes, extra_expert_bytes
from perfctl.hardware.calibrate import Calibration
from perfctl.records import input_index, stage_time_key
from perfctl.run_folder import MODEL_CONFIG_FILE, RESOLVED_CONFIG_FILE, TIMING_PASS
from perfctl.stages import DECODE, PREFILL, STAGES, VISION

BYTES_PER_VALUE = {"bfloat16": 2, "float16": 2, "float32": 4}
CPU_PEAK_UNKNOWN = (
    "unknown: the clean pass ran on the CPU, which has no datasheet peak here; `perfctl calibrate "
    "--device cpu` (or capture --calibrate) measures this CPU's"
)


def clean_stage_times(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean per page of the clean pass: stage times (ns), page wall time and decode steps.

    On a GPU the stage times are CUDA-event times (the GPU's clock from the stage's first to its last
    work, the stage's edges synchronized); runs without them (CPU, older captures) use the host clock
    between the synchronized edges, which it equals to within the synchronize call's latency."""
    n = len(records)
    key = stage_time_key(records)
    return {
        "pages": n,
        "time_source": "cuda_events" if key == "stage_gpu_ns" else "host_clock",
        "stage_ns": {s: sum(r[key].get(s, 0) for r in records) / n for s in STAGES},
        "page_ns": sum(r["wall_ns"] for r in records) / n,
        "decode_steps": sum(r["decode_steps"] for r in records) / n,
    }


def model_config_source(run_dir: Path | None, manifest: dict[str, Any]) -> tuple[str, str]:
    """(what to read the config from, how to say so): the config the clean pass's transformers
    resolved (read without importing transformers), else the copy in the run folder, else the
    built-in name or the folder the manifest names (runs made before capture kept a copy)."""
    resolved = run_dir / TIMING_PASS / RESOLVED_CONFIG_FILE if run_dir is not None else None
    if resolved is not None and resolved.is_file():
        said = f"{TIMING_PASS}/{RESOLVED_CONFIG_FILE} (as the clean pass's transformers resolved it)"
        return str(resolved), said
    if run_dir is not None and (run_dir / MODEL_CONFIG_FILE).is_file():
        return str(run_dir / MODEL_CONFIG_FILE), f"{MODEL_CONFIG_FILE} in the run folder"
    model = (manifest.get("workload") or {}).get("model") or {}
    if model.get("builtin"):
        return str(model.get("name")), f"built-in config '{model.get('name')}' (no copy in the run folder)"
    folder = str(model.get("folder", ""))
    return folder, f"model folder {folder} (no copy in the run folder)"


Row = tuple[int, str | None, int]  # one page of a generate call: (prompt tokens, v1 mode, image tokens)


def record_rows(
    record: dict[str, Any], info: dict[str, Any], workload: dict[str, Any], v1: bool
) -> list[Row]:
    """The pages one record's generate call ran, each at its own prompt length (with --batch-size a
    batch's rows, their padding left out: padding is wasted work, never useful FLOPs)."""
    image = int(info.get("image_tokens_per_page", 0))
    rows: list[dict[str, Any]] = record["rows"] if isinstance(record.get("rows"), list) else [record]
    prompt = int(info.get("prompt_tokens_per_page", 0))
    return [
        (
            int(row.get("prompt_tokens", prompt)),
            # DeepSeek-OCR v1 pages carry their own mode and image tokens (Gundam's tile grid follows
            # each page's shape); other pages share the run's
            str(row.get("flops_mode", workload.get("mode"))) if v1 else None,
            int(row.get("image_tokens", image)),
        )
        for row in rows
    ]


def _page_flops(
    model_ref: str, records: list[dict[str, Any]], info: dict[str, Any], workload: dict[str, Any]
) -> tuple[dict[str, float], dict[str, Any], DecoderShape, list[list[int]], float]:
    """Mean FLOPs per stage over the clean generate calls (a page each, or a batch's rows summed), one
    page's FLOP report (tokens, conventions), the decoder's shape, each call's rows' prompt lengths
    (image tokens included), and the mean FLOPs per call spent on padding (a batch's rows computed at
    the longest row's length)."""
    from perfctl.flops import OCR1, OCR2, count_flops, read_model_config

    if not model_ref:
        raise BadInput("the run's manifest names no model")
    config = read_model_config(model_ref)
    tiles = int(workload.get("tiles", 0)) if config.family == OCR2 else None
    new_tokens = int(workload.get("max_new_tokens", 0))
    calls = [record_rows(r, info, workload, config.family == OCR1) for r in records]
    padded = [
        [(int(r.get("prompt_tokens", row[0])), row[1], row[2]) for row in rows]
        for r, rows in zip(records, calls, strict=True)
    ]
    reports = {
        row: count_flops(
            model_ref,
            tiles=tiles,
            mode=row[1],
            prompt_tokens=row[0] - row[2],
            new_tokens=new_tokens,
            config=config,
        )
        for row in dict.fromkeys(row for rows in (*calls, *padded) for row in rows)
    }
    per_row = {row: report.to_json()["flops"] for row, report in reports.items()}
    stages = (VISION, PREFILL, DECODE)
    mean = {s: sum(per_row[row][s] for rows in calls for row in rows) / len(calls) for s in stages}
    padding = sum(
        per_row[p][s] - per_row[row][s]
        for own, pad in zip(calls, padded, strict=True)
        for row, p in zip(own, pad, strict=True)
        for s in stages
    ) / len(calls)
    first = reports[calls[0][0]]
    return mean, first.to_json(), first.decoder, [[row[0] for row in rows] for rows in calls], padding


def analytic_stage_flops(
    run_dir: Path, manifest: dict[str, Any], records: list[dict[str, Any]], info: dict[str, Any]
) -> dict[str, float] | None:
    """The FLOP model's mean FLOPs per page per stage over `records` (a pass's pages), or None when
    the model or its config is unknown (what `efficiency` says as its reason)."""
    measured = [r for r in records if not r.get("warmup")]
    if not measured:
        return None
    model_ref, _ = model_config_source(run_dir, manifest)
    try:
        return _page_flops(model_ref, measured, info, manifest.get("workload") or {})[0]
    except BadInput:
        return None


def efficiency(
    clean_pass: CleanPass | None,
    manifest: dict[str, Any],
    stages_under_nsys: dict[str, float],
    peak_tflops: float | None = None,
    bandwidth_gbs: float | None = None,
    run_dir: Path | None = None,
    calibration: tuple[Calibration, str] | None = None,
    nsys_page_indices: set[int] | None = None,
) -> Efficiency:
    """The `efficiency` block of analysis.json (see docs/analysis-json.md). `calibration`: a measured
    ceiling and where it came from (a file name). `nsys_page_indices`: which of the workload's pages
    the nsys pass ran (all of them, or the first few with --profile-pages): the profiler overhead
    compares those pages' times with the same pages' clean times."""
    from perfctl.hardware.peaks import resolve_bandwidth, resolve_peak

    if clean_pass is None:
        return {"available": False, "reason": "no clean timing pass in this run (capture with --tool all)"}
    clean = clean_stage_times(clean_pass.records)
    same_pages = [r for r in clean_pass.records if input_index(r) in (nsys_page_indices or set())]
    clean_of_nsys_pages = clean_stage_times(same_pages) if same_pages else clean
    info = clean_pass.info
    workload = manifest.get("workload") or {}
    model_ref, config_source = model_config_source(run_dir, manifest)
    try:
        stage_flops, flops, shape, calls, padding_flops = _page_flops(
            model_ref, clean_pass.records, info, workload
        )
    except BadInput as exc:
        return {"available": False, "reason": f"FLOPs unknown: {exc}", "model_config": config_source}
    dtype = str(info.get("dtype", ""))
    on_gpu = str(info.get("device", "")).startswith("cuda")
    peak = resolve_peak(info.get("gpu_name"), info.get("gpu_sm_count"), dtype, peak_tflops)
    bandwidth = resolve_bandwidth(info.get("gpu_name"), info.get("gpu_sm_count"), bandwidth_gbs)
    host = manifest.get("host") or {}
    measured = measured_ceiling(calibration, info, host) if calibration is not None else None
    measured_tflops = measured.get("matmul_tflops") if measured else None
    # A CPU has no datasheet row here: its only peaks are the ones measured on it (perfctl calibrate
    # --device cpu, which capture --calibrate runs on a CPU run), and MFU/MBU then divide by those.
    bandwidth_value, bandwidth_text = bandwidth.value, bandwidth.describe()
    if on_gpu:
        peak_value, peak_text = peak.value, peak.describe()
    elif measured is not None and measured_tflops:
        peak_value = measured_tflops
        peak_text = (
            f"{dtype} matmul rate measured on this CPU ({measured.get('cpu')}) by perfctl calibrate "
            f"({measured['source']}), not a datasheet figure: {measured_tflops * 1e3:,.1f} GFLOP/s"
        )
    else:
        peak_value, peak_text = None, CPU_PEAK_UNKNOWN + (f" ({measured['reason']})" if measured else "")
    if not on_gpu:
        cpu_gbs = measured.get("bandwidth_gbs") if measured is not None else None
        bandwidth_value, bandwidth_text = cpu_gbs, CPU_PEAK_UNKNOWN
        if measured is not None and cpu_gbs:
            bandwidth_text = (
                f"memory copy bandwidth measured on this CPU by perfctl calibrate ({measured['source']}), "
                f"not a datasheet figure: {cpu_gbs:,.1f} GB/s"
            )

    stages: dict[str, EfficiencyStage] = {}
    for stage in STAGES:
        seconds = clean["stage_ns"][stage] / 1e9
        achieved = stage_flops[stage] / seconds / 1e12 if seconds > 0 else None
        under = stages_under_nsys.get(stage)
        stages[stage] = {
            "flops_per_page": stage_flops[stage],
            "clean_seconds_per_page": seconds,
            "achieved_tflops": achieved,
            "mfu": achieved / peak_value if achieved is not None and peak_value else None,
            "nsys_over_clean": (under / clean_of_nsys_pages["stage_ns"][stage])
            if under and clean_of_nsys_pages["stage_ns"][stage]
            else None,
        }
        if measured is not None:
            stages[stage]["mfu_measured"] = (
                achieved / measured_tflops if achieved and measured_tflops else None
            )
    page_flops = sum(stage_flops.values())
    page_seconds = clean["page_ns"] / 1e9
    page_achieved = page_flops / page_seconds / 1e12
    result: Efficiency = {
        "available": True,
        "stages": stages,
        "page": {
            "flops": page_flops,
            "clean_seconds": page_seconds,
            "achieved_tflops": page_achieved,
            "mfu": page_achieved / peak_value if peak_value else None,
        },
        "inputs": {
            "gpu": info.get("gpu_name"),
            "sm_count": info.get("gpu_sm_count"),
            "dtype": dtype,
            "peak_tflops": peak_value,
            "peak_source": peak_text,
            "clean_pages": clean["pages"],
            "clean_time_source": clean["time_source"],
            "overhead_clean_pages": clean_of_nsys_pages["pages"],
            "tokens": flops["tokens"],
            "prompt_tokens_per_page": sorted({prompt for rows in calls for prompt in rows}),
            "model_config": config_source,
            "flop_conventions": flops["conventions"],
        },
    }
    if measured is not None:
        result["page"]["mfu_measured"] = page_achieved / measured_tflops if measured_tflops else None
        result["inputs"]["measured"] = measured
    batched = any(len(rows) > 1 for rows in calls)
    if batched:  # wasted work: what the rows computed past their own prompts (in no figure above)
        result["page"]["padding_flops"] = padding_flops
    steps = round(clean["decode_steps"])
    bytes_per_value = BYTES_PER_VALUE.get(dtype)
    if steps and bytes_per_value and bandwidth_value:
        # one step of a call reads the weights once for all its rows, and every row's own KV cache
        read = [
            _call_step_bytes(shape, rows, i, bytes_per_value) for rows in calls for i in range(1, steps + 1)
        ]
        mean_bytes = sum(w + kv for w, kv in read) / len(read)
        step_seconds = clean["stage_ns"][DECODE] / 1e9 / steps
        result["decode_mbu"] = {
            "bytes_per_step": mean_bytes,
            "weight_bytes_per_step": read[0][0],
            "kv_bytes_per_step_mean": sum(kv for _, kv in read) / len(read),
            "clean_seconds_per_step": step_seconds,
            "achieved_gbs": mean_bytes / step_seconds / 1e9,
            "mbu": mean_bytes / step_seconds / 1e9 / bandwidth_value,
            "peak_bandwidth_gbs": bandwidth_value,
            "peak_source": bandwidth_text,
        }
        if measured is not None:
            gbs = measured.get("bandwidth_gbs")
            result["decode_mbu"]["mbu_measured"] = mean_bytes / step_seconds / 1e9 / gbs if gbs else None
        extra = [extra_expert_bytes(shape, len(rows), bytes_per_value) for rows in calls]
        if any(extra):  # a batch through a mixture of experts: the experts it read are bounded, not known
            most = mean_bytes + sum(extra) / len(extra)
            result["decode_mbu"] |= {
                "mbu": None,
                "mbu_least": mean_bytes / step_seconds / 1e9 / bandwidth_value,
                "mbu_most": most / step_seconds / 1e9 / bandwidth_value,
                "bytes_per_step_most": most,
                "reason": "a batch's decode step reads the routed experts its rows' tokens chose, top-k "
                "(all rows alike: mbu_least) to batch x top-k per layer (all different: mbu_most); "
                "which ones the router chose is not recorded",
            }
            result["decode_mbu"].pop("mbu_measured", None)
    else:
        result["decode_mbu"] = {
            "mbu": None,
            "reason": "needs a clean pass with a known peak bandwidth (a GPU's datasheet row or "
            "override, or a CPU's calibration) and dtype",
        }
    return result


def _call_step_bytes(
    shape: DecoderShape, rows: list[int], step: int, bytes_per_value: int
) -> tuple[int, int]:
    """(weight bytes, KV-cache bytes) decode step `step` of one generate call reads: the weights once,
    each row's cache of its own context (its prompt and the tokens generated so far)."""
    steps = [decode_step_bytes(shape, prompt + step, bytes_per_value) for prompt in rows]
    return steps[0][0], sum(kv for _, kv in steps)


def measured_ceiling(
    calibration: tuple[Calibration, str], info: dict[str, Any], host: dict[str, Any] | None = None
) -> MeasuredCeiling:
    """The measured ceilings to divide by, or nulls with the reason when they do not apply: measured
    on another GPU model or CPU (`host`: the manifest's host, whose CPU a CPU run ran on), on a GPU for
    a CPU run or the other way round, or in a compute dtype other than the run's (the rate only)."""
    found, source = calibration
    data = found.to_json()
    out: MeasuredCeiling = {
        "source": source,
        "gpu": data.get("gpu_name"),
        "measured_at": data.get("measured_at"),
        "matmul_tflops": found.matmul_tflops,
        "matmul_dtype": data["matmul"].get("dtype"),
        "bandwidth_gbs": found.bandwidth_gbs,
        "reason": None,
    }
    if found.on_cpu:
        out["cpu"] = data.get("cpu_name")
    reason = None
    run_on_cpu = not str(info.get("device", "")).startswith("cuda")
    if run_on_cpu and not found.on_cpu:
        reason = "the clean pass ran on the CPU, and this calibration measured a GPU"
    elif found.on_cpu and not run_on_cpu:
        reason = "this calibration measured a CPU, and the clean pass ran on a GPU"
    elif found.on_cpu:
        measured_on = (data.get("cpu_name"), data.get("cpu_count"))
        ran_on = ((host or {}).get("cpu"), (host or {}).get("cpu_count"))
        if measured_on != ran_on:
            reason = (
                f"measured on the CPU {measured_on[0]} ({measured_on[1]} logical CPUs), "
                f"the run used {ran_on[0]} ({ran_on[1]} logical CPUs)"
            )
    elif (data.get("gpu_name"), data.get("gpu_sm_count")) != (info.get("gpu_name"), info.get("gpu_sm_count")):
        reason = (
            f"measured on {data.get('gpu_name')} ({data.get('gpu_sm_count')} SMs), "
            f"the run used {info.get('gpu_name')} ({info.get('gpu_sm_count')} SMs)"
        )
    if reason:
        return out | {"matmul_tflops": None, "bandwidth_gbs": None, "reason": reason}
    if str(info.get("dtype")) != data["matmul"].get("dtype"):
        out |= {
            "matmul_tflops": None,
            "reason": f"the matmul rate was measured in {data['matmul'].get('dtype')}, the run computed "
            f"in {info.get('dtype')}",
        }
    return out
