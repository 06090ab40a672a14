"""Which pages of a run completed: a run cut short (the driver crashed or was killed, Ctrl-C) leaves
its last page's NVTX ranges unended. Those pages are set apart, so that every figure is over pages
that ran to their end, and the analysis says which pages did not complete and which never started.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perfctl.analysis.result import Completion, IncompletePage
from perfctl.stages import DOMAIN, PAGE


def set_aside_unfinished(
    ranges: pd.DataFrame, unended: frozenset[int]
) -> tuple[pd.DataFrame, Completion, list[str]]:
    """(the ranges to analyze, the completion summary, warnings).

    perfctl's ranges that never ended are left out (their end is the session's, not theirs), and so
    is every perfctl range inside a page that never ended. Other domains' unended ranges stay, ending
    at the session's end as nsys counts them, with a warning.
    """
    ours = (ranges["domain"] == DOMAIN).to_numpy()
    is_page = ours & (ranges["name"] == PAGE).to_numpy()
    never_ended = (
        ranges["range_id"].isin(list(unended)).to_numpy() if unended else np.zeros(len(ranges), bool)
    )
    payload = ranges["payload"].to_numpy()
    thread = ranges["thread"].to_numpy(np.int64)
    start = ranges["start"].to_numpy(np.int64)

    drop = ours & never_ended
    incomplete: list[IncompletePage] = []
    warnings = []
    for row in np.flatnonzero(is_page & never_ended):
        inside = ours & (thread == thread[row]) & (start >= start[row])
        drop |= inside
        sequence = None if pd.isna(payload[row]) else int(payload[row])
        left_out = int(inside.sum()) - 1
        incomplete.append({"sequence": sequence, "start_ns": int(start[row]), "ranges_left_out": left_out})
        warnings.append(
            f"page {sequence} did not complete: its NVTX range never ended (the program stopped inside "
            f"it); it and the {_count(left_out, 'range')} inside it are left out of every figure"
        )
    complete = sorted(int(p) for p in payload[is_page & ~never_ended] if not pd.isna(p))
    others = sorted(set(ranges["name"].to_numpy()[drop & ~is_page & never_ended]) - {PAGE})
    if others and not incomplete:
        warnings.append(
            f"perfctl range{'s' if len(others) > 1 else ''} {', '.join(others)} never ended (the program "
            "stopped inside): left out of every figure"
        )
    foreign = int((never_ended & ~ours).sum())
    if foreign:
        warnings.append(
            f"{foreign} NVTX ranges of other domains never ended: they end at the end of the session, "
            "as nsys counts them"
        )
    completion: Completion = {
        "complete": complete,
        "incomplete": incomplete,
        "expected": None,
        "not_started": None,
    }
    return ranges[~drop].reset_index(drop=True), completion, warnings


def with_expected_pages(completion: Completion, expected: int | None) -> list[str]:
    """Fill in what the run's manifest knows (how many pages it was to run); the warning about the
    pages that never started, if any."""
    if expected is None:
        return []
    seen = set(completion["complete"]) | {p["sequence"] for p in completion["incomplete"]}
    missing = [s for s in range(expected) if s not in seen]
    completion["expected"], completion["not_started"] = expected, missing
    if not missing:
        return []
    return [
        f"{len(missing)} of the {expected} pages the run was to profile never started "
        f"(page{'s' if len(missing) > 1 else ''} {_spans(missing)})"
    ]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _spans(numbers: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    out: list[str] = []
    first = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(first) if first == prev else f"{first}-{prev}")
        if n is not None:
            first = prev = n
    return ", ".join(out)
