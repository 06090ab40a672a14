"""A batch sweep's analysis: each point's figures read from its own analysis.json, set side by side,
and where throughput stops growing.

Pure functions over the points' analyses (perfctl.analysis.result.Analysis); nothing is measured or
modelled here that a point's analysis does not hold. Decode's roofline position is the point's
analytic FLOPs and modelled DRAM bytes per decode step (perfctl.analysis.efficiency) over the clean
pass's decode time: achieved TFLOP/s is its `achieved_tflops`, arithmetic intensity the FLOPs per
byte, which is `achieved_tflops` over `decode_mbu.achieved_gbs` since both divide by the same seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from perfctl import __version__
from perfctl.analysis.result import Analysis
from perfctl.analysis.result_sweep import (
    CategoryShare,
    DecodeRoofline,
    Saturation,
    SweepAnalysis,
    SweepIdentity,
    SweepPoint,
    SweepRoofs,
)
from perfctl.stages import DECODE, STAGES

# Throughput has stopped growing at batch B when no larger batch of the sweep delivers more than this
# much more pages per second than B: a clean pass's pages/s varies by a few percent between runs
# (its stage CVs), so a smaller gain is not told from noise, and a larger batch always costs latency
# (time to first token grows with the batch's vision and prefill work).
SATURATION_GAIN = 0.10
SATURATION_METRIC = "pages_per_s"


def _stage_cv(analysis: Analysis) -> tuple[dict[str, float | None], str | None]:
    """The clean pass's CV per stage, on the GPU's clock where it has one (CUDA events)."""
    timing = analysis.get("timing")
    stats = timing.get("statistics") if timing else None
    stages = stats.get("stages") if stats else None
    if not stages:
        return {s: None for s in STAGES}, None
    events = all("cuda_events" in stages[s] for s in STAGES if s in stages)
    out: dict[str, float | None] = {}
    for stage in STAGES:
        item = stages.get(stage)
        if item is None:
            out[stage] = None
        elif events:
            out[stage] = item["cuda_events"]["cv"]
        else:
            out[stage] = item.get("cv")
    return out, "cuda_events" if events else "host"


def _top_categories(analysis: Analysis) -> dict[str, CategoryShare | None]:
    out: dict[str, CategoryShare | None] = {s: None for s in STAGES}
    for item in analysis.get("stages") or []:
        by_category = item.get("kernel_time_by_category") or {}
        total = sum(by_category.values())
        if item["stage"] in out and total > 0:
            category, ns = max(by_category.items(), key=lambda kv: kv[1])
            out[item["stage"]] = {"category": category, "share": ns / total}
    return out


def _gpu_busy(analysis: Analysis) -> dict[str, float | None]:
    """Per stage, the nsys pass's GPU busy time over the stage's wall time, summed over its pages;
    None without any kernel (a CPU run: no GPU to be busy)."""
    totals = analysis.get("totals")
    if not totals or not totals["kernels"]:
        return dict.fromkeys(STAGES)
    busy = dict.fromkeys(STAGES, 0)
    wall = dict.fromkeys(STAGES, 0)
    for page in analysis.get("pages") or []:
        for stage, item in page["stages"].items():
            if stage in busy:
                busy[stage] += item["gpu_busy_ns"]
                wall[stage] += item["wall_ns"]
    return {s: (busy[s] / wall[s] if wall[s] else None) for s in STAGES}


def _decode_roofline(analysis: Analysis) -> DecodeRoofline | None:
    eff = analysis.get("efficiency")
    if not eff or not eff.get("available"):
        return None
    decode = (eff.get("stages") or {}).get(DECODE)
    mbu: Mapping[str, Any] = eff.get("decode_mbu") or {}
    tflops, gbs = decode["achieved_tflops"] if decode else None, mbu.get("achieved_gbs")
    if not tflops or not gbs:
        return None
    out: DecodeRoofline = {"arithmetic_intensity": tflops * 1e3 / gbs, "achieved_tflops": tflops}
    most, least = mbu.get("bytes_per_step_most"), mbu.get("bytes_per_step")
    if most and least:
        out["arithmetic_intensity_least"] = out["arithmetic_intensity"] * least / most
    return out


def sweep_point(entry: Mapping[str, Any], analysis: Analysis | None) -> SweepPoint:
    """One point: the sweep manifest's entry (batch size, run folder, capture status), its analysis."""
    a: Mapping[str, Any] = analysis or {}
    rate = a.get("throughput") or {}
    eff = a.get("efficiency") or {}
    stages = (eff.get("stages") or {}) if eff.get("available") else {}
    mbu = eff.get("decode_mbu") or {}
    step = ((a.get("timing") or {}).get("statistics") or {}).get("decode_step_latency") or {}
    no_stages: dict[str, Any] = dict.fromkeys(STAGES)
    cv, clock = _stage_cv(analysis) if analysis else (dict(no_stages), None)
    point: SweepPoint = {
        "batch_size": int(entry["batch_size"]),
        "run": str(entry["run"]),
        "status": str(entry.get("status") or "missing"),
        "reason": entry.get("reason"),
        "analyzed": analysis is not None,
        "throughput_source": rate.get("source"),
        "pages_per_s": rate.get("pages_per_s"),
        "tokens_per_s": rate.get("tokens_per_s"),
        "decode_tokens_per_s": rate.get("decode_tokens_per_s"),
        "time_to_first_token_p50_ms": (rate.get("time_to_first_token") or {}).get("p50_ms"),
        "time_per_output_token_p50_ms": (rate.get("time_per_output_token") or {}).get("p50_ms"),
        "decode_step_p50_ms": step["p50"] / 1e6 if step.get("p50") is not None else None,
        "padding_share": rate.get("padding_share"),
        "stage_cv": cv,
        "cv_clock": clock,
        "mfu": {s: (stages.get(s) or {}).get("mfu") for s in STAGES}
        | {"page": (eff.get("page") or {}).get("mfu") if stages else None},
        "decode_mbu": mbu.get("mbu"),
        "decode_roofline": _decode_roofline(analysis) if analysis else None,
        "gpu_busy_share": _gpu_busy(analysis) if analysis else dict(no_stages),
        "top_category": _top_categories(analysis) if analysis else dict(no_stages),
    }
    if mbu.get("mbu_most") is not None:
        point["decode_mbu_least"], point["decode_mbu_most"] = mbu["mbu_least"], mbu["mbu_most"]
    loop = a.get("decode_loop") or {}
    passes = loop.get("passes") or {}
    if loop.get("mode") == "compiled":
        point["compile_seconds"] = (passes.get("timing") or {}).get("warmup_compile_seconds")
        point["recompilations"] = sum(int(p.get("recompilations") or 0) for p in passes.values())
    return point


def _saturation(batch: int | None, why: str, category: CategoryShare | None = None) -> Saturation:
    out: Saturation = {
        "metric": SATURATION_METRIC,
        "gain_threshold": SATURATION_GAIN,
        "reached": batch is not None,
        "batch_size": batch,
        "why": why,
    }
    if batch is not None:
        out["dominant_category"] = category
    return out


def saturation(points: Sequence[SweepPoint]) -> Saturation:
    """The smallest batch after which no larger batch gains more than SATURATION_GAIN in pages/s."""
    measured = sorted((p for p in points if p["pages_per_s"] is not None), key=lambda p: p["batch_size"])
    if len(measured) < 2:
        return _saturation(None, "needs throughput at two batch sizes at least")
    rate = [float(p["pages_per_s"] or 0) for p in measured]
    for i, point in enumerate(measured[:-1]):
        best_after = max(rate[i + 1 :])
        if best_after <= rate[i] * (1 + SATURATION_GAIN):
            best = measured[rate.index(best_after, i + 1)]
            why = (
                f"batch {point['batch_size']}: {rate[i]:.3g} pages/s; no larger batch gains more than "
                f"{SATURATION_GAIN:.0%} (the best, batch {best['batch_size']}: {best_after:.3g} pages/s, "
                f"{best_after / rate[i] - 1:+.1%})"
            )
            return _saturation(point["batch_size"], why, point["top_category"].get(DECODE))
    last, before = measured[-1], measured[-2]
    return _saturation(
        None,
        f"not reached: batch {last['batch_size']} still gains {rate[-1] / rate[-2] - 1:+.1%} over batch "
        f"{before['batch_size']} ({rate[-1]:.3g} against {rate[-2]:.3g} pages/s); a larger batch may "
        "gain more",
    )


def sweep_roofs(analyses: Sequence[Analysis]) -> SweepRoofs:
    """The peaks the points were measured against (the first analyzed point that states them)."""
    for analysis in analyses:
        eff = analysis.get("efficiency")
        inputs = eff.get("inputs") if eff else None
        if not eff or not inputs:
            continue
        measured: Mapping[str, Any] = inputs.get("measured") or {}
        mbu: Mapping[str, Any] = eff.get("decode_mbu") or {}
        return {
            "gpu": inputs["gpu"],
            "dtype": inputs["dtype"],
            "peak_tflops": inputs["peak_tflops"],
            "bandwidth_gbs": mbu.get("peak_bandwidth_gbs"),
            "source": inputs["peak_source"],
            "measured_tflops": measured.get("matmul_tflops"),
            "measured_bandwidth_gbs": measured.get("bandwidth_gbs"),
        }
    return {
        "gpu": None,
        "dtype": None,
        "peak_tflops": None,
        "bandwidth_gbs": None,
        "source": None,
        "measured_tflops": None,
        "measured_bandwidth_gbs": None,
    }


def _identity(manifest: Mapping[str, Any], path: str, roofs: SweepRoofs) -> SweepIdentity:
    options = manifest.get("options") or {}
    return {
        "sweep_id": str(manifest.get("sweep_id") or ""),
        "path": path,
        "model": options.get("model"),
        "decode": options.get("decode"),
        "device": options.get("device"),
        "gpu": roofs["gpu"],
        "dtype": roofs["dtype"] or options.get("dtype"),
        "max_new_tokens": options.get("max_new_tokens"),
        "batch_sizes": [int(b) for b in manifest.get("batch_sizes") or []],
        "command": list(manifest.get("perfctl_command") or []),
        "status": str(manifest.get("status") or "unknown"),
        "started_at": manifest.get("started_at"),
        "finished_at": manifest.get("finished_at"),
    }


def analyze_sweep(
    manifest: Mapping[str, Any], path: str, analyses: Mapping[int, Analysis], warnings: Sequence[str] = ()
) -> SweepAnalysis:
    """The sweep's analysis from its manifest (sweep.json) and each analyzed point's analysis, by
    batch size; a point without one (its capture failed, its analysis did) is listed with its status."""
    entries = sorted(manifest.get("points") or [], key=lambda e: int(e["batch_size"]))
    points = [sweep_point(e, analyses.get(int(e["batch_size"]))) for e in entries]
    roofs = sweep_roofs([analyses[b] for b in sorted(analyses)])
    notes = list(warnings)
    for p in (p for p in points if not p["analyzed"]):
        why = f": {p['reason']}" if p["reason"] else ""
        notes.append(f"batch {p['batch_size']}: no analysis (capture {p['status']}{why})")
    return {
        "perfctl_version": __version__,
        "sweep": _identity(manifest, path, roofs),
        "points": points,
        "saturation": saturation(points),
        "roofs": roofs,
        "warnings": notes,
    }
