"""How a stage's kernels ran, CUDA graphs or one by one, for the launch-bound finding
(perfctl.analysis.findings): the evidence (analysis.graph_kernels' counts) and the advice that follows
from it, so that a run already replaying graphs is never told to use graphs.
"""

from __future__ import annotations

from typing import Any

from perfctl.analysis.result import StageSummary
from perfctl.stages import DECODE

# A stage "runs as CUDA graphs" once at least half of its kernels are replayed from graphs: the graph
# capture then holds most of the work, and what is left to cut is the kernels still launched one by one
# and the host work between replays, so advising graphs again would repeat what the run already does;
# below it graphs hold the smaller part and extending them is still the advice. (The compiled H200
# decode steps of tests/fixtures replay 301 of 350 and 302 of 357 kernels per step from one graph.)
GRAPH_RUN_SHARE = 0.5


def graph_use(s: StageSummary) -> dict[str, Any]:
    """How a stage's kernels ran (analysis.graph_kernels): `graph_use` "graphs" (GRAPH_RUN_SHARE of them
    or more replayed from CUDA graphs), "partial", "eager" or "unknown" (`unknown_because` says why);
    when known, per instance the kernels replayed from graphs and those launched one by one."""
    kernels, instances = s["kernel_count"], max(s["instances"], 1)
    graph, launches = s.get("graph_kernel_count"), s.get("graph_launches") or 0
    out: dict[str, Any] = {"graph_use": "unknown", "graph_share_threshold": GRAPH_RUN_SHARE}
    out["graph_launches_per_instance"] = launches / instances
    if "graph_kernel_count" not in s:
        out["unknown_because"] = "this analysis predates perfctl's graph kernel count: analyze the run again"
    elif graph is None:
        out["unknown_because"] = "the export's kernel table has no graphNodeId column"
    elif graph == 0 and launches:  # whole-graph tracing: the replays' kernels are not in the export
        out["unknown_because"] = f"{launches:,} graph launches whose kernels the export lacks"
    else:
        share = graph / kernels if kernels else 0.0
        out["graph_use"] = "graphs" if share >= GRAPH_RUN_SHARE else "partial" if graph else "eager"
        out |= {"graph_kernel_share": share, "graph_kernels_per_instance": graph / instances}
        out["one_by_one_kernels_per_instance"] = (kernels - graph) / instances
    return out


def launch_advice(stage: str, unit: str, graphs: dict[str, Any]) -> str:
    """What to do about a launch-bound stage, given how its kernels ran (`graph_use`)."""
    use, keep = graphs["graph_use"], "faster kernels cannot shorten this stage"
    left = f"{graphs.get('one_by_one_kernels_per_instance', 0):,.0f} kernels per {unit} launched one by one"
    if use == "graphs":
        return (
            f"cut what runs between CUDA graph replays: the {left} and the host work around them (an nsys "
            f"timeline of one {unit} shows them); move them into the captured graph (no graph breaks) or "
            f"out of the {unit}: the graph replays are in place already, and {keep}"
        )
    if use == "partial":
        return f"cut kernel launches: capture the {left} in the CUDA graph too, fuse small kernels; {keep}"
    advice = (
        "run decode as a CUDA graph (torch.compile mode='reduce-overhead' with a static KV cache) and fuse "
        "small kernels"
        if stage == DECODE
        else "torch.compile it (fewer, fused kernels) or capture it as a CUDA graph"
    )
    if use == "unknown":
        return (
            f"unless {stage}'s kernels are replayed from CUDA graphs already (unknown: "
            f"{graphs['unknown_because']}), {advice}; if they are, cut the kernels launched one by one and "
            f"the host work between graph replays; {keep}"
        )
    return f"cut kernel launches{'' if stage == DECODE else ' in ' + stage}: {advice}; {keep}"
