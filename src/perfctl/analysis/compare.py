"""Two analyses side by side: per stage, what changed and whether the change is beyond noise.

Pure functions over analysis dicts (the analysis.json of `perfctl analyze`). Every figure is per page,
so runs with different page counts compare. The noise comes from the repeats, i.e. the spread over
pages of each run:

- stage times: the clean timing pass (`timing.statistics`, mean/std/count over the measured pages)
  when both runs have one; otherwise the nsys pass's per-page stage times (`pages[]`) of both runs.
  One source for both sides, never one of each: stage times under nsys are 1.6-1.8x the clean ones.
- MFU and achieved TFLOP/s (`efficiency`): their uncertainty is the clean time's (MFU = FLOPs / time),
  carried over with the delta method.
- kernel count and kernel time per page: the nsys pass's `pages[]`.
- top kernels: analysis.json keeps each kernel's total per stage, not its per-page spread, so their
  deltas are shown without a noise verdict.

Each difference B - A gets a 95 % confidence interval from Welch's t-test (unequal variances, the
Welch-Satterthwaite degrees of freedom): beyond noise when the interval excludes zero. With fewer
than two pages on a side there is no spread to judge, and the verdict says "unknown".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from perfctl.analysis.repeatability import spread, t95
from perfctl.analysis.result import Analysis, StageSummary
from perfctl.analysis.runs import KERNEL_NAMES_KEPT
from perfctl.stages import STAGES

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
WORKLOAD_KEYS = ("max_new_tokens", "tiles", "mode", "repeats", "dtype", "device", "seed")
WORKLOAD_DEFAULTS = {"tiles": 0}  # runs made before --tiles existed had none: the global view only


class SampleRecord(TypedDict):
    mean: float
    std: float
    count: int


class Difference(TypedDict):
    """B - A of one figure, with its 95 % confidence interval (null with fewer than two pages)."""

    a: SampleRecord
    b: SampleRecord
    delta: float
    delta_pct: float | None
    ci95_low: float | None
    ci95_high: float | None
    df: float | None
    change: str


class RunSide(TypedDict):
    """Who one run is (`a`, `b`): what `_identity` reads of its analysis, and where it came from."""

    label: str
    run_id: str | None
    status: str | None
    reason: str | None
    model: str | None
    gpu: str | None
    device: str | None
    dtype: str | None
    workload: dict[str, Any]
    clean_pages: int | None
    nsys_pages: int | None
    origin: NotRequired[str]  # compare_run: the file, or how the analysis was made


class KernelDelta(TypedDict):
    name: str
    short_name: str
    category: str
    in_a: bool
    in_b: bool
    a_calls_per_page: float | None
    b_calls_per_page: float | None
    a_time_ns_per_page: float | None
    b_time_ns_per_page: float | None
    delta_ns_per_page: float | None
    delta_pct: float | None


class StageComparison(TypedDict):
    stage: str
    verdict: str
    time_ns: Difference
    mfu: Difference | None
    achieved_tflops: Difference | None
    kernel_count: Difference | None
    kernel_time_ns: Difference | None
    top_kernels: list[KernelDelta]


class PageComparison(TypedDict):
    verdict: str
    time_ns: Difference


class FailingStage(TypedDict):
    stage: str
    delta_pct: float | None


class Gate(TypedDict):
    fail_if_slower_pct: float
    failed: bool
    failing_stages: list[FailingStage]


class Comparison(TypedDict):
    """The comparison of run B against run A (docs/compare.md)."""

    a: RunSide
    b: RunSide
    time_source: str
    clean_clock: str | None
    time_source_text: str
    kernel_source: str | None
    method: str
    warnings: list[str]
    stages: list[StageComparison]
    page: PageComparison
    gate: NotRequired[Gate]  # with a threshold (compare_run)


@dataclass(frozen=True)
class Sample:
    """One run's per-page values of a figure, summarized: what Welch's test needs."""

    mean: float
    std: float
    count: int

    def to_json(self) -> SampleRecord:
        return {"mean": self.mean, "std": self.std, "count": self.count}


def difference(a: Sample, b: Sample, words: tuple[str, str]) -> Difference:
    """B - A with its 95 % confidence interval (Welch) and a change word: up, down, within noise."""
    delta = b.mean - a.mean
    out: Difference = {
        "a": a.to_json(),
        "b": b.to_json(),
        "delta": delta,
        "delta_pct": 100 * delta / a.mean if a.mean else None,
        "ci95_low": None,
        "ci95_high": None,
        "df": None,
        "change": UNKNOWN,
    }
    if a.count < 2 or b.count < 2:
        return out
    va, vb = a.std**2 / a.count, b.std**2 / b.count
    se = math.sqrt(va + vb)
    denominator = va**2 / (a.count - 1) + vb**2 / (b.count - 1)
    df = (va + vb) ** 2 / denominator if denominator > 0 else float(a.count + b.count - 2)
    half = t95(df) * se
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
        "workload": {k: workload.get(k, WORKLOAD_DEFAULTS.get(k)) for k in WORKLOAD_KEYS}
        | {"pages": len(workload.get("pages") or [])},
        "clean_pages": _clean_pages(analysis),
        "nsys_pages": len(analysis.get("pages") or []) or None,
    }


def _clean_pages(analysis: Analysis) -> int | None:
    timing = analysis.get("timing")
    stats = timing.get("statistics") if timing else None
    page = stats.get("page") if stats else None
    return page.get("count") if page else None


def _differences(ia: RunSide, ib: RunSide) -> list[str]:
    notes = []
    for key in ("model", "gpu", "device", "dtype"):
        if ia[key] != ib[key]:
            notes.append(f"{key}: {ia[key]} vs {ib[key]}")
    for key in sorted(set(ia["workload"]) | set(ib["workload"])):
        va, vb = ia["workload"].get(key), ib["workload"].get(key)
        if va != vb and key not in ("device", "dtype"):
            notes.append(f"{key}: {va} vs {vb}")
    return notes


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


def compare_analyses(
    a: Analysis, b: Analysis, label_a: str = "A", label_b: str = "B", top: int = 5
) -> Comparison:
    """The comparison of run B against run A (baseline); see docs/compare.md for every key.

    Raises ValueError when the two analyses have no stage times in common.
    """
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
    ia, ib = _identity(a, label_a), _identity(b, label_b)
    warnings = [f"the runs differ: {d}" for d in _differences(ia, ib)] + notes
    kernels_a, kernels_b = page_samples(a, "kernel_count"), page_samples(b, "kernel_count")
    has_kernels = bool(kernels_a and kernels_b) and any(
        ((totals.get("kernels") if (totals := x.get("totals")) else None) or 0) > 0 for x in (a, b)
    )
    ktime_a, ktime_b = page_samples(a, "kernel_time_ns"), page_samples(b, "kernel_time_ns")
    eff = {
        key: (_efficiency_samples(a, times_a, key), _efficiency_samples(b, times_b, key))
        for key in ("mfu", "achieved_tflops")
    }
    stages: list[StageComparison] = []
    for stage in STAGES:
        time = difference(times_a[stage], times_b[stage], WORDS["time"])
        efficiency: dict[str, Difference | None] = {}
        for key, (ea, eb) in eff.items():
            sa, sb = ea[stage], eb[stage]
            efficiency[key] = difference(sa, sb, WORDS[key]) if source == CLEAN and sa and sb else None
        kernels = bool(has_kernels and kernels_a and kernels_b and ktime_a and ktime_b)
        stages.append(
            {
                "stage": stage,
                "verdict": time["change"],
                "time_ns": time,
                "mfu": efficiency["mfu"],
                "achieved_tflops": efficiency["achieved_tflops"],
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
        "warnings": warnings,
        "stages": stages,
        "page": {"verdict": page["change"], "time_ns": page},
    }


def gate(comparison: Comparison, fail_if_slower_pct: float) -> Gate:
    """The regression gate: failed when a stage is slower beyond noise by more than the threshold."""
    failing: list[FailingStage] = [
        {"stage": s["stage"], "delta_pct": s["time_ns"]["delta_pct"]}
        for s in comparison["stages"]
        if s["verdict"] == WORDS["time"][0]
        and s["time_ns"]["delta_pct"] is not None
        and s["time_ns"]["delta_pct"] > fail_if_slower_pct
    ]
    return {"fail_if_slower_pct": fail_if_slower_pct, "failed": bool(failing), "failing_stages": failing}
