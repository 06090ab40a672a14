"""How repeatable the clean timing pass was: statistics per stage over pages x repeats.

Warm-up pages are run and recorded by the driver (marked `"warmup": true`) but never enter these
numbers. Outliers (Tukey's fences: beyond 1.5 interquartile ranges from the quartiles) are flagged
with their page, not dropped. A stage is "stable" when its coefficient of variation is within the
threshold (default 10 %); otherwise the verdict names what the data points at.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from perfctl.analysis.lazy_loading import FirstUseEvidence, PageEvidence, first_seen_flag, first_use_hint
from perfctl.analysis.result_passes import (
    BriefSpread,
    HostSummary,
    MemorySummary,
    Spread,
    StageMemory,
    StageTiming,
    TimingStatistics,
    Verdict,
)
from perfctl.records import read_page_records
from perfctl.run_folder import DRIVER_INFO_FILE, PAGES_FILE, TIMING_PASS
from perfctl.stages import DECODE, STAGES

DEFAULT_THRESHOLD = 0.10
# A stage "follows" the host's CPU speed when its times correlate this well with the speed probe
# taken before each page, and the probe itself varied by at least HOST_SPEED_SPREAD (max/min):
# below that, a correlation would be noise explaining noise.
HOST_SPEED_CORRELATION = 0.6
HOST_SPEED_SPREAD = 1.15
# steal above this share of a page's CPU time is worth naming (a quiet VM shows ~0.0-0.1 %)
STEAL_NOTABLE = 0.02
# Pages a 95 % confidence interval of the mean (and the report's spread chart, whose box it is) needs
# before it is shown. Its width is 2 t(n-1)/sqrt(n) sample standard deviations: 17.97 at 2 pages,
# 4.97 at 3, 3.18 at 4, 2.48 at 5, against the 1.13, 1.69, 2.06, 2.33 std that n normal pages span on
# average: below 5 pages the interval is over 1.5 times the pages' own range, a figure of the t
# quantile more than of the run, and at 2 pages it goes below 0 s for any CV above 1 / 8.98 = 11 %.
# Fewer pages: the report shows their plain values instead.
MIN_PAGES_FOR_CI = 5
# two-sided 95 % Student t quantiles for 1..30 degrees of freedom; the normal 1.96 beyond
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]  # fmt: skip


@dataclass(frozen=True)
class CleanPass:
    """What the clean timing pass left: its measured pages' records and what its driver saw."""

    records: list[dict[str, Any]]
    info: dict[str, Any]  # timing/driver-info.json: device, GPU, dtype, tokens, telemetry


def load_clean_pass(run_dir: Path, manifest: dict[str, Any]) -> CleanPass | None:
    """The run's clean timing pass, or None when it has no successful one with a finished page."""
    if (manifest.get("timing") or {}).get("status") != "ok":
        return None
    records = read_page_records(run_dir / TIMING_PASS / PAGES_FILE)
    if not records:
        return None
    info_path = run_dir / TIMING_PASS / DRIVER_INFO_FILE
    info: dict[str, Any] = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return CleanPass(records, info)


def t95(degrees_of_freedom: float) -> float:
    """Two-sided 95 % Student t quantile; a fractional df (Welch) is rounded down, the safe side."""
    df = max(1, math.floor(degrees_of_freedom))
    return _T95[df - 1] if df <= len(_T95) else 1.96


def spread(values: list[float], labels: list[int]) -> Spread:
    """Mean, std, CV, min, median, p95, max, the 95 % confidence interval of the mean, outliers."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n == 0:
        return {"count": 0}
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    t = t95(n - 1)
    half = t * std / math.sqrt(n) if n > 1 else 0.0
    q1, median, q3, p95 = np.percentile(v, [25, 50, 75, 95])
    iqr = q3 - q1
    fenced = (v < q1 - 1.5 * iqr) | (v > q3 + 1.5 * iqr)
    outliers = [labels[i] for i in range(n) if fenced[i]]
    # the spread of the rest, shown beside the CV of all pages (which stays the verdict's figure):
    # how repeatable the stage is when the flagged moments are set aside, never instead of them
    rest = v[~fenced]
    cv_rest = float(rest.std(ddof=1) / rest.mean()) if len(rest) > 1 and rest.mean() else None
    return {
        "count": n,
        "mean": mean,
        "std": std,
        "cv": std / mean if mean else None,
        "min": float(v.min()),
        "median": float(median),
        "p95": float(p95),
        "max": float(v.max()),
        "ci95_low": mean - half,
        "ci95_high": mean + half,
        "outliers": outliers,
        "cv_without_outliers": cv_rest,
        "values": [float(x) for x in v],
        "pages": list(labels),
    }


def _speed_around_pages(records: list[dict[str, Any]]) -> np.ndarray | None:
    """Per page, the slower of the host speed probes taken right before it and right after it (the
    next page's probe: pages run back to back), or None when the records carry no probe."""
    probe = [(r.get("host_cpu") or {}).get("speed_probe_ns") for r in records]
    if not probe or not all(probe):
        return None
    before = np.asarray(probe, dtype=np.float64)
    after = np.append(before[1:], before[-1])
    slower: np.ndarray = np.maximum(before, after)
    return slower


def _host_hints(
    values: list[float], labels: list[int], outliers: list[int], records: list[dict[str, Any]]
) -> tuple[list[str], list[int]]:
    """What the host side says about a spread -- CPU speed changes (the probes around each page)
    and hypervisor steal -- and which outlier pages that explains. Nothing for older runs."""
    hints: list[str] = []
    explained: list[int] = []
    speed = _speed_around_pages(records) if len(records) == len(values) else None
    if speed is not None and len(values) >= 4:
        median = float(np.median(speed))
        slow = [label for label, s in zip(labels, speed, strict=True) if s >= HOST_SPEED_SPREAD * median]
        explained = [label for label in outliers if label in slow]
        if explained:
            worst = max(float(speed[labels.index(label)]) for label in explained)
            hints.append(
                f"outlier pages {explained} ran while the host CPU was slow: a fixed Python loop took up "
                f"to {worst / 1e6:.2f} ms around them against {median / 1e6:.2f} ms typically "
                f"({worst / median:.1f}x); launch-bound work runs at the host's pace (a busy physical "
                "host or CPU power management), not the GPU's"
            )
        elif float(np.std(values)) > 0 and float(speed.std()) > 0:
            r = float(np.corrcoef(values, speed)[0, 1])
            ratio = float(speed.max() / speed.min())
            if r >= HOST_SPEED_CORRELATION and ratio >= HOST_SPEED_SPREAD:
                hints.append(
                    f"the host CPU's speed varied: a fixed Python loop took {speed.min() / 1e6:.2f}-"
                    f"{speed.max() / 1e6:.2f} ms around pages ({ratio:.1f}x) and this stage follows it "
                    f"(r = {r:.2f}); launch-bound work runs at the host's pace, not the GPU's"
                )
    steal = [(r.get("host_cpu") or {}).get("steal_share") or 0.0 for r in records]
    if steal and max(steal) >= STEAL_NOTABLE:
        hints.append(f"the hypervisor withheld up to {max(steal):.1%} of the machine's CPU time (steal)")
    return hints, explained


def _verdict(
    stats: Spread,
    values: list[float],
    labels: list[int],
    threshold: float,
    records: list[dict[str, Any]] | None = None,
    evidence: list[PageEvidence] | None = None,
    stage: str | None = None,
    device: str | None = None,
) -> Verdict:
    """Stable or not and why. First-use evidence (a page's first run of its input shape, lazy kernel
    loading inside it under nsys: analysis.lazy_loading) is weighed first: the pages it explains are
    named and set aside, and only the spread of the others is judged on the rest of the evidence (the
    host's among it), so a first-use page is never blamed on the host."""
    cv = stats.get("cv")
    if cv is None or stats["count"] < 2:
        return {"stable": None, "why": "fewer than two pages: no spread to judge"}
    if cv <= threshold:
        return {"stable": True, "why": f"CV {cv:.1%} within ±{threshold:.0%}"}
    records = records or []
    first_use = None
    if evidence is not None and len(evidence) == len(values) == len(records):
        first_use = first_use_hint(values, labels, records, evidence, stage, stats["outliers"])
    if first_use is None:
        hints = _spread_hints(stats, values, labels, records, labels[0] if labels else None, device)
        return {"stable": False, "why": f"CV {cv:.1%} above ±{threshold:.0%}: " + "; ".join(hints)}
    keep = [i for i, label in enumerate(labels) if label not in first_use.explained]
    rest_values = [values[i] for i in keep]
    rest_labels = [labels[i] for i in keep]
    rest = spread(rest_values, rest_labels)
    rest_cv = rest.get("cv") if len(keep) > 1 else None
    hints = [first_use.text]
    if not keep:
        hints.append("every page carries it, so no spread is left to judge apart from it")
    elif rest_cv is None:
        hints.append("one page without it: no spread left to judge")
    elif rest_cv <= threshold:
        hints.append(f"without those pages, CV {rest_cv:.1%} within ±{threshold:.0%}")
    else:
        others = _spread_hints(
            rest, rest_values, rest_labels, [records[i] for i in keep], labels[0] if labels else None, device
        )
        hints.append(f"without those pages, CV {rest_cv:.1%}: " + "; ".join(others))
    return {
        "stable": False,
        "why": f"CV {cv:.1%} above ±{threshold:.0%}: " + "; ".join(hints),
        "cause": "first_use",
        "first_use": first_use.evidence | {"cv_without_those_pages": rest_cv},
    }


# What to check when nothing recorded explains a spread, by the device the pass ran on: a CPU run has no
# GPU clock, and its stages share the host's cores with every other process.
_CLOCKS = "check the GPU clocks (if any) and competing load"
_UNEXPLAINED_SPREAD_CHECK = {
    "cpu": "check competing load on the host's CPU cores (other processes) and CPU frequency scaling",
    "cuda": "check GPU clocks and competing load",
}


def _spread_hints(
    stats: Spread,
    values: list[float],
    labels: list[int],
    records: list[dict[str, Any]],
    first_label: int | None,
    device: str | None = None,
) -> list[str]:
    """What a spread without first-use evidence points at: a first-page effect, a trend, the host,
    other outliers. `first_label`: the run's first page (it may have been set aside from `labels`);
    `device`: where the pass ran (a CPU run has no GPU clock to blame)."""
    hints = []
    if labels and labels[0] == first_label and labels[0] in stats["outliers"]:
        hints.append("the first page is an outlier (a first-page effect: caches, allocator, autotuning)")
    if len(values) >= 4:
        trend = float(np.corrcoef(np.arange(len(values)), values)[0, 1])
        if abs(trend) > 0.8:
            hints.append(
                f"times {'rise' if trend > 0 else 'fall'} steadily over the run (correlation {trend:.2f}): "
                "clocks, thermal throttling or a growing cache"
            )
    host, explained = _host_hints(values, labels, stats["outliers"], records)
    hints.extend(host)
    others = [label for label in stats["outliers"] if label not in explained]
    if others and not (labels and others == [labels[0]] and hints):
        hints.append(f"outlier pages {others}: other processes or clock changes at those moments")
    if not hints:
        check = _UNEXPLAINED_SPREAD_CHECK.get(device or "", _CLOCKS)
        hints.append(f"a broad spread without outliers or trend: {check}")
    return hints


def timing_statistics(
    records: list[dict[str, Any]],
    threshold: float = DEFAULT_THRESHOLD,
    first_use: FirstUseEvidence | None = None,
    device: str | None = None,
) -> TimingStatistics:
    """The `timing.statistics` block of analysis.json from the clean pass's page records. `first_use`:
    the nsys pass's evidence of lazy kernel loading per page (without it, the records' own word on
    which page was the first of its input shape still counts). `device`: the clean pass's
    (driver-info.json's `device`: `cpu`, `cuda`; None when unknown), for what a spread points at."""
    labels = [int(r["sequence"]) for r in records]
    device = (
        device.split(":")[0] if isinstance(device, str) else None
    )  # cuda:1 is a cuda device; a damaged record none
    evidence = [
        first_use.for_record(r) if first_use is not None else PageEvidence(first_seen_flag(r), None)
        for r in records
    ]
    stages: dict[str, StageTiming] = {}
    for stage in STAGES:
        values = [float(r["stage_wall_ns"][stage]) for r in records]
        stats = spread(values, labels)
        stages[stage] = _judged(
            stats, _verdict(stats, values, labels, threshold, records, evidence, stage, device)
        )
        if all("stage_gpu_ns" in r for r in records):
            events = spread([float(r["stage_gpu_ns"].get(stage, 0)) for r in records], labels)
            stages[stage]["cuda_events"] = _brief(events)
    pages = [float(r["wall_ns"]) for r in records]
    page_stats = spread(pages, labels)
    page = _judged(
        page_stats, _verdict(page_stats, pages, labels, threshold, records, evidence, device=device)
    )
    out: TimingStatistics = {
        "unit": "ns",
        "threshold_cv": threshold,
        "stages": stages,
        "page": page,
    }
    host = host_summary(records)
    if host:
        out["host"] = host
    memory = stage_memory(records)
    if memory:
        out["memory"] = memory
    ttft = [float(r["first_token_ns"]) for r in records if r.get("first_token_ns") is not None]
    if ttft:
        out["time_to_first_token"] = spread(ttft, labels[: len(ttft)])
    rates = [
        r["decode_steps"] / (r["stage_wall_ns"][DECODE] / 1e9)
        for r in records
        if r["decode_steps"] and r["stage_wall_ns"][DECODE]
    ]
    if rates:
        out["decode_tokens_per_second"] = spread(rates, labels[: len(rates)])
    steps = [float(x) for r in records for x in r.get("decode_step_ns") or []]
    if steps:
        v = np.asarray(steps)
        p50, p90, p99 = np.percentile(v, [50, 90, 99])
        out["decode_step_latency"] = {
            "count": len(v),
            "mean": float(v.mean()),
            "p50": float(p50),
            "p90": float(p90),
            "p99": float(p99),
            "max": float(v.max()),
        }
    return out


def _judged(stats: Spread, verdict: Verdict) -> StageTiming:
    """A spread with its verdict after it."""
    return cast(StageTiming, {**stats, "verdict": verdict})


def _brief(stats: Spread) -> BriefSpread:
    return {"mean": stats["mean"], "cv": stats["cv"], "min": stats["min"], "max": stats["max"]}


def host_summary(records: list[dict[str, Any]]) -> HostSummary:
    """The host's side of the pass: its CPU speed probe (ns) and steal share over pages, and the
    share of each page's wall time the driver process spent on a CPU."""
    host = [r.get("host_cpu") or {} for r in records]
    out: HostSummary = {}
    probe = [h["speed_probe_ns"] for h in host if h.get("speed_probe_ns")]
    if probe:
        s = spread([float(p) for p in probe], list(range(len(probe))))
        out["speed_probe_ns"] = _brief(s)
    steal = [h["steal_share"] for h in host if h.get("steal_share") is not None]
    if steal:
        out["steal_share_max"] = max(steal)
    busy = [
        h["process_cpu_ns"] / r["wall_ns"] for h, r in zip(host, records, strict=True) if h and r["wall_ns"]
    ]
    if busy:
        out["process_cpu_share_mean"] = float(np.mean(busy))
    return out


def stage_memory(records: list[dict[str, Any]]) -> MemorySummary | None:
    """Per stage, the highest allocated device memory seen inside it over all pages (bytes; the
    allocator's peak counter, reset as the stage opens) and how far that rose above what was
    allocated when the page began (weights, caches: the stage's own working memory)."""
    with_peaks = [r for r in records if r.get("stage_peak_allocated_bytes")]
    if not with_peaks:
        return None
    out: dict[str, Any] = {"unit": "bytes", "source": "torch.cuda.max_memory_allocated per stage"}
    for stage in STAGES:
        peaks = [
            (r["stage_peak_allocated_bytes"].get(stage), r.get("allocated_at_start_bytes", 0))
            for r in with_peaks
        ]
        peaks = [(p, start) for p, start in peaks if p is not None]
        if peaks:
            out[stage] = StageMemory(
                peak_allocated_bytes=max(p for p, _ in peaks),
                above_page_start_bytes=max(p - start for p, start in peaks),
            )
    return cast(MemorySummary, out)  # (its keys are the stages')
