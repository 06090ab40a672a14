"""MFU per stage and MBU for decode, for a run folder with a clean timing pass.

MFU = analytic FLOPs of the stage (perfctl.flops) / (the stage's time in the clean timing pass ×
the GPU's dense peak for the compute dtype (perfctl.hardware.peaks)). MBU for decode = bytes one
step must read (active weights + KV cache) / the step's clean time / the GPU's peak memory
bandwidth. Every input is returned beside the result so the number can be checked by hand; a
missing input (no timing pass, an unknown GPU, a CPU run) gives null with the reason, never a
guess. The profiler overhead is the ratio of the stage times under nsys to the clean ones.
"""

from __future__ import annotations

from typing import Any

from perfctl.analysis.repeatability import CleanPass
from perfctl.stages import DECODE, PREFILL, STAGES, VISION

BYTES_PER_VALUE = {"bfloat16": 2, "float16": 2, "float32": 4}


def clean_stage_times(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean per page of the clean pass: stage times (ns), page wall time and decode steps.

    On a GPU the stage times are CUDA-event times (the GPU's clock from the stage's first to its last
    work, the stage's edges synchronized); runs without them (CPU, older captures) use the host clock
    between the synchronized edges, which it equals to within the synchronize call's latency."""
    n = len(records)
    key = "stage_gpu_ns" if all(r.get("stage_gpu_ns") for r in records) else "stage_wall_ns"
    return {
        "pages": n,
        "time_source": "cuda_events" if key == "stage_gpu_ns" else "host_clock",
        "stage_ns": {s: sum(r[key].get(s, 0) for r in records) / n for s in STAGES},
        "page_ns": sum(r["wall_ns"] for r in records) / n,
        "decode_steps": sum(r["decode_steps"] for r in records) / n,
    }


def efficiency(
    clean_pass: CleanPass | None,
    manifest: dict[str, Any],
    stages_under_nsys: dict[str, float],
    peak_tflops: float | None = None,
    bandwidth_gbs: float | None = None,
) -> dict[str, Any]:
    """The `efficiency` block of analysis.json (see docs/analysis-json.md)."""
    from perfctl.flops import count_flops, load_config
    from perfctl.flops.deepseek_ocr2 import decode_step_bytes
    from perfctl.hardware.peaks import resolve_bandwidth, resolve_peak

    if clean_pass is None:
        return {"available": False, "reason": "no clean timing pass in this run (capture with --tool all)"}
    clean = clean_stage_times(clean_pass.records)
    info = clean_pass.info
    workload = manifest.get("workload") or {}
    model = workload.get("model") or {}
    # a built-in model by its name (the folder is where it was installed on the capturing host)
    model_ref = str(model.get("name") if model.get("builtin") else model.get("folder", ""))
    new_tokens = int(workload.get("max_new_tokens", 0))
    prompt_text = int(info.get("prompt_tokens_per_page", 0)) - int(info.get("image_tokens_per_page", 0))
    flops = count_flops(
        model_ref, tiles=int(workload.get("tiles", 0)), prompt_tokens=prompt_text, new_tokens=new_tokens
    ).to_json()
    dtype = str(info.get("dtype", ""))
    peak = resolve_peak(info.get("gpu_name"), info.get("gpu_sm_count"), dtype, peak_tflops)
    bandwidth = resolve_bandwidth(info.get("gpu_name"), info.get("gpu_sm_count"), bandwidth_gbs)
    if not str(info.get("device", "")).startswith("cuda"):
        peak_value, peak_text = (
            None,
            "unknown: the clean pass ran on the CPU, which has no tensor-core peak here",
        )
    else:
        peak_value, peak_text = peak.value, peak.describe()

    stages: dict[str, Any] = {}
    stage_flops = {
        VISION: flops["flops"]["vision"],
        PREFILL: flops["flops"]["prefill"],
        DECODE: flops["flops"]["decode"],
    }
    for stage in STAGES:
        seconds = clean["stage_ns"][stage] / 1e9
        achieved = stage_flops[stage] / seconds / 1e12 if seconds > 0 else None
        under = stages_under_nsys.get(stage)
        stages[stage] = {
            "flops_per_page": stage_flops[stage],
            "clean_seconds_per_page": seconds,
            "achieved_tflops": achieved,
            "mfu": achieved / peak_value if achieved is not None and peak_value else None,
            "nsys_over_clean": (under / clean["stage_ns"][stage])
            if under and clean["stage_ns"][stage]
            else None,
        }
    page_flops = sum(stage_flops.values())
    page_seconds = clean["page_ns"] / 1e9
    page_achieved = page_flops / page_seconds / 1e12
    result: dict[str, Any] = {
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
            "tokens": flops["tokens"],
            "flop_conventions": flops["conventions"],
        },
    }
    steps = round(clean["decode_steps"])
    bytes_per_value = BYTES_PER_VALUE.get(dtype)
    if steps and bytes_per_value and bandwidth.value and str(info.get("device", "")).startswith("cuda"):
        config, _ = load_config(model_ref)
        prompt = int(flops["tokens"]["prompt_total"])
        read = [decode_step_bytes(config, prompt + i, bytes_per_value) for i in range(1, steps + 1)]
        mean_bytes = sum(w + kv for w, kv in read) / steps
        step_seconds = clean["stage_ns"][DECODE] / 1e9 / steps
        result["decode_mbu"] = {
            "bytes_per_step": mean_bytes,
            "weight_bytes_per_step": read[0][0],
            "kv_bytes_per_step_mean": sum(kv for _, kv in read) / steps,
            "clean_seconds_per_step": step_seconds,
            "achieved_gbs": mean_bytes / step_seconds / 1e9,
            "mbu": mean_bytes / step_seconds / 1e9 / bandwidth.value,
            "peak_bandwidth_gbs": bandwidth.value,
            "peak_source": bandwidth.describe(),
        }
    else:
        result["decode_mbu"] = {
            "mbu": None,
            "reason": "needs a GPU clean pass with a known bandwidth and dtype",
        }
    return result
