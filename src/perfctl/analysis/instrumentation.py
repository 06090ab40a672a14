"""What perfctl's instrumentation costs a page: pure functions over the rows that
scripts/instrumentation_overhead.py measures (docs/instrumentation-overhead.md).

A row is one timed generate: `round`, `page_index`, `setting` and `wall_ns`, and `position` (0 for the
first setting run on that page in that round). Each setting is compared with the baseline (`bare`, no
hooks) run on the same page in the same round, seconds apart: the estimate is the median over those
pairs of setting/baseline - 1, so drift of the machine over minutes, which moves both members of a
pair alike, drops out. Its confidence interval is a percentile bootstrap: the pairs resampled with
replacement, seeded, so the same rows always give the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BASELINE = "bare"
GOAL = 0.01  # issue 8: instrumentation overhead <= 1 % of a page
CONFIDENCE = 0.95
RESAMPLES = 10_000
SEED = 0
_CHUNK = 1_000  # resamples drawn at once: bounded memory whatever the number of pairs


def rotated(settings: Sequence[str], turn: int) -> list[str]:
    """The settings in the order they run at `turn`, rotated by one each turn: with turn = round + page,
    neighbouring pages start with different settings, each page runs in a new order every round (also
    when the page count is a multiple of the settings'), and every setting is first as often as any
    other to within one per round."""
    k = turn % len(settings)
    return [*settings[k:], *settings[:k]]


def paired_ratios(rows: Sequence[dict[str, Any]], setting: str, baseline: str = BASELINE) -> list[float]:
    """setting / baseline wall time for every (round, page) timed under both, in (round, page) order."""
    times: dict[tuple[str, int, int], int] = {}
    for row in rows:
        times[(str(row["setting"]), int(row["round"]), int(row["page_index"]))] = int(row["wall_ns"])
    keys = sorted({(r, p) for s, r, p in times if s == setting and (baseline, r, p) in times})
    return [times[(setting, r, p)] / times[(baseline, r, p)] for r, p in keys]


def bootstrap_median_ci(
    values: Sequence[float], confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of the median of `values`; None with fewer than two values (one
    value has no spread to resample)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return None
    rng = np.random.default_rng(seed)
    medians = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        n = min(_CHUNK, resamples - start)
        medians[start : start + n] = np.median(v[rng.integers(0, v.size, size=(n, v.size))], axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


def goal_verdict(ci: tuple[float, float] | None, goal: float = GOAL) -> tuple[bool | None, bool, str]:
    """(goal met: True / False / None = cannot tell, CI too wide to tell, one line saying which)."""
    if ci is None:
        return None, False, "too few pairs for a confidence interval"
    low, high = ci
    if high <= goal:
        return True, False, f"met: the whole interval is at or below {goal:.1%}"
    if low > goal:
        return False, False, f"not met: the whole interval is above {goal:.1%}"
    return None, True, f"cannot tell: the interval straddles {goal:.1%} (more pages or rounds narrow it)"


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def position_effect(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Median, over (round, page) groups, of a row's wall time over its group's mean, by the position
    it ran in: whether running first or last on a page changes its time, whatever the setting (the
    rotation spreads such an effect evenly over the settings)."""
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((int(row["round"]), int(row["page_index"])), []).append(row)
    by_position: dict[int, list[float]] = {}
    for members in groups.values():
        mean = sum(int(m["wall_ns"]) for m in members) / len(members)
        for m in members:
            by_position.setdefault(int(m["position"]), []).append(int(m["wall_ns"]) / mean)
    return {str(pos): _median(ratios) for pos, ratios in sorted(by_position.items())}


def overhead_summary(
    rows: Sequence[dict[str, Any]],
    baseline: str = BASELINE,
    goal: float = GOAL,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, Any]:
    """Per setting: pages timed and median page time; for every setting but the baseline, the paired
    overhead estimate with its bootstrap interval, the ratio of the median page times, and the verdict
    against `goal` (all overheads as fractions: 0.02 = 2 %)."""
    settings = list(dict.fromkeys(str(r["setting"]) for r in rows))
    if baseline not in settings:
        raise ValueError(f"no rows of the baseline setting '{baseline}'")
    medians = {s: _median([int(r["wall_ns"]) for r in rows if r["setting"] == s]) for s in settings}
    out: dict[str, Any] = {}
    for setting in settings:
        entry: dict[str, Any] = {
            "pages": sum(1 for r in rows if r["setting"] == setting),
            "median_page_ns": medians[setting],
        }
        if setting != baseline:
            ratios = paired_ratios(rows, setting, baseline)
            ci = bootstrap_median_ci(ratios, confidence, resamples, seed)
            met, too_wide, verdict = goal_verdict(None if ci is None else (ci[0] - 1, ci[1] - 1), goal)
            entry |= {
                "pairs": len(ratios),
                "overhead": _median(ratios) - 1 if ratios else None,
                "overhead_ci": None if ci is None else [ci[0] - 1, ci[1] - 1],
                "ratio_of_medians": medians[setting] / medians[baseline],
                "goal_met": met,
                "ci_too_wide": too_wide,
                "verdict": verdict,
            }
        out[setting] = entry
    return {
        "baseline": baseline,
        "goal": goal,
        "method": (
            "overhead = median over pairs (same round and page, run back to back) of "
            f"setting / {baseline} - 1; interval: percentile bootstrap of that median, pairs resampled"
        ),
        "confidence": confidence,
        "bootstrap_resamples": resamples,
        "bootstrap_seed": seed,
        "settings": out,
        "position_effect": position_effect(rows) if rows and "position" in rows[0] else {},
    }
