"""Number formatting shared by the renderers: every figure gets its unit. And `visible`: untrusted
text with the characters that would hide or reorder what a reader sees shown as escapes."""

from __future__ import annotations

import math
import re

# Characters shown as \uXXXX escapes, not raw, wherever perfctl shows a name to a person (HTML and its
# SVG, Markdown, the terminal): the bidirectional embeddings, overrides and isolates (U+202A-U+202E,
# U+2066-U+2069), the directional marks (U+200E, U+200F, U+061C), which let a name display other
# than it reads ("Trojan Source"), and the C0 and C1 control characters and DEL (NUL, ESC and the
# terminal's escape sequences among them) except TAB, LF and CR, which the outputs show as layout.
INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """`text` with every INVISIBLE character as a visible escape (U+202E -> the six characters \\u202e)."""
    return INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


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
