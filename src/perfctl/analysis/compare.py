"""Two analyses side by side: per stage, what changed and whether the change is beyond noise.

Pure functions over analysis dicts (the analysis.json of `perfctl analyze`). Every figure is per page,
so runs with different page counts compare. The noise comes from the repeats, i.e. the spread over
pages of each run:

- stage times: the clean timing pass (`timing.statistics`, mean/std/count over the measured pages)
  when both runs have one; otherwise the nsys pass's per-page stage times (`pages[]`) of both runs.
  One source for both sides, never one of each: stage times under nsys are 1.6-1.8x the clean ones.
- MFU and achieved TFLOP/s (`efficiency`): FLOPs / clean time. With the same FLOPs per page on both
  sides they are a function of the stage time, so their difference and interval are the time's mapped
  through FLOPs / t (compare_power.from_time) and their verdict is the time's: a stage cannot be
  "within noise" on time and "lower" on TFLOP/s. With different FLOPs per page (different work) they
  are judged on their own, the clean time's uncertainty carried over with the delta method.
- kernel count and kernel time per page: the nsys pass's `pages[]`.
- top kernels: analysis.json keeps each kernel's total per stage, not its per-page spread, so their
  deltas are shown without a noise verdict.

Each difference B - A gets a 95 % confidence interval from Welch's t-test (unequal variances, the
Welch-Satterthwaite degrees of freedom): beyond noise when the interval excludes zero. With fewer
than two pages on a side there is no spread to judge, and the verdict says "unknown". Each
difference also says the smallest change the two runs can tell from noise (`min_detectable_change_pct`,
compare_power), which the gate holds against its threshold.

Runs of different workloads (REFUSED: model, mode, device and GPU model, batch size, decode mode, and
what a decode step covers: stages.DECODE_STEP_SPAN) are refused
unless the caller allows them; every difference is listed (`run_differences`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from perfctl.analysis.compare_power import Sample, from_time, min_detectable_change, welch
from perfctl.analysis.repeatability import spread
from perfctl.analysis.result import Analysis, StageSummary
from perfctl.analysis.result_compare import (
    Comparison,
    Difference,
    KernelDelta,
    RunDifference,
    RunSide,
    StageComparison,
)
from perfctl.analysis.result_passes import EfficiencyStage
from perfctl.analysis.runs import KERNEL_NAMES_KEPT
from perfctl.stages import DECODE_STEP_SPAN, DECODE_STEP_SPAN_FORWARD, STAGES

CLEAN, NSYS = "clean", "nsys"
CUDA_EVENTS, HOST_CLOCK = "cuda_events", "host_clock"
SOURCES = {
    (
        CLEAN,
        CUDA_EVENTS,
    ): "clean timing pass, CUDA-event stage times (timing.statistics.stages.*.cuda_events: "
    "the GPU's clock, the times MFU divides by), no profiler",
    (CLEAN, HOST_CLOCK): "clean timing pass, host-clock stage times between synchronized stage edges "
    "(timing.statistics), no profiler",
    (NSYS, None): "nsys pass (pages[]: NVTX stage times per page, under the profiler)",
}
KERNEL_SOURCE = "nsys pass (pages[]: each page's kernels per stage)"
METHOD = (
    "difference of per-page means B - A; 95 % confidence interval from Welch's t-test (unequal "
    "variances, Welch-Satterthwaite degrees of freedom); beyond noise when the interval excludes 0"
)
# how a change of each metric reads: (word when B is higher, word when B is lower)
WORDS = {
    "time": ("slower", "faster"),
    "mfu": ("higher", "lower"),
    "achieved_tflops": ("higher", "lower"),
    "kernel_count": ("more", "fewer"),
    "kernel_time": ("more", "less"),
}
WITHIN, UNKNOWN = "within noise", "unknown"
WORKLOAD_KEYS = (
    "max_new_tokens",
    "tiles",
    "mode",
    "repeats",
    "dtype",
    "device",
    "seed",
    "batch_size",
    "decode",
)
WORKLOAD_DEFAULTS: dict[str, object] = {
    "tiles": 0,  # runs made before --tiles existed had none: the global view only
    # runs made before the workload recorded them generated one page at a time with HF generate's
    # eager decode loop: batch size 1, decode "eager"
    "batch_size": 1,
    "decode": "eager",
}
# what makes two runs different workloads, not two measurements of one: compare refuses them unless
# --allow-different (a different dtype, token count or tile count stays a warning). The device is both
# its kind (cpu, cuda) and the GPU model: an H100 run against an H200 run compares two machines, which
# is a fine question to ask, but only on purpose.
REFUSED = ("model", "mode", "device", "gpu", "batch_size", "decode", "decode_step_span")


def difference(a: Sample, b: Sample, words: tuple[str, str]) -> Difference:
    """B - A with its 95 % confidence interval (Welch), a change word (up, down, within noise) and
    the smallest change these runs could tell from noise (compare_power.min_detectable_change)."""
    delta = b.mean - a.mean
    mdc, why = min_detectable_change(a, b)
    out: Difference = {
        "a": a.to_json(),
        "b": b.to_json(),
        "delta": delta,
        "delta_pct": 100 * delta / a.mean if a.mean else None,
        "ci95_low": None,
        "ci95_high": None,
        "df": None,
        "change": UNKNOWN,
        "min_detectable_change_pct": mdc,
        "min_detectable_change_reason": why,
    }
    found = welch(a, b)
    if found is None:
        return out
    half, df = found
    low, high = delta - half, delta + half
    change = words[0] if low > 0 else words[1] if high < 0 else WITHIN
    out["ci95_low"], out["ci95_high"], out["df"], out["change"] = low, high, df, change
    return out


def clean_stage_samples(analysis: Analysis, events: bool = False) -> dict[str, Sample] | None:
    """Per-page stage and page times of the clean pass (`timing.statistics`): with `events`, the
    stages' CUDA-event times (on a GPU; the times MFU divides by), None when the run has none."""
    timing = analysis.get("timing")
    stats = timing.get("statistics") if timing else None
    if not stats:
        return None
    out: dict[str, Sample] = {}
    for stage in STAGES:
        item = stats["stages"][stage]
        if not events:
            out[stage] = Sample(item["mean"], item["std"], item["count"])
        elif ev := item.get("cuda_events"):
            out[stage] = Sample(ev["mean"], (ev.get("cv") or 0.0) * ev["mean"], item["count"])
        else:
            return None
    out["page"] = Sample(stats["page"]["mean"], stats["page"]["std"], stats["page"]["count"])
    return out


def clean_clock(a: Analysis, *others: Analysis) -> str:
    """The clean pass's stage clock every run given has: CUDA events (GPU runs since perfctl records
    them) or the host clock between synchronized stage edges."""
    runs = (a, *others)
    return CUDA_EVENTS if all(clean_stage_samples(r, events=True) for r in runs) else HOST_CLOCK


def page_samples(analysis: Analysis, field: PageField) -> dict[str, Sample] | None:
    """Per-page figures of the nsys pass (`pages[]`): stage `field` (wall_ns, kernel_count, ...)."""
    pages = analysis.get("pages") or []
    if not pages:
        return None
    # a page range without a sequence number (no payload) is labelled by its place: labels name
    # outliers, which a Sample does not keep
    labels = [i if p["sequence"] is None else p["sequence"] for i, p in enumerate(pages)]
    out: dict[str, Sample] = {}
    for stage in STAGES:
        out[stage] = _sample([float(p["stages"][stage][field]) for p in pages], labels)
    if field == "wall_ns":
        out["page"] = _sample([float(p["wall_ns"]) for p in pages], labels)
    return out


PageField = Literal["wall_ns", "kernel_count", "kernel_time_ns"]  # the figures compared per page


def headline_times(analysis: Analysis) -> tuple[str | None, dict[str, Sample] | None]:
    """One run's stage and page times per page: the clean pass's when it has one (CUDA-event stage
    times when it has them), else the nsys pass's."""
    clean = clean_stage_samples(analysis, events=clean_clock(analysis) == CUDA_EVENTS)
    if clean is not None:
        return CLEAN, clean
    pages = page_samples(analysis, "wall_ns")
    return (NSYS, pages) if pages is not None else (None, None)


def _sample(values: list[float], labels: list[int]) -> Sample:
    s = spread(values, labels)
    return Sample(s["mean"], s["std"], s["count"])


def time_source(a: Analysis, b: Analysis) -> tuple[str | None, list[str]]:
    """Which stage times both runs can be compared on, and notes about the choice."""
    clean_a, clean_b = clean_stage_samples(a) is not None, clean_stage_samples(b) is not None
    if clean_a and clean_b:
        return CLEAN, []
    nsys_ok = bool(a.get("pages")) and bool(b.get("pages"))
    lacking = {(False, True): "run A has no", (True, False): "run B has no"}.get(
        (clean_a, clean_b), "neither run has a"
    )
    if nsys_ok:
        return NSYS, [
            f"{lacking} clean timing pass: stage times are the nsys pass's for both runs",
            "MFU needs the clean pass of both runs: not compared",
        ]
    return None, [
        f"no stage times in common: {lacking} clean timing pass, and not both runs have "
        "per-page figures from an nsys export"
    ]


def _efficiency_samples(
    analysis: Analysis, times: dict[str, Sample], key: Literal["mfu", "achieved_tflops"]
) -> dict[str, Sample | None]:
    """MFU or achieved TFLOP/s per stage with the clean time's relative spread (delta method:
    value = FLOPs / mean time, so its standard error is value × SE(time) / time)."""
    eff = analysis.get("efficiency")
    out: dict[str, Sample | None] = {}
    for stage in STAGES:
        figures = (eff.get("stages") or {}).get(stage) if eff and eff.get("available") else None
        value = figures.get(key) if figures else None
        t = times[stage]
        if value is None or not t.mean:
            out[stage] = None
        else:
            out[stage] = Sample(float(value), float(value) * t.std / t.mean, t.count)
    return out


def _identity(analysis: Analysis, label: str) -> RunSide:
    run = analysis.get("run")
    driver = (run.get("driver") if run else None) or {}
    export = analysis.get("export")
    gpus = (export.get("gpus") if export else None) or []
    gpu = driver.get("gpu_name") or (gpus[0].get("name") if gpus else None)
    workload = (run.get("workload") if run else None) or {}
    return {
        "label": label,
        "run_id": run.get("run_id") if run else None,
        "status": run.get("status") if run else None,
        "reason": run.get("reason") if run else None,
        "model": ((run.get("model_spec") if run else None) or {}).get("name"),
        "gpu": gpu,
        "device": driver.get("device") or workload.get("device"),
        "dtype": driver.get("dtype") or workload.get("dtype"),
        "workload": {k: _or_default(workload.get(k), k) for k in WORKLOAD_KEYS}
        | {"pages": len(workload.get("pages") or [])},
        "clean_pages": _clean_pages(analysis),
        "nsys_pages": len(analysis.get("pages") or []) or None,
        "decode_step_span": decode_step_span(driver, workload),
    }


def decode_step_span(driver: Mapping[str, Any], workload: Mapping[str, Any]) -> str:
    """What the run's decode steps cover (driver.markers): its driver's record, else the span its
    perfctl marked: eager runs from before the record, the decoder's forward and LM head alone; static
    and compiled runs were always marked token to token."""
    recorded = driver.get("decode_step_span")
    if isinstance(recorded, str):
        return recorded
    eager = (workload.get("decode") or WORKLOAD_DEFAULTS["decode"]) == "eager"
    return DECODE_STEP_SPAN_FORWARD if eager else DECODE_STEP_SPAN


def _or_default(value: object, key: str) -> object:
    return WORKLOAD_DEFAULTS.get(key) if value is None else value


def _clean_pages(analysis: Analysis) -> int | None:
    timing = analysis.get("timing")
    stats = timing.get("statistics") if timing else None
    page = stats.get("page") if stats else None
    return page.get("count") if page else None


def run_differences(ia: RunSide, ib: RunSide) -> list[RunDifference]:
    """What the two runs differ in, each refused or not (REFUSED). A side that does not say (null)
    is not known to differ: listed, never refused."""
    pairs: list[tuple[str, object, object]] = [
        ("model", ia["model"], ib["model"]),
        ("gpu", ia["gpu"], ib["gpu"]),
        ("device", ia["device"], ib["device"]),
        ("dtype", ia["dtype"], ib["dtype"]),
    ]
    if ia["workload"].get("decode") == ib["workload"].get("decode"):  # else the decode modes' difference
        # says it: static and compiled steps were always token to token
        pairs.append(("decode_step_span", ia["decode_step_span"], ib["decode_step_span"]))
    pairs += [
        (key, ia["workload"].get(key), ib["workload"].get(key))
        for key in sorted(set(ia["workload"]) | set(ib["workload"]))
        if key not in ("device", "dtype")  # the run's own (above), the driver's when it says
    ]
    return [
        {"key": key, "a": va, "b": vb, "refused": key in REFUSED and va is not None and vb is not None}
        for key, va, vb in pairs
        if va != vb
    ]


def refusal(differences: list[RunDifference]) -> str | None:
    """The one line compare refuses with, or None when nothing it refuses differs."""
    refused = [d for d in differences if d["refused"]]
    if not refused:
        return None
    what = "; ".join(f"{d['key']}: {d['a']} vs {d['b']}" for d in refused)
    return f"the runs are different workloads ({what}): pass --allow-different to compare them anyway"


def _stage_item(analysis: Analysis, stage: str) -> StageSummary | None:
    return next((s for s in analysis.get("stages") or [] if s["stage"] == stage), None)


def _kernel_totals(item: StageSummary | None) -> dict[str, tuple[float, float]]:
    """name -> (calls, time_ns) of a stage's kernels over the whole run, as far as they are named."""
    if item is None:
        return {}
    out = {name: (float(c), float(ns)) for name, (c, ns) in (item.get("kernel_time_by_name") or {}).items()}
    out.update({k["name"]: (float(k["count"]), float(k["time_ns"])) for k in item.get("top_kernels") or []})
    return out


def top_kernel_deltas(a: Analysis, b: Analysis, stage: str, top: int) -> list[KernelDelta]:
    """The kernels among either run's top kernels of a stage whose time per page changed most.

    A kernel missing from one run is absent there (0) when that run names all its kernels of the
    stage; beyond its KERNEL_NAMES_KEPT names it is unknown (null)."""
    items = _stage_item(a, stage), _stage_item(b, stage)
    totals = [_kernel_totals(i) for i in items]
    complete = [len((i.get("kernel_time_by_name") if i else None) or {}) < KERNEL_NAMES_KEPT for i in items]
    pages = [len(x.get("pages") or []) or 1 for x in (a, b)]
    meta = {
        k["name"]: (k.get("short_name") or k["name"], k.get("category") or "")
        for i in reversed(items)
        for k in (i.get("top_kernels") if i else None) or []
    }
    rows: list[KernelDelta] = []
    for name, (short_name, category) in meta.items():
        per_page: list[tuple[float, float] | None] = []
        for side in (0, 1):
            found = totals[side].get(name)
            if found is None:
                per_page.append((0.0, 0.0) if complete[side] else None)
            else:
                per_page.append((found[0] / pages[side], found[1] / pages[side]))
        ra, rb = per_page
        ta, tb = (ra[1] if ra else None), (rb[1] if rb else None)
        delta = tb - ta if ta is not None and tb is not None else None
        rows.append(
            {
                "name": name,
                "short_name": short_name,
                "category": category,
                "in_a": name in totals[0],
                "in_b": name in totals[1],
                "a_calls_per_page": ra[0] if ra else None,
                "b_calls_per_page": rb[0] if rb else None,
                "a_time_ns_per_page": ta,
                "b_time_ns_per_page": tb,
                "delta_ns_per_page": delta,
                "delta_pct": 100 * delta / ta if delta is not None and ta else None,
            }
        )
    rows.sort(key=lambda r: (-abs(r["delta_ns_per_page"] or 0.0), r["name"]))
    return rows[:top]


def _efficiency_stage(analysis: Analysis, stage: str) -> EfficiencyStage | None:
    eff = analysis.get("efficiency")
    return (eff.get("stages") or {}).get(stage) if eff and eff.get("available") else None


def _peak_tflops(analysis: Analysis) -> float | None:
    eff = analysis.get("efficiency")
    inputs = eff.get("inputs") if eff else None
    return inputs.get("peak_tflops") if inputs else None


def stage_efficiency(
    a: Analysis,
    b: Analysis,
    stage: str,
    time: Difference,
    own: dict[str, tuple[Sample | None, Sample | None]],
) -> tuple[str | None, dict[str, Difference | None]]:
    """MFU and achieved TFLOP/s of one stage, and on what basis: with equal FLOPs per page on both
    sides they are FLOPs / time, so computed from the stage time's interval (their verdict is the
    time's, mirrored); with different FLOPs per page (different work) judged on their own, from the
    analyses' values with the time's spread (delta method)."""
    fa, fb = _efficiency_stage(a, stage), _efficiency_stage(b, stage)
    if fa is None or fb is None or fa.get("achieved_tflops") is None or fb.get("achieved_tflops") is None:
        return None, {"mfu": None, "achieved_tflops": None}
    if fa["flops_per_page"] == fb["flops_per_page"]:
        k = fa["flops_per_page"] / 1e3  # TFLOP/s = FLOPs / (t_ns 1e-9) / 1e12 = (FLOPs / 1e3) / t_ns
        peaks = _peak_tflops(a), _peak_tflops(b)
        mfu = None
        if fa.get("mfu") is not None and fb.get("mfu") is not None and peaks[0] and peaks[1]:
            mfu = from_time(time, k / peaks[0], k / peaks[1], WORDS["mfu"])
        return "time", {"mfu": mfu, "achieved_tflops": from_time(time, k, k, WORDS["achieved_tflops"])}
    out: dict[str, Difference | None] = {}
    for key, (sa, sb) in own.items():
        out[key] = difference(sa, sb, WORDS[key]) if sa and sb else None
    return "own", out


def compare_analyses(
    a: Analysis,
    b: Analysis,
    label_a: str = "A",
    label_b: str = "B",
    top: int = 5,
    allow_different: bool = False,
) -> Comparison:
    """The comparison of run B against run A (baseline); see docs/compare.md for every key.

    Raises ValueError when the two analyses have no stage times in common, or when they are different
    workloads (REFUSED) and not `allow_different`.
    """
    ia, ib = _identity(a, label_a), _identity(b, label_b)
    differs = run_differences(ia, ib)
    refused = refusal(differs)
    if refused and not allow_different:
        raise ValueError(refused)
    source, notes = time_source(a, b)
    if source is None:
        raise ValueError(notes[0])
    clock = clean_clock(a, b) if source == CLEAN else None
    if source == CLEAN:
        times_a, times_b = (clean_stage_samples(x, events=clock == CUDA_EVENTS) for x in (a, b))
        if clock == HOST_CLOCK and any(clean_clock(x) == CUDA_EVENTS for x in (a, b)):
            notes.append("only one run has CUDA-event stage times: host-clock stage times for both")
    else:
        times_a, times_b = page_samples(a, "wall_ns"), page_samples(b, "wall_ns")
    assert times_a is not None and times_b is not None
    warnings = [f"the runs differ: {d['key']}: {d['a']} vs {d['b']}" for d in differs] + notes
    kernels_a, kernels_b = page_samples(a, "kernel_count"), page_samples(b, "kernel_count")
    has_kernels = bool(kernels_a and kernels_b) and any(
        ((totals.get("kernels") if (totals := x.get("totals")) else None) or 0) > 0 for x in (a, b)
    )
    ktime_a, ktime_b = page_samples(a, "kernel_time_ns"), page_samples(b, "kernel_time_ns")
    eff: dict[str, tuple[dict[str, Sample | None], dict[str, Sample | None]]] = {
        key: (_efficiency_samples(a, times_a, key), _efficiency_samples(b, times_b, key))
        for key in ("mfu", "achieved_tflops")
    }
    stages: list[StageComparison] = []
    for stage in STAGES:
        time = difference(times_a[stage], times_b[stage], WORDS["time"])
        basis, efficiency = (
            stage_efficiency(
                a, b, stage, time, {key: (ea[stage], eb[stage]) for key, (ea, eb) in eff.items()}
            )
            if source == CLEAN
            else (None, {"mfu": None, "achieved_tflops": None})
        )
        fa, fb = _efficiency_stage(a, stage), _efficiency_stage(b, stage)
        kernels = bool(has_kernels and kernels_a and kernels_b and ktime_a and ktime_b)
        stages.append(
            {
                "stage": stage,
                "verdict": time["change"],
                "time_ns": time,
                "mfu": efficiency["mfu"],
                "achieved_tflops": efficiency["achieved_tflops"],
                "efficiency_basis": basis,
                "flops_per_page_a": fa["flops_per_page"] if fa else None,
                "flops_per_page_b": fb["flops_per_page"] if fb else None,
                "kernel_count": difference(kernels_a[stage], kernels_b[stage], WORDS["kernel_count"])
                if kernels and kernels_a and kernels_b
                else None,
                "kernel_time_ns": difference(ktime_a[stage], ktime_b[stage], WORDS["kernel_time"])
                if kernels and ktime_a and ktime_b
                else None,
                "top_kernels": top_kernel_deltas(a, b, stage, top) if kernels else [],
            }
        )
    if not (kernels_a and kernels_b):
        warnings.append("kernel figures need the nsys export of both runs: not compared")
    elif not has_kernels:
        warnings.append("neither run's nsys pass has CUDA kernels (CPU runs): kernel figures not compared")
    for ident in (ia, ib):
        if ident["status"] not in ("ok", None):
            why = f": {ident['reason']}" if ident["reason"] else ""
            warnings.append(f"run {ident['label']}'s capture ended {ident['status']}{why}")
    page = difference(times_a["page"], times_b["page"], WORDS["time"])
    return {
        "a": ia,
        "b": ib,
        "time_source": source,
        "clean_clock": clock,
        "time_source_text": SOURCES[(source, clock)],
        "kernel_source": KERNEL_SOURCE if has_kernels else None,
        "method": METHOD,
        "run_differences": differs,
        "allowed_different": bool(refused) and allow_different,
        "warnings": warnings,
        "stages": stages,
        "page": {"verdict": page["change"], "time_ns": page},
    }
