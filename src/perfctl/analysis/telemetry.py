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


def _samples(path: Path) -> dict[str, np.ndarray] | None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "error" not in r]
    if not rows:
        return None
    return {key: np.array([r[key] for r in rows], dtype=np.float64) for key in rows[0]}


def page_telemetry(path: Path, records: list[dict[str, Any]], reason: str | None) -> Telemetry:
    """The `timing.telemetry` block of analysis.json (and `nsys_pass.telemetry` when the nsys pass
    was sampled too): `path` is the pass's telemetry.jsonl, `records` its measured pages."""
    samples = _samples(path) if path.is_file() else None
    if samples is None:
        if reason and not reason.startswith("absent"):  # the driver sampled ("NVML, every 50 ms"): file lost
            reason = f"no samples in {path.parent.name}/{path.name}, though the driver recorded {reason}"
        return {"available": False, "reason": reason or "no telemetry samples in this run"}
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
        return {"available": False, "reason": "no telemetry sample fell inside a page"}
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
