"""What two runs can tell apart, and the regression gate that knows it.

Pure functions over per-page samples and comparison records (perfctl.analysis.result_compare):

- `welch`: the 95 % interval's half-width of B - A (Welch's t-test, Welch-Satterthwaite df);
- `min_detectable_change`: that half-width relative to A's mean, in %: the smallest |B - A| whose
  interval would exclude zero with these two runs' spreads and page counts (a change of that size
  reads "beyond noise", a smaller one cannot);
- `pages_needed`: how many pages per run (the same on both sides, each with its run's spread) would
  bring the minimum down to a threshold;
- `from_time`: MFU or achieved TFLOP/s of a stage whose FLOPs per page are equal on both sides:
  value = k / time, so its difference and interval are the stage time's, mapped through k / t;
- `gate`: --fail-if-slower, which fails on a slower stage and says when it cannot tell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from perfctl.analysis.repeatability import t95
from perfctl.analysis.result_compare import (
    Comparison,
    Difference,
    FailingStage,
    Gate,
    SampleRecord,
    UndeterminedStage,
)

# A run of more pages than this is no longer a repeat count to ask for (the full-size model's page
# takes about a second clean, plus the nsys pass): past it the stage is too noisy for the threshold,
# and the answer is to make it quieter (an idle host, fixed clocks) or to gate on a larger change.
MAX_PAGES_NEEDED = 1000
MIN_PAGES = 2  # a spread needs two pages a side

PASSED, SLOWER, CANNOT_TELL = "passed", "slower", "cannot tell"
# the gate's exit codes (2 is bad input, perfctl.errors.BadInput): a slower stage outranks a stage
# that cannot tell, since it is a finding either way
GATE_EXIT_CODES = {PASSED: 0, SLOWER: 1, CANNOT_TELL: 3}


@dataclass(frozen=True)
class Sample:
    """One run's per-page values of a figure, summarized: what Welch's test needs."""

    mean: float
    std: float
    count: int

    def to_json(self) -> SampleRecord:
        return {"mean": self.mean, "std": self.std, "count": self.count}


def welch(a: Sample, b: Sample) -> tuple[float, float] | None:
    """(half-width of the 95 % interval of B - A, Welch-Satterthwaite df); None below two pages."""
    if a.count < MIN_PAGES or b.count < MIN_PAGES:
        return None
    va, vb = a.std**2 / a.count, b.std**2 / b.count
    denominator = va**2 / (a.count - 1) + vb**2 / (b.count - 1)
    df = (va + vb) ** 2 / denominator if denominator > 0 else float(a.count + b.count - 2)
    return t95(df) * math.sqrt(va + vb), df


def min_detectable_change(a: Sample, b: Sample) -> tuple[float | None, str | None]:
    """(the smallest |B - A| in % of A's mean that these runs tell from noise, why it is unknown)."""
    found = welch(a, b)
    if found is None:
        short = ", ".join(f"run {s} has {x.count} page(s)" for s, x in (("A", a), ("B", b)) if x.count < 2)
        return None, f"no spread to judge: {short} (at least {MIN_PAGES} a side)"
    if not a.mean:
        return None, "run A's mean is 0: no change relative to it"
    return 100 * found[0] / abs(a.mean), None


def pages_needed(
    a: SampleRecord, b: SampleRecord, threshold_pct: float, most: int = MAX_PAGES_NEEDED
) -> int | None:
    """The fewest pages per run (n on both sides, each run keeping its spread, the t quantile
    following n) whose minimum detectable change is at most `threshold_pct`; None beyond `most`."""
    if not a["mean"]:
        return None
    for n in range(MIN_PAGES, most + 1):
        found = welch(Sample(a["mean"], a["std"], n), Sample(b["mean"], b["std"], n))
        assert found is not None
        if 100 * found[0] / abs(a["mean"]) <= threshold_pct:
            return n
    return None


def from_time(time: Difference, k_a: float, k_b: float, words: tuple[str, str]) -> Difference | None:
    """A figure k / time (achieved TFLOP/s; MFU, k = FLOPs / peak) of a stage whose FLOPs per page are
    equal on both sides, from the stage time's interval: B's time ranges over A's mean + the time's
    interval of B - A, so the figure's interval of B - A is k_b / (t_A + [high, low]) - k_a / t_A. With
    k_a == k_b it excludes zero exactly when the time's does: the verdict is the time's mirrored. With
    different k (MFU on GPUs of different peaks) the mapped interval judges it. `words`: (B higher,
    B lower)."""
    ta, tb = time["a"], time["b"]
    if ta["mean"] <= 0 or tb["mean"] <= 0:
        return None
    ea, eb = k_a / ta["mean"], k_b / tb["mean"]
    same = k_a == k_b
    out: Difference = {
        # their std: the delta method's (k s / t²), for reading only: the interval is the time's
        "a": {"mean": ea, "std": k_a * ta["std"] / ta["mean"] ** 2, "count": ta["count"]},
        "b": {"mean": eb, "std": k_b * tb["std"] / tb["mean"] ** 2, "count": tb["count"]},
        "delta": eb - ea,
        "delta_pct": 100 * (eb - ea) / ea,
        "ci95_low": None,
        "ci95_high": None,
        "df": time["df"],
        "change": time["change"],
        "min_detectable_change_pct": None,
        "min_detectable_change_reason": time["min_detectable_change_reason"],
    }
    low, high = time["ci95_low"], time["ci95_high"]
    if low is None or high is None:
        return out
    lower = k_b / (ta["mean"] + high) - ea  # high >= B - A > -A: a positive time
    out["ci95_low"] = lower
    # a time interval reaching down to 0 leaves the figure's upper end unbounded (null)
    upper = k_b / (ta["mean"] + low) - ea if ta["mean"] + low > 0 else None
    out["ci95_high"] = upper
    if same:
        out["change"] = {"slower": words[1], "faster": words[0]}.get(time["change"], time["change"])
    else:
        beyond_up, beyond_down = lower > 0, upper is not None and upper < 0
        out["change"] = words[0] if beyond_up else words[1] if beyond_down else "within noise"
    mdc = time["min_detectable_change_pct"]
    if mdc is not None and same:
        # time +h (of A) is the smallest change read beyond noise on the slow side: k / t then falls
        # by h / (1 + h), less than the rise by h / (1 - h) on the fast side
        h = mdc / 100
        out["min_detectable_change_pct"] = 100 * h / (1 + h)
    elif mdc is not None:
        out["min_detectable_change_reason"] = (
            "the runs' peaks differ: the figure's change is not the time's alone, no minimum of it"
        )
    return out


def gate(comparison: Comparison, fail_if_slower_pct: float) -> Gate:
    """--fail-if-slower PCT: `slower` when a stage is slower beyond noise by more than PCT; else
    `cannot tell` when a stage's runs could not tell a PCT change from noise (its minimum detectable
    change above PCT, or unknown), with the pages per run that would; else `passed`. A stage faster
    beyond noise can tell: its interval lies below zero, so a slowdown is excluded."""
    failing: list[FailingStage] = []
    undetermined: list[UndeterminedStage] = []
    for s in comparison["stages"]:
        time = s["time_ns"]
        if (
            s["verdict"] == "slower"
            and time["delta_pct"] is not None
            and time["delta_pct"] > fail_if_slower_pct
        ):
            failing.append({"stage": s["stage"], "delta_pct": time["delta_pct"]})
            continue
        mdc = time["min_detectable_change_pct"]
        if s["verdict"] == "faster" or (mdc is not None and mdc <= fail_if_slower_pct):
            continue
        undetermined.append(
            {
                "stage": s["stage"],
                "min_detectable_change_pct": mdc,
                "reason": time["min_detectable_change_reason"],
                "pages_needed": pages_needed(time["a"], time["b"], fail_if_slower_pct)
                if mdc is not None
                else None,
                "pages_searched": MAX_PAGES_NEEDED,
            }
        )
    outcome = SLOWER if failing else CANNOT_TELL if undetermined else PASSED
    return {
        "fail_if_slower_pct": fail_if_slower_pct,
        "outcome": outcome,
        "exit_code": GATE_EXIT_CODES[outcome],
        "failed": outcome != PASSED,
        "failing_stages": failing,
        "undetermined_stages": undetermined,
    }
