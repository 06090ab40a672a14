"""Number formatting shared by the renderers: every figure gets its unit. And `visible`: untrusted
text with the characters that would hide or reorder what a reader sees shown as escapes."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from perfctl.analysis.repeatability import MIN_PAGES_FOR_CI

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


def confidence_interval(spread: Mapping[str, Any]) -> str:
    """The 95 % CI of a time's mean (a `Spread` in ns) as the report prints it: only from
    MIN_PAGES_FOR_CI pages (fewer: it says so), and never below 0 ms (a lower bound below 0 is shown as
    0 ms, clipped, with the interval's own bound beside it)."""
    n = int(spread.get("count") or 0)
    if n < MIN_PAGES_FOR_CI or "ci95_low" not in spread:
        return f"not shown: {n} page{'' if n == 1 else 's'}, fewer than {MIN_PAGES_FOR_CI}"
    low, high = float(spread["ci95_low"]), float(spread["ci95_high"])
    if low < 0:
        return f"0 ms (clipped from {ms(low)}) – {ms(high)}"
    return f"{ms(low)} – {ms(high)}"


# --- labels that fit -------------------------------------------------------------------------------

# Advance widths in em of DejaVu Sans (Debian's default sans-serif and system-ui, and wider than the
# usual system-ui fonts elsewhere), by character class, each the widest of its class rounded up (as
# measured in chromium): used to cut a label before it reaches a chart's edge. Unlisted ASCII:
# EM_NORMAL; anything else EM_OTHER.
EM_CLASSES = (
    (0.33, " '.,ijlIJ"),
    (0.41, "/:;\\|f-()[]tr!"),
    (0.54, '"*_`sz?'),
    (0.83, "VXZBRCAUNHDG&OQw"),
    (0.88, "#+<=>^~M"),
    (1.02, "%mW@"),
)
EM_NORMAL = 0.66  # digits, most lower case and the narrower capitals: 0.55-0.656 em
EM_OTHER = 1.02  # any other character: the ellipsis and CJK are 1 em
_EM = {c: width for width, chars in EM_CLASSES for c in chars}
ELLIPSIS = "…"


def text_width(text: str, font_size: float) -> float:
    """An upper estimate of `text`'s width, in the units of `font_size`."""
    return font_size * sum(_EM.get(c, EM_NORMAL if c < "\x80" else EM_OTHER) for c in text)


def fit(text: str, width: float, font_size: float) -> str:
    """`text` on one line, within `width` (text_width's estimate): itself when it fits, else its head
    and tail around an ellipsis (kernel names differ at both ends: namespace and template prefix at
    the start, tile shapes and configuration at the end), about 60 % head."""
    flat = " ".join(text.split())
    if text_width(flat, font_size) <= width:
        return flat
    room = width - text_width(ELLIPSIS, font_size)
    widths = [text_width(c, font_size) for c in flat]
    head, tail, used = 0, 0, 0.0
    while head + tail < len(flat):  # take from the head and tail in turn, 3 to 2, while they fit
        take_head = head * 2 <= tail * 3
        w = widths[head] if take_head else widths[len(flat) - 1 - tail]
        if used + w > room:
            break
        used += w
        head, tail = (head + 1, tail) if take_head else (head, tail + 1)
    return flat[:head] + ELLIPSIS + (flat[len(flat) - tail :] if tail else "")


LABEL_TAG = " · "  # between a shared short name and the words that tell its kernel apart
TAG_SHARE = 0.6  # of a label's width that its tag may take when the label must be cut


def fit_label(label: str, width: float, font_size: float) -> str:
    """A kernel label (kernel_labels) within `width`: a label with a distinguishing tag after " · "
    keeps the tag whole, when it takes at most TAG_SHARE of the width, and cuts the short name before
    it (vectorized_elementw… · bfloat16_copy_kernel_cuda); any other label as `fit` cuts it."""
    flat = " ".join(label.split())
    short, sep, tag = flat.partition(LABEL_TAG)
    if not sep or text_width(flat, font_size) <= width:
        return fit(flat, width, font_size)
    tag_width = text_width(ELLIPSIS + LABEL_TAG + tag, font_size)
    if tag_width > TAG_SHARE * width:
        return fit(flat, width, font_size)
    room, kept = width - tag_width, 0.0
    for end, c in enumerate(short):
        kept += text_width(c, font_size)
        if kept > room:
            return short[:end] + ELLIPSIS + LABEL_TAG + tag
    return flat


# --- kernel names a reader can tell apart ------------------------------------------------------------

_TEMPLATE_PARAMETER = re.compile(r"T[0-9]+")
# Words of a demangled name that say nothing of what a kernel does: C++ types and qualifiers, the
# demangler's own words and the element types (a BFloat16 multiply and a BFloat16 copy differ in the
# operation, not in the BFloat16).
NOT_DISTINCTIVE = frozenset(
    {
        *("void", "int", "unsigned", "long", "short", "char", "float", "double", "bool", "signed"),
        *("const", "volatile", "lambda", "instance", "operator", "unnamed", "anonymous", "namespace"),
        *("struct", "class", "enum", "true", "false", "BFloat16", "Half", "__nv_bfloat16", "__half"),
        "complex",
    }
)
DISTINCT_WORDS = 2  # words of the full name that a label adds to a shared short name, at most


def _words(name: str) -> list[str]:
    """The distinctive identifiers of a demangled name in order: those outside every parameter list
    (what a kernel or lambda takes, at::TensorIteratorBase &, is shared by kernels of every kind) and
    only the last component of a qualified name (a word before :: is a namespace or an enclosing
    class)."""
    words, depth = [], 0
    for m in re.finditer(r"[()]|[A-Za-z_][A-Za-z0-9_]*", name):
        token = m.group()
        if token in "()":
            depth = max(depth + (1 if token == "(" else -1), 0)
        elif (
            depth == 0
            and not name.startswith("::", m.end())
            and token not in NOT_DISTINCTIVE
            and not _TEMPLATE_PARAMETER.fullmatch(token)
        ):
            words.append(token)
    return words


def kernel_labels(kernels: Sequence[tuple[str, str]]) -> list[str]:
    """A label per (short name, full name), the same for the same full name and distinct for distinct
    ones: the short name, and where kernels of different full names share it, " · " and the first
    DISTINCT_WORDS words of its full name that none of the others has (elementwise_kernel ·
    CUDAFunctor_add, elementwise_kernel · direct_copy_kernel_cuda); labels still equal (names that
    differ only in numbers) get " #1", " #2" in list order. One kernel listed twice (ncu's launch
    configurations of it) keeps one label: the launch tells them apart."""
    labels = [short for short, _ in kernels]
    names_of: dict[str, dict[str, list[int]]] = {}  # short name -> full name -> rows
    for i, (short, full) in enumerate(kernels):
        names_of.setdefault(short, {}).setdefault(full, []).append(i)
    for short, fulls in names_of.items():
        if len(fulls) < 2:
            continue
        words = {full: list(dict.fromkeys(_words(full))) for full in fulls}
        for full, rows in fulls.items():
            others = {w for other in fulls if other != full for w in words[other]}
            own = [w for w in words[full] if w not in others and w != short][:DISTINCT_WORDS]
            for i in rows:
                labels[i] = f"{short}{LABEL_TAG}{' '.join(own)}" if own else short
    fulls_of: dict[str, list[str]] = {}  # label -> its distinct full names, in list order
    for label, (_, full) in zip(labels, kernels, strict=True):
        if full not in fulls_of.setdefault(label, []):
            fulls_of[label].append(full)
    return [
        f"{label} #{fulls_of[label].index(full) + 1}" if len(fulls_of[label]) > 1 else label
        for label, (_, full) in zip(labels, kernels, strict=True)
    ]


@dataclass
class Table:
    """A titled table of text cells, as a renderer lays it out (terminal, Markdown, HTML)."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""
    wide_column: int | None = None  # index of a column of long names (kernels)
