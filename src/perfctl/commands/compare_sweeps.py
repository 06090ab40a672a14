"""`perfctl compare SWEEP_A SWEEP_B`: two sweeps compared batch size by batch size.

Each batch size both sweeps analyzed is `perfctl compare` of the two points' run folders (the same
batch size, so the same workload unless they differ otherwise: refused then, as for two runs, unless
`allow_different`), with the pages and tokens per second of each; a batch size only one sweep has, or
one a sweep did not analyze, is listed with the reason. With a threshold every compared point is gated,
and the sweep's outcome is its worst point's: slower over cannot tell over passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from perfctl.analysis.compare_power import CANNOT_TELL, GATE_EXIT_CODES, PASSED, SLOWER
from perfctl.analysis.result import Analysis
from perfctl.analysis.result_sweep import (
    RateChange,
    SweepComparison,
    SweepGate,
    SweepPointComparison,
    SweepSide,
)
from perfctl.errors import BadInput
from perfctl.sweep_folder import SWEEP_KIND, SweepFolder


def _manifest(path: Path, label: str) -> dict[str, Any]:
    found = SweepFolder(path).read_manifest()
    if found.data is None or found.data.get("kind") != SWEEP_KIND:
        raise BadInput(f"sweep {label} ({path}): {found.path} is no sweep manifest perfctl wrote")
    return found.data


def _side(manifest: Mapping[str, Any], path: Path, label: str) -> SweepSide:
    options = manifest.get("options") or {}
    return {
        "label": label,
        "sweep_id": str(manifest.get("sweep_id") or path.name),
        "path": str(path),
        "model": options.get("model"),
        "decode": options.get("decode"),
        "gpu": None,  # filled from the points' analyses
        "batch_sizes": [int(b) for b in manifest.get("batch_sizes") or []],
    }


def _analyzed(manifest: Mapping[str, Any]) -> dict[int, str]:
    """batch size -> run folder, for the points whose capture ended ok (analyzed by the sweep)."""
    return {
        int(e["batch_size"]): str(e["run"]) for e in manifest.get("points") or [] if e.get("status") == "ok"
    }


def _rate(a: float | None, b: float | None) -> RateChange:
    return {"a": a, "b": b, "change_pct": (b - a) / a * 100 if a and b is not None else None}


def _rates(a: Analysis, b: Analysis) -> tuple[RateChange, RateChange]:
    """(pages/s, new tokens/s) of the two points' runs: their analyses' throughput."""
    ta, tb = a.get("throughput"), b.get("throughput")
    pages = _rate(ta["pages_per_s"] if ta else None, tb["pages_per_s"] if tb else None)
    tokens = _rate(ta["tokens_per_s"] if ta else None, tb["tokens_per_s"] if tb else None)
    return pages, tokens


def _gate(points: list[SweepPointComparison], pct: float) -> SweepGate:
    slower, undetermined = [], []
    for p in points:
        gate = p.get("comparison", {}).get("gate")
        if gate is not None and gate["outcome"] == SLOWER:
            slower.append(p["batch_size"])
        elif gate is not None and gate["outcome"] == CANNOT_TELL:
            undetermined.append(p["batch_size"])
    outcome = SLOWER if slower else CANNOT_TELL if undetermined else PASSED
    return {
        "fail_if_slower_pct": pct,
        "outcome": outcome,
        "exit_code": GATE_EXIT_CODES[outcome],
        "failed": outcome != PASSED,
        "slower_batches": slower,
        "undetermined_batches": undetermined,
    }


def compare_sweeps(
    path_a: Path,
    path_b: Path,
    top: int = 5,
    fail_if_slower_pct: float | None = None,
    allow_different: bool = False,
) -> SweepComparison:
    """Sweep B against sweep A (see the module's docstring)."""
    from perfctl.commands.compare import compare_loaded, load_run

    ma, mb = _manifest(path_a, "A"), _manifest(path_b, "B")
    side_a, side_b = _side(ma, path_a, "A"), _side(mb, path_b, "B")
    runs_a, runs_b = _analyzed(ma), _analyzed(mb)
    points: list[SweepPointComparison] = []
    warnings: list[str] = []
    for batch in sorted(set(side_a["batch_sizes"]) | set(side_b["batch_sizes"])):
        missing = [label for label, runs in (("A", runs_a), ("B", runs_b)) if batch not in runs]
        if missing:
            swept = [s["label"] for s in (side_a, side_b) if batch in s["batch_sizes"]]
            why = (
                f"only sweep {swept[0]} has batch {batch}"
                if len(swept) == 1
                else f"sweep {' and '.join(missing)} did not analyze batch {batch}"
            )
            points.append(
                {
                    "batch_size": batch,
                    "compared": False,
                    "reason": why,
                    "pages_per_s": _rate(None, None),
                    "tokens_per_s": _rate(None, None),
                }
            )
            continue
        a, b = load_run(path_a / runs_a[batch]), load_run(path_b / runs_b[batch])  # each read once
        comparison = compare_loaded(a, b, top, fail_if_slower_pct, allow_different)
        side_a["gpu"] = side_a["gpu"] or comparison["a"]["gpu"]
        side_b["gpu"] = side_b["gpu"] or comparison["b"]["gpu"]
        pages, tokens = _rates(a.analysis, b.analysis)
        warnings += [f"batch {batch}: {w}" for w in comparison["warnings"]]
        points.append(
            {
                "batch_size": batch,
                "compared": True,
                "reason": None,
                "pages_per_s": pages,
                "tokens_per_s": tokens,
                "comparison": comparison,
            }
        )
    result: SweepComparison = {"a": side_a, "b": side_b, "points": points, "warnings": warnings}
    if fail_if_slower_pct is not None:
        result["gate"] = _gate(points, fail_if_slower_pct)
    return result
