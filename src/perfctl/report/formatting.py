"""Number formatting shared by the renderers: every figure gets its unit."""

from __future__ import annotations

import math


def _significant(value: float, digits: int = 3) -> str:
    """`value` with `digits` significant digits in plain decimals (never 4.18e-05)."""
    if value == 0:
        return "0"
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    return f"{value:,.{decimals}f}"


def ms(ns: float | int | None) -> str:
    if ns is None:
        return "–"
    return f"{ns / 1e6:,.3f} ms"


def pct(fraction: float | None) -> str:
    """Percent with one decimal; below 0.1 % three significant digits, so small never reads as 0."""
    if fraction is None:
        return "–"
    return (
        f"{100 * fraction:.1f} %"
        if abs(fraction) >= 0.001 or fraction == 0
        else f"{_significant(100 * fraction)} %"
    )


def count(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def nbytes(n: int | None) -> str:
    """Bytes in B, KiB, MiB or GiB; negative (memory freed, in the profiler's figures) keeps its sign."""
    if n is None:
        return "–"
    if n < 0:
        return "−" + nbytes(-n)
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{n} B"


def number(value: float | None) -> str:
    """A quantity with thousands separators and at least three significant digits (1,358 / 989.5 /
    9.93 / 0.0308), so a small value never reads as 0; the caller appends the unit."""
    if value is None:
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return _significant(value)
