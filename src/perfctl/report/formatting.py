"""Number formatting shared by the renderers: every figure gets its unit."""

from __future__ import annotations


def ms(ns: float | int | None) -> str:
    if ns is None:
        return "–"
    return f"{ns / 1e6:,.3f} ms"


def pct(fraction: float | None) -> str:
    """Percent with one decimal; below 0.1 % three significant digits, so small never reads as 0."""
    if fraction is None:
        return "–"
    return f"{100 * fraction:.1f} %" if abs(fraction) >= 0.001 or fraction == 0 else f"{100 * fraction:.3g} %"


def count(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def nbytes(n: int | None) -> str:
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{n} B"
