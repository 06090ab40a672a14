"""Cost centres: the stages' wall time (nsys pass) cut into pieces, each with the kernel behind it.

`cost_centres(analysis)` is a pure function of the analysis (docs/analysis-json.md); `perfctl analyze`
stores its result under the key `cost_centres`, and the HTML report and summary.md show them.
"""

from __future__ import annotations

from perfctl.analysis.result import Analysis, CostCentre, LargestKernel, StageSummary, TopKernel
from perfctl.report.formatting import ms


def cost_centres(analysis: Analysis) -> list[CostCentre]:
    """The pieces of the stages' wall time (nsys pass), largest first: per stage, the time the GPU was
    idle (host side: Python, launches, synchronization) and the kernel time of each kernel category,
    with the largest kernel of that category. Without kernels, the stages' wall times themselves."""
    stages = [s for s in analysis.get("stages") or [] if s["wall_ns"] > 0]
    total = sum(s["wall_ns"] for s in stages)
    pieces: list[CostCentre] = []
    for s in stages:
        if not s["kernel_count"]:
            pieces.append(_piece(s, "stage_wall", None, s["wall_ns"], total, None))
            continue
        pieces.append(_piece(s, "gpu_idle", None, max(s["wall_ns"] - s["gpu_busy_ns"], 0), total, None))
        for category, time_ns in (s.get("kernel_time_by_category") or {}).items():
            if time_ns > 0:
                largest = next((k for k in s.get("top_kernels", []) if k.get("category") == category), None)
                pieces.append(_piece(s, "kernel_category", category, time_ns, total, largest))
    pieces.sort(key=lambda p: -p["time_ns"])
    return pieces


def _piece(
    s: StageSummary,
    kind: str,
    category: str | None,
    time_ns: int,
    total: int,
    largest: TopKernel | None,
) -> CostCentre:
    return {
        "stage": s["stage"],
        "kind": kind,
        "category": category,
        "time_ns": time_ns,
        "share_of_stage_wall": time_ns / s["wall_ns"],
        "share_of_all_stages": time_ns / total,
        "largest_kernel": largest_kernel(largest),
    }


def largest_kernel(kernel: TopKernel | None) -> LargestKernel | None:
    """What a cost centre or finding names of a top kernel."""
    if not kernel:
        return None
    return {
        "short_name": kernel["short_name"],
        "name": kernel["name"],
        "count": kernel["count"],
        "time_ns": kernel["time_ns"],
    }


def describe_cost_centre(piece: CostCentre) -> str:
    """A cost centre in words (renderers escape it)."""
    if piece["kind"] == "gpu_idle":
        return "GPU idle between kernels (host side: Python, kernel launches, synchronization)"
    if piece["kind"] == "stage_wall":
        return "stage wall time (no kernel data)"
    text = f"{piece['category']} kernels"
    if piece["largest_kernel"]:
        k = piece["largest_kernel"]
        text += f" (largest: {k['short_name']}, {k['count']:,} calls, {ms(k['time_ns'])})"
    return text
