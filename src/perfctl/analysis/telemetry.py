"""GPU telemetry of a pass (the clean timing pass; the nsys pass with --nsys-telemetry), per page:
clocks, power, energy, temperature, memory.

NVML samples (driver/telemetry.py) carry the same host clock as the page records, so each page gets
the samples taken while it ran. Energy is mean power x page time. Missing telemetry (CPU run, no
NVML) is reported with the driver's reason, never filled in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from perfctl.analysis.result_passes import PageTelemetry, Telemetry


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _samples(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {key: np.array([r[key] for r in rows], dtype=np.float64) for key in rows[0]}


def _why_none(path: Path, rows: list[dict[str, Any]] | None, reason: str | None) -> str:
    """Why a pass has no samples to use: the driver's own reason when it never sampled ("absent: ..."),
    else what the file says (missing, empty, or NVML's error at the first sample)."""
    name = f"{path.parent.name}/{path.name}"
    if reason and reason.startswith("absent"):
        return reason
    if reason is None and rows is None:
        return f"no {name} in this run, and no driver record of sampling"
    sampled = (
        f"the driver sampled {reason.replace(', every', ' every')}" if reason else "no driver record says"
    )
    if rows is None:
        return f"{name} is not in this run folder, though {sampled} (the file was not kept)"
    errors = [str(r["error"]) for r in rows if "error" in r]
    if errors:  # the sampler writes NVML's error once and stops
        return f"NVML sampling stopped at its first sample: {errors[0]}"
    return f"{name} holds no samples, though {sampled} (the pass ended before the first one)"


def page_telemetry(path: Path, records: list[dict[str, Any]], reason: str | None) -> Telemetry:
    """The `timing.telemetry` block of analysis.json (and `nsys_pass.telemetry` when the nsys pass
    was sampled too): `path` is the pass's telemetry.jsonl, `records` its measured pages, `reason`
    the driver's word on sampling (driver-info.json's `telemetry`: "NVML, every 50 ms" or "absent: ...")."""
    rows = _rows(path) if path.is_file() else None
    kept = [r for r in rows or [] if "error" not in r]
    if not kept:
        return {"available": False, "reason": _why_none(path, rows, reason)}
    samples = _samples(kept)
    pages: list[PageTelemetry] = []
    for r in records:
        if r.get("started_ns") is None:
            continue
        inside = (samples["t_ns"] >= r["started_ns"]) & (samples["t_ns"] <= r["started_ns"] + r["wall_ns"])
        if not inside.any():
            continue
        power_w = samples["power_mw"][inside] / 1000
        energy = float(power_w.mean()) * r["wall_ns"] / 1e9
        pages.append(
            {
                "sequence": r["sequence"],
                "samples": int(inside.sum()),
                "sm_mhz_mean": float(samples["sm_mhz"][inside].mean()),
                "sm_mhz_min": float(samples["sm_mhz"][inside].min()),
                "mem_mhz_mean": float(samples["mem_mhz"][inside].mean()),
                "power_w_mean": float(power_w.mean()),
                "energy_j": energy,
                "energy_j_per_new_token": energy / r["new_tokens"] if r.get("new_tokens") else None,
                "temp_c_max": float(samples["temp_c"][inside].max()),
                "gpu_util_mean": float(samples["gpu_util"][inside].mean()),
                "mem_used_max_bytes": int(samples["mem_used"][inside].max()),
            }
        )
    if not pages:
        return {
            "available": False,
            "reason": f"none of the {len(kept)} NVML samples in {path.parent.name}/{path.name} fell inside a "
            "page (samples and page records of different passes, or pages without a start time)",
        }
    clocks = [p["sm_mhz_mean"] for p in pages]
    spread = (max(clocks) - min(clocks)) / max(clocks) if max(clocks) else 0.0
    busy = float(np.mean([p["gpu_util_mean"] for p in pages]))
    if spread > 0.05:
        note = f"SM clock varied {spread:.0%} between pages: page times are not comparable at one clock"
    elif busy < 50:
        note = (
            f"SM clock steady between pages (within 5 %) and the GPU mostly idle (mean utilization "
            f"{busy:.0f} %): page times are set on the host (kernel launches), so their spread is host-side"
        )
    else:
        note = "SM clock steady between pages (within 5 %)"
    return {
        "available": True,
        "pages": pages,
        "sm_mhz_page_mean_range": [min(clocks), max(clocks)],
        "sm_clock_spread": spread,
        "gpu_util_mean": busy,
        "note": note,
        "energy_j_per_page_mean": float(np.mean([p["energy_j"] for p in pages])),
    }
