"""Findings: what an analysis says, each with the numbers behind it.

`findings(analysis)` is a pure function of the analysis (the content of analysis.json, see
docs/analysis-json.md); `perfctl analyze` stores its result under the key `findings`, and the HTML
report and summary.md show them. A finding is a `result.Finding`: its `id` (launch_bound, low_mfu,
low_mbu, largest_category, dominant_kernel, unstable, first_use, recompiled, profiler_overhead, no_kernels,
no_clean_pass, peak_unknown), `severity` ("high": most of a stage's time is lost; "medium": the
numbers cannot be trusted as they are; "info": where the time goes, what is missing), `stage`,
`title` (one line), `text` (the evidence as a sentence, every number with its unit), `evidence` (the
raw numbers the text was made from) and `next` (what to do about it, or null). The cost centres are
perfctl.analysis.cost_centres'.

Every threshold is a named constant below, with the reason for its value.
"""

from __future__ import annotations

from typing import Any

from perfctl.analysis.cost_centres import largest_kernel
from perfctl.analysis.findings_graphs import graph_use, launch_advice
from perfctl.analysis.ncu_findings import ncu_findings
from perfctl.analysis.repeatability import MIN_PAGES_FOR_CI
from perfctl.analysis.result import Analysis, Finding, StageSummary
from perfctl.analysis.result import new_finding as _finding
from perfctl.analysis.result_passes import EfficiencyStage
from perfctl.report.formatting import confidence_interval, ms, number, pct
from perfctl.stages import DECODE, STAGES

# The GPU is busy less than half of a stage's time: it waits on the host (Python, kernel launches,
# synchronization) more than it computes, so faster kernels cannot shorten the stage; fewer launches can.
LAUNCH_BOUND_BUSY_SHARE = 0.5
# Vision and prefill are large matrix products: tuned transformer prefill reaches 30-60 % of the dense
# peak. Below 10 % most of the GPU's arithmetic goes unused. Decode is judged by MBU instead: at batch 1
# it reads every active weight for one token, so its MFU is tiny by construction.
LOW_MFU = 0.10
# A tuned batch-1 decode loop reads weights and KV cache at 60-80 % of the peak memory bandwidth; below
# 30 % the step time goes elsewhere (launches, small kernels, synchronization).
LOW_MBU = 0.30
# nsys stretches stage times; beyond 25 % the nsys pass's wall times misstate the real ones.
HIGH_PROFILER_OVERHEAD = 1.25
# One kernel taking more than a quarter of a stage's kernel time is the first one to tune.
DOMINANT_KERNEL_SHARE = 0.25
# torch.compile's Inductor backend names the Triton kernels it generates triton_<kind>_fused_...: such
# a kernel is torch.compile's fusion already, so advising torch.compile for it repeats what ran.
INDUCTOR_KERNEL_PREFIX = "triton_"
# The telemetry module's own bounds for a clock change between pages and a mostly idle GPU.
CLOCK_SPREAD = 0.05
MOSTLY_IDLE_UTIL_PERCENT = 50

SEVERITY_ORDER = ("high", "medium", "info")
COMPUTE_STAGES = tuple(s for s in STAGES if s != DECODE)

_CATEGORY_ADVICE = {
    "elementwise": "fuse chains of elementwise kernels (torch.compile) so each tensor is read once",
    "copy": "look for layout changes and dtype casts that copy tensors (.contiguous(), .to(), cat)",
    "gemm": "check the GEMM shapes and tiles in Nsight Compute; batching pages raises their efficiency",
    "attention": "make sure a fused flash-attention kernel runs (SDPA backend) and not the math path",
    "reduction": "fuse norms and softmax into their neighbours (fused RMSNorm / LayerNorm kernels)",
    "communication": "overlap collectives with compute, or shard less",
}


def _stages(analysis: Analysis) -> dict[str, StageSummary]:
    return {s["stage"]: s for s in analysis.get("stages") or []}


def _clean_stage(analysis: Analysis, stage: str) -> EfficiencyStage | None:
    eff = analysis.get("efficiency")
    if not eff or not eff.get("available"):
        return None
    return (eff.get("stages") or {}).get(stage)


def _us(ns: float) -> str:
    return f"{ns / 1e3:,.1f} µs"


def _launch_api(analysis: Analysis, stage: str) -> dict[str, float] | None:
    """The torch pass's CUDA launch calls in a stage: how many and their CPU time, or None."""
    operators = analysis.get("operators")
    table = (operators.get("stages") or {}).get(stage) if operators else None
    rows = [
        op
        for op in (table.get("top", []) if table else [])
        if op["name"].startswith(("cudaLaunch", "cuLaunch"))
    ]
    if not rows:
        return None
    return {"calls": sum(op["calls"] for op in rows), "self_cpu_us": sum(op["self_cpu_us"] for op in rows)}


def _launch_bound(analysis: Analysis, s: StageSummary) -> Finding | None:
    stage, wall, busy, kernels = s["stage"], s["wall_ns"], s["gpu_busy_ns"], s["kernel_count"]
    if kernels == 0 or wall <= 0 or not s["instances"]:
        return None
    pages = len(analysis.get("pages") or [])
    clean = _clean_stage(analysis, stage)
    share_nsys = busy / wall
    share_clean = None
    if clean and pages and clean["clean_seconds_per_page"]:
        share_clean = min(busy / pages / (clean["clean_seconds_per_page"] * 1e9), 1.0)
    share = share_clean if share_clean is not None else share_nsys
    if share >= LAUNCH_BOUND_BUSY_SHARE:
        return None
    unit = "decode step" if stage == DECODE else "page"
    per_instance = kernels / s["instances"]
    host_per_kernel = (wall - busy) / kernels
    start_delay = (s.get("launch_to_start_ns") or {}).get("median")
    graphs = graph_use(s)
    use, idle = graphs["graph_use"], (wall - busy) / s["instances"]
    evidence: dict[str, Any] = {
        "gpu_busy_ns": busy,
        "wall_ns": wall,
        "busy_share_under_nsys": share_nsys,
        "busy_share_of_clean_time": share_clean,
        "judged_on": "clean" if share_clean is not None else "nsys",
        "threshold": LAUNCH_BOUND_BUSY_SHARE,
        "kernels": kernels,
        "kernels_per_instance": per_instance,
        "host_ns_per_kernel": host_per_kernel,
        "launch_to_start_median_ns": start_delay,
        "idle_ns_per_instance": idle,
        **graphs,
    }
    text = f"GPU busy {ms(busy)} of {ms(wall)} {stage} wall time under nsys ({pct(share_nsys)})"
    if share_clean is not None:
        text += f", {pct(share_clean)} of its clean-pass time"
    if use in ("graphs", "partial"):  # a graph kernel costs no launch call: the idle time per call left
        one_by_one, launches = (
            graphs["one_by_one_kernels_per_instance"],
            graphs["graph_launches_per_instance"],
        )
        per_call = evidence["idle_ns_per_launch_call"] = idle / (one_by_one + launches or 1)
        text += (
            f"; {per_instance:,.0f} kernels per {unit}: {graphs['graph_kernels_per_instance']:,.0f} replayed "
            f"from CUDA graphs ({launches:.3g} graph launch{'' if launches == 1 else 'es'}), "
            f"{one_by_one:,.0f} launched one by one; the GPU idles {ms(idle)} per {unit}, "
            f"{_us(per_call)} per launch call left (one by one or of a graph)"
        )
    else:
        text += (
            f"; {per_instance:,.0f} kernels per {unit}, about {_us(host_per_kernel)} of host time per kernel"
        )
    if start_delay:  # graph kernels count from their graph's launch: a long delay there is no queue
        text += f"; a kernel starts a median {_us(start_delay)} after its launch call"
        text += " (no queue of work)" if use == "eager" else ""
    api = _launch_api(analysis, stage)
    if api:
        evidence["launch_api_calls"], evidence["launch_api_self_cpu_us"] = api["calls"], api["self_cpu_us"]
        text += f"; torch pass: {api['calls']:,} launch calls, {api['self_cpu_us'] / 1e3:,.1f} ms of CPU"
    where = " between CUDA graph replays" if use == "graphs" else ""
    return _finding(
        "launch_bound",
        "high",
        stage,
        f"{stage} is launch-bound{where}: the GPU is idle {pct(1 - share)} of the time",
        text + ".",
        evidence,
        launch_advice(stage, unit, graphs),
    )


def _low_mfu(analysis: Analysis, stage: str, launch_bound: bool) -> Finding | None:
    clean = _clean_stage(analysis, stage)
    mfu = clean.get("mfu") if clean else None
    if clean is None or mfu is None or mfu >= LOW_MFU:
        return None
    inputs = analysis["efficiency"]["inputs"]
    evidence = {
        "mfu": mfu,
        "threshold": LOW_MFU,
        "achieved_tflops": clean["achieved_tflops"],
        "peak_tflops": inputs["peak_tflops"],
        "flops_per_page": clean["flops_per_page"],
        "clean_seconds_per_page": clean["clean_seconds_per_page"],
    }
    seconds = clean["clean_seconds_per_page"]
    text = (
        f"{number(clean['flops_per_page'] / 1e9)} GFLOP per page in {ms(seconds * 1e9)} (clean pass)"
        f" = {number(clean['achieved_tflops'])} TFLOP/s of the {number(inputs['peak_tflops'])} "
        f"TFLOP/s dense {inputs['dtype']} peak."
    )
    advice = (
        "remove the launch-bound first (its finding); then look at its top kernels in Nsight Compute"
        if launch_bound
        else "look at its top kernels in Nsight Compute (tensor-core use, occupancy); batch pages"
    )
    return _finding("low_mfu", "high", stage, f"{stage} reaches {pct(mfu)} MFU", text, evidence, advice)


def _low_mbu(analysis: Analysis) -> Finding | None:
    eff = analysis.get("efficiency")
    mbu = eff.get("decode_mbu") if eff and eff.get("available") else None
    value = mbu.get("mbu") if mbu else None
    if mbu is None or value is None or value >= LOW_MBU:
        return None
    evidence: dict[str, Any] = {
        key: mbu[key]
        for key in ("mbu", "bytes_per_step", "clean_seconds_per_step", "achieved_gbs", "peak_bandwidth_gbs")
    }
    evidence["threshold"] = LOW_MBU
    text = (
        f"each decode step reads {number(mbu['bytes_per_step'] / 1e6)} MB (weights + KV cache) in "
        f"{ms(mbu['clean_seconds_per_step'] * 1e9)} = {number(mbu['achieved_gbs'])} GB/s of "
        f"{number(mbu['peak_bandwidth_gbs'])} GB/s peak."
    )
    return _finding(
        "low_mbu",
        "high",
        DECODE,
        f"decode reaches {pct(value)} MBU",
        text,
        evidence,
        "decode several pages together (one weight read serves several tokens) and cut launches per step",
    )


def _largest_category(s: StageSummary) -> Finding | None:
    by_category = s.get("kernel_time_by_category") or {}
    if not s["kernel_time_ns"] or not by_category:
        return None
    category, time_ns = max(by_category.items(), key=lambda item: item[1])
    share = time_ns / s["kernel_time_ns"]
    largest = next((k for k in s.get("top_kernels", []) if k.get("category") == category), None)
    evidence: dict[str, Any] = {
        "category": category,
        "time_ns": time_ns,
        "share_of_stage_kernel_time": share,
        "largest_kernel": largest_kernel(largest),
    }
    text = f"{category} kernels take {ms(time_ns)}, {pct(share)} of {s['stage']}'s kernel time"
    if largest:
        text += f"; the largest of them: {largest['short_name']} ({largest['count']:,} calls, "
        text += f"{ms(largest['time_ns'])})"
    advice = _CATEGORY_ADVICE.get(category)
    if category == "elementwise" and largest and largest["short_name"].startswith(INDUCTOR_KERNEL_PREFIX):
        advice = (
            f"{largest['short_name']} is torch.compile's (Inductor's) fusion already: see in Nsight Compute "
            "whether it moves more bytes than its tensors hold (DRAM throughput against the peak)"
        )
    return _finding(
        "largest_category",
        "info",
        s["stage"],
        f"{s['stage']}: {category} is the largest kernel category ({pct(share)})",
        text + ".",
        evidence,
        advice,
    )


def _dominant_kernel(s: StageSummary) -> Finding | None:
    top = s["top_kernels"][0] if s.get("top_kernels") else None
    if not top or top["share_of_range_kernel_time"] <= DOMINANT_KERNEL_SHARE:
        return None
    evidence: dict[str, Any] = {k: top[k] for k in ("name", "short_name", "category", "count", "time_ns")}
    evidence |= {
        "share_of_stage_kernel_time": top["share_of_range_kernel_time"],
        "threshold": DOMINANT_KERNEL_SHARE,
    }
    return _finding(
        "dominant_kernel",
        "info",
        s["stage"],
        f"{s['stage']}: one kernel takes {pct(top['share_of_range_kernel_time'])} of the kernel time",
        f"{top['short_name']} ({top['category']}): {top['count']:,} calls, {ms(top['time_ns'])}.",
        evidence,
        "tune this kernel first (Nsight Compute: ncu --kernel-name with its name)",
    )


def _unstable(analysis: Analysis) -> list[Finding]:
    timing = analysis.get("timing")
    if not timing or not timing.get("statistics"):
        return []
    stats = timing["statistics"]
    telemetry = timing.get("telemetry")
    out = []
    for stage, st in (stats.get("stages") or {}).items():
        verdict = st.get("verdict")
        if not verdict or verdict.get("stable") is not False:
            continue
        evidence: dict[str, Any] = {
            "cv": st["cv"],
            "threshold": stats["threshold_cv"],
            "pages": st["count"],
            "mean_ns": st["mean"],
            "outliers": st["outliers"],
        }
        if st["count"] >= MIN_PAGES_FOR_CI:
            evidence["ci95_low_ns"], evidence["ci95_high_ns"] = st["ci95_low"], st["ci95_high"]
            spread_text = f"95 % CI {confidence_interval(st)}"  # clipped at 0 ms, saying so
        else:  # too few pages for a meaningful interval (MIN_PAGES_FOR_CI): the pages' own values
            evidence["values_ns"] = st.get("values", [])
            spread_text = "pages " + ", ".join(ms(v) for v in st.get("values", []))
        text = f"{st['count']} clean pages: mean {ms(st['mean'])}, {spread_text}; {verdict['why']}"
        advice = (
            "use more pages or --repeats (the CI narrows with their square root) and compare runs only "
            "beyond it"
        )
        first_use = verdict.get("first_use")
        rest_cv = first_use.get("cv_without_those_pages") if first_use else None
        if first_use:  # the verdict named first use of an input shape: that, not the host, comes first
            evidence["first_use"] = first_use
            advice = f"{WARM_UP_EVERY_SHAPE}; " + advice
        if (
            telemetry
            and telemetry.get("available")
            and not (first_use and (rest_cv is None or rest_cv <= stats["threshold_cv"]))
        ):
            evidence["sm_clock_spread"] = telemetry["sm_clock_spread"]
            evidence["gpu_util_mean_percent"] = telemetry["gpu_util_mean"]
            text += f"; NVML: {telemetry['note']}"
            if telemetry["sm_clock_spread"] > CLOCK_SPREAD:
                advice = "lock the GPU clocks (nvidia-smi --lock-gpu-clocks) and rerun; " + advice
            elif telemetry["gpu_util_mean"] < MOSTLY_IDLE_UTIL_PERCENT:
                advice = "rerun on a quiet host with the process pinned to free cores (taskset); " + advice
        out.append(
            _finding(
                "unstable",
                "medium",
                stage,
                f"{stage} is not stable: CV {pct(st['cv'])} (threshold {pct(stats['threshold_cv'])})",
                text + ".",
                evidence,
                advice,
            )
        )
    return out


WARM_UP_EVERY_SHAPE = (
    "warm up every input shape before measuring: capture with --warmup 1 or more (the default), which "
    "runs each distinct input shape of the measured pages first"
)


def _first_use(analysis: Analysis) -> Finding | None:
    """Measured pages of the nsys pass that were the first of their input shape or loaded kernels
    (analysis.lazy_loading): their ranges' times include that one-off work."""
    found = analysis.get("first_use")
    if not found or not found.get("nsys_pages_with_first_use"):
        return None
    pages, first_seen = found["nsys_pages_with_first_use"], found.get("nsys_pages_first_of_shape")
    calls = found["calls_in_those_pages"]
    loads = ", ".join(f"{n:,} {api}" for api, n in calls["module_loads"].items()) or "none"
    attribute_calls = sum(calls["kernel_attribute_calls"].values())
    text = (
        f"nsys pass pages {pages}"
        + (f" ({first_seen} the first run of their input shape)" if first_seen else "")
        + f": module loads {loads} ({ms(calls['module_load_ns'])}) and {attribute_calls:,} kernel-attribute "
        f"calls ({ms(calls['kernel_attribute_ns'])}) inside their page ranges; their stage times under nsys "
        "include loading kernels on first use."
    )
    evidence = {"pages": pages, "shape_first_seen": first_seen, **calls}
    evidence["time_ns"] = calls["module_load_ns"] + calls["kernel_attribute_ns"]
    title = (
        f"{len(pages)} measured nsys-pass page(s) include first use of an input shape (lazy kernel loading)"
    )
    return _finding("first_use", "medium", None, title, text, evidence, WARM_UP_EVERY_SHAPE)


def _recompiled(analysis: Analysis) -> Finding | None:
    """--decode compiled: measured pages during which torch._dynamo compiled again (a shape the
    warm-up did not run, or a guard that failed): their times include compilation."""
    loop = analysis.get("decode_loop")
    if loop is None:
        return None
    passes = {name: c for name, c in loop["passes"].items() if c["recompiled_pages"]}
    if not passes:
        return None
    said = "; ".join(
        f"{name} pass pages {c['recompiled_pages']} ({c['recompilations']} graph(s))"
        for name, c in passes.items()
    )
    evidence = {
        name: {"pages": c["recompiled_pages"], "graphs": c["recompilations"]} for name, c in passes.items()
    }
    text = (
        f"torch._dynamo compiled during measured pages: {said}; their stage times include "
        "compilation (and CUDA-graph capture), which belongs in the warm-up."
    )
    title = "the decode step compiled inside measured pages (a shape or guard the warm-up did not cover)"
    advice = (
        "warm up every input shape (--warmup 1 or more) and keep shapes fixed across pages (the same "
        "--max-new-tokens, tiles and prompt length); driver-info.json's compile object names the graph breaks"
    )
    return _finding("recompiled", "medium", DECODE, title, text, evidence, advice)


def _profiler_overhead(analysis: Analysis) -> Finding | None:
    ratios: dict[str, float] = {}
    for stage in STAGES:
        clean = _clean_stage(analysis, stage)
        ratio = clean.get("nsys_over_clean") if clean else None
        if ratio:
            ratios[stage] = ratio
    high = {s: r for s, r in ratios.items() if r > HIGH_PROFILER_OVERHEAD}
    if not high:
        return None
    listed = ", ".join(f"{s} {r:.2f}×" for s, r in ratios.items())
    return _finding(
        "profiler_overhead",
        "info",
        None,
        f"nsys stretches stage times up to {max(high.values()):.2f}×",
        f"stage wall time under nsys / clean pass: {listed}. Times under nsys overstate the real ones; "
        "MFU, MBU and the stability figures use the clean pass.",
        {"nsys_over_clean": ratios, "threshold": HIGH_PROFILER_OVERHEAD},
        None,
    )


def _missing(analysis: Analysis) -> list[Finding]:
    out = []
    totals = analysis.get("totals")
    if totals is not None and totals["kernels"] == 0:
        run = analysis.get("run")
        device = ((run.get("driver") if run else None) or {}).get("device")
        out.append(
            _finding(
                "no_kernels",
                "info",
                None,
                "no CUDA kernels in the export",
                (f"the workload ran on {device}; " if device else "")
                + "kernel, GPU busy and category figures are zero, stage times are NVTX wall times only.",
                {"kernels": 0, "device": device},
                "capture on a GPU (--device cuda) for kernel figures" if device == "cpu" else None,
            )
        )
    eff = analysis.get("efficiency")
    if analysis.get("timing") is None and (eff is None or not eff.get("available")):
        out.append(
            _finding(
                "no_clean_pass",
                "info",
                None,
                "no clean timing pass",
                "MFU, MBU, the stability verdicts, telemetry and the profiler overhead are not measured.",
                {
                    "reason": eff.get("reason", "not a perfctl run folder")
                    if eff
                    else "not a perfctl run folder"
                },
                "capture with --tool all",
            )
        )
    elif eff and eff.get("available") and eff["inputs"].get("peak_tflops") is None:
        out.append(
            _finding(
                "peak_unknown",
                "info",
                None,
                "MFU unknown: no dense peak for this device",
                f"{eff['inputs']['peak_source']}.",
                {"gpu": eff["inputs"].get("gpu")},
                "pass --peak-tflops and --peak-bandwidth-gbs to perfctl analyze",
            )
        )
    return out


def _impact(finding: Finding) -> float:
    ev = finding["evidence"]
    return float(ev.get("wall_ns") or ev.get("time_ns") or ev.get("mean_ns") or 0)


def findings(analysis: Analysis) -> list[Finding]:
    """Findings of an analysis, most severe first; within a severity, largest time first."""
    out: list[Finding] = []
    stages = _stages(analysis)
    bound = set()
    for stage in STAGES:
        s = stages.get(stage)
        if s is None:
            continue
        found = _launch_bound(analysis, s)
        if found:
            bound.add(stage)
            out.append(found)
    for stage in COMPUTE_STAGES:
        found = _low_mfu(analysis, stage, stage in bound)
        if found:
            out.append(found)
    out.extend(x for x in [_low_mbu(analysis)] if x)
    out.extend(_unstable(analysis))
    out.extend(x for x in [_first_use(analysis), _recompiled(analysis)] if x)
    for stage in STAGES:
        s = stages.get(stage)
        if s is not None:
            out.extend(x for x in (_largest_category(s), _dominant_kernel(s)) if x)
    out.extend(x for x in [_profiler_overhead(analysis)] if x)
    out.extend(_missing(analysis))
    out.extend(ncu_findings(analysis))
    out.sort(key=lambda f: (SEVERITY_ORDER.index(f["severity"]), -_impact(f)))
    return out
