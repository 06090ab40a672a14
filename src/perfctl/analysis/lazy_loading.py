"""First use of an input shape and lazy kernel loading inside measured pages: the evidence.

The first `generate` of an input shape in a process does work later ones do not (workloads.shapes):
CUDA loads the kernels it picks on first use, inside the call (module loads: `cuLibraryLoadData`,
`cuModuleLoad*`, `cuLibraryLoad*`; kernel-attribute calls that wait on such a load:
`cuKernelSetAttribute`, `cuFuncSetAttribute`, `cudaFuncSetAttribute`). On an H200 the first page of a
prompt length took 3.6 s against 0.39 s for the same prompt later (tests/fixtures/h200-llama1b-warmup0),
and a stability verdict that saw only the spread blamed the clocks. Two sources say where it happened:

  the driver    each measured page record says whether it was the first generate of its input shape
                in its process (`shape_first_seen`; the warm-up runs every shape first by default)
  the export    per page range of the nsys pass (and per stage inside it, and over the warm-up
                ranges), the module-load and kernel-attribute calls on the page's thread that start
                inside it: how many of each API and their time (`CUPTI_ACTIVITY_KIND_RUNTIME`, read by
                nsys_export.columns.table_chunks with a filter on those APIs' name ids)

`first_use_evidence` gathers both for a run folder; `PageEvidence` is what one clean-pass page carries
(its own flag, and the nsys pass's calls for the same page and repeat), which the stability verdict
(analysis.repeatability) reads before it considers the host.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from perfctl.analysis.result_passes import CallTotals, FirstUse, FirstUseVerdict, NsysPageCalls
from perfctl.nsys_export import pages as pages_reader
from perfctl.nsys_export.columns import table_chunks
from perfctl.nsys_export.events import load_nvtx_ranges, string_ids_matching, string_values
from perfctl.nsys_export.pages import RowFilter
from perfctl.nsys_export.schema import connect_readonly, read_schema
from perfctl.records import input_index, read_page_records
from perfctl.run_folder import PAGES_FILE
from perfctl.stages import DOMAIN, PAGE, STAGES, WARMUP
from perfctl.workloads.shapes import shape_key

Int64s = npt.NDArray[np.int64]
RUNTIME = "CUPTI_ACTIVITY_KIND_RUNTIME"
MODULE_LOAD_GLOBS = ("cuLibraryLoad*", "cuModuleLoad*")
KERNEL_ATTRIBUTE_GLOBS = ("cuKernelSetAttribute*", "cuFuncSetAttribute*", "cudaFuncSetAttribute*")
# A warmed-up page loads no module: every load is the first use of some kernel in the process (H200:
# 0 loads in each measured page after the warm-up, 61 and 20 in the first page of each prompt length).
MODULE_LOADS_NOTABLE = 1
# Setting a kernel's attribute takes about a microsecond (H200, measured pages after the warm-up:
# 512 calls, 0.6 ms per page); a call that has to load its kernel first takes tens of microseconds to
# milliseconds (60 µs on average over the 530 calls of a first-use page). Ten times the steady cost,
# on average over a page's calls, is lazy loading, not noise.
SLOW_KERNEL_ATTRIBUTE_CALL_NS = 10_000


@dataclass
class CallFigures:
    """Module-load and kernel-attribute calls inside one range (or a set of ranges): count per API
    name and their summed duration (ns)."""

    module_loads: dict[str, int] = field(default_factory=dict)
    module_load_ns: int = 0
    kernel_attribute_calls: dict[str, int] = field(default_factory=dict)
    kernel_attribute_ns: int = 0

    def add(self, name: str, is_load: bool, duration_ns: int) -> None:
        calls = self.module_loads if is_load else self.kernel_attribute_calls
        calls[name] = calls.get(name, 0) + 1
        if is_load:
            self.module_load_ns += duration_ns
        else:
            self.kernel_attribute_ns += duration_ns

    def merge(self, other: CallFigures) -> None:
        for mine, theirs in (
            (self.module_loads, other.module_loads),
            (self.kernel_attribute_calls, other.kernel_attribute_calls),
        ):
            for api, n in theirs.items():
                mine[api] = mine.get(api, 0) + n
        self.module_load_ns += other.module_load_ns
        self.kernel_attribute_ns += other.kernel_attribute_ns

    @property
    def loads(self) -> int:
        return sum(self.module_loads.values())

    @property
    def attribute_calls(self) -> int:
        return sum(self.kernel_attribute_calls.values())

    def lazy_loading(self) -> bool:
        """Whether these calls show kernels loaded on first use (the thresholds above)."""
        slow_attributes = (
            self.attribute_calls > 0
            and self.kernel_attribute_ns / self.attribute_calls >= SLOW_KERNEL_ATTRIBUTE_CALL_NS
        )
        return self.loads >= MODULE_LOADS_NOTABLE or slow_attributes

    def to_json(self) -> CallTotals:
        return {
            "module_loads": dict(sorted(self.module_loads.items())),
            "module_load_ns": self.module_load_ns,
            "kernel_attribute_calls": dict(sorted(self.kernel_attribute_calls.items())),
            "kernel_attribute_ns": self.kernel_attribute_ns,
            "lazy_loading": self.lazy_loading(),
        }

    def describe(self) -> str:
        """The calls in words, e.g. '59 cuLibraryLoadData + 2 cuModuleLoadData (530.0 ms); 530
        cuKernelSetAttribute (31.9 ms)'."""
        parts = []
        if self.loads:
            names = " + ".join(f"{n} {api}" for api, n in sorted(self.module_loads.items()))
            parts.append(f"{names} (module loads, {self.module_load_ns / 1e6:,.1f} ms)")
        if self.attribute_calls:
            names = " + ".join(f"{n} {api}" for api, n in sorted(self.kernel_attribute_calls.items()))
            parts.append(f"{names} ({self.kernel_attribute_ns / 1e6:,.1f} ms)")
        return "; ".join(parts) or "no module-load or kernel-attribute call"


@dataclass
class PageCalls:
    """One page range of the export: its page record's identity and the calls inside it."""

    sequence: int
    page_index: int | None
    repeat: int | None
    shape_first_seen: bool | None
    page: CallFigures
    stages: dict[str, CallFigures]

    def to_json(self) -> NsysPageCalls:
        return {
            "sequence": self.sequence,
            "page_index": self.page_index,
            "repeat": self.repeat,
            "shape_first_seen": self.shape_first_seen,
            **self.page.to_json(),
            "stages": {stage: figures.to_json() for stage, figures in self.stages.items()},
        }


@dataclass(frozen=True)
class PageEvidence:
    """What one clean-pass page carries: whether it was the first of its input shape in its process
    (None: an older run's record does not say), and the nsys pass's calls inside the same page and
    repeat (None: the nsys pass did not run it, or its export holds no CUDA API calls)."""

    shape_first_seen: bool | None
    nsys: PageCalls | None

    def calls(self, stage: str | None) -> CallFigures | None:
        """The nsys pass's calls in the page (stage None) or in one of its stages."""
        if self.nsys is None:
            return None
        return self.nsys.page if stage is None else self.nsys.stages.get(stage)

    def first_use(self, stage: str | None) -> bool:
        """First use of an input shape or lazy kernel loading, in the page or the stage."""
        calls = self.calls(stage)
        return bool(self.shape_first_seen) or (calls is not None and calls.lazy_loading())


NO_EVIDENCE = PageEvidence(None, None)


@dataclass
class FirstUseEvidence:
    """The run's first-use evidence: the nsys pass's page ranges with their calls, and the calls
    inside the warm-up ranges (what the warm-up took upon itself)."""

    nsys_pages: list[PageCalls]
    warmup: CallFigures | None

    def for_record(self, record: dict[str, Any]) -> PageEvidence:
        """The evidence of one clean-pass page record."""
        same = next(
            (
                p
                for p in self.nsys_pages
                if p.page_index is not None
                and (p.page_index, p.repeat) == (input_index(record), record.get("repeat"))
            ),
            None,
        )
        return PageEvidence(first_seen_flag(record), same)

    def to_json(self) -> FirstUse:
        flagged = [p for p in self.nsys_pages if p.shape_first_seen or p.page.lazy_loading()]
        together = CallFigures()
        for p in flagged:
            together.merge(p.page)
        return {
            "source": "the nsys pass's export (CUPTI_ACTIVITY_KIND_RUNTIME inside each page range, on its "
            "thread) and the driver's page records (shape_first_seen)",
            "thresholds": {
                "module_loads": MODULE_LOADS_NOTABLE,
                "kernel_attribute_ns_per_call": SLOW_KERNEL_ATTRIBUTE_CALL_NS,
            },
            "warmup": None if self.warmup is None else self.warmup.to_json(),
            "nsys_pages": [p.to_json() for p in self.nsys_pages],
            "nsys_pages_with_first_use": [p.sequence for p in flagged],
            "nsys_pages_first_of_shape": [p.sequence for p in flagged if p.shape_first_seen],
            "calls_in_those_pages": together.to_json(),
        }


def first_use_evidence(export: Path, run_dir: Path, fallbacks: list[str] | None = None) -> FirstUseEvidence:
    """The first-use evidence of the export and the nsys pass's page records of its run folder
    (run_dir/pages.jsonl: the export itself may lie elsewhere, e.g. made into --out-dir). A table left
    to SQLite adds a sentence to `fallbacks` (columns.table_chunks)."""
    try:
        ranges, calls = _ranges_and_calls(export, fallbacks)
    except (sqlite3.DatabaseError, pages_reader.Damaged, UnicodeDecodeError) as exc:
        # the analysis read this export whole; a damage only these reads meet leaves no evidence
        if fallbacks is not None:
            fallbacks.append(
                f"first-use evidence (module loads in pages) not read: the export is damaged ({exc})"
            )
        return FirstUseEvidence([], None)
    records = {
        r["sequence"]: r
        for r in read_page_records(run_dir / PAGES_FILE)
        if isinstance(r, dict) and isinstance(r.get("sequence"), int)
    }
    pages = ranges.get(PAGE)
    if pages is None:
        return FirstUseEvidence([], None)
    per_page = [CallFigures() for _ in pages["start"]]
    _tally(calls, _containing(pages, calls), per_page)
    per_stage: dict[str, list[CallFigures]] = {}
    for stage in STAGES:
        if stage in ranges:  # a call inside a stage range counts for the page around that range
            page_of_stage = np.append(_containing(pages, ranges[stage]), -1)  # [-1]: outside every page
            per_stage[stage] = [CallFigures() for _ in pages["start"]]
            _tally(calls, page_of_stage[_containing(ranges[stage], calls)], per_stage[stage])
    warmup = None
    if WARMUP in ranges:
        warmup = CallFigures()
        inside = _containing(ranges[WARMUP], calls)
        _tally(calls, np.where(inside >= 0, 0, -1), [warmup])
    out = []
    for i, sequence in enumerate(pages["payload"]):
        record = records.get(int(sequence), {}) if sequence >= 0 else {}
        out.append(
            PageCalls(
                int(sequence),
                _int_or_none(input_index(record)),
                _int_or_none(record.get("repeat")),
                first_seen_flag(record),
                per_page[i],
                {
                    stage: figures[i]
                    for stage, figures in per_stage.items()
                    if figures[i].loads or figures[i].attribute_calls
                },
            )
        )
    return FirstUseEvidence(out, warmup)


def first_seen_flag(record: dict[str, Any]) -> bool | None:
    """A page record's `shape_first_seen`: True or False, None when it does not say (an older run)."""
    flag = record.get("shape_first_seen")
    return flag if isinstance(flag, bool) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _tally(calls: dict[str, Any], owner: Int64s, figures: list[CallFigures]) -> None:
    """Add each call to the figures of its owner (an index into `figures`; -1: none)."""
    for i in np.flatnonzero(owner >= 0):
        figures[owner[i]].add(str(calls["api"][i]), bool(calls["is_load"][i]), int(calls["duration"][i]))


def _ranges_and_calls(
    export: Path, fallbacks: list[str] | None
) -> tuple[dict[str, dict[str, Int64s]], dict[str, Any]]:
    """perfctl's page, stage and warm-up ranges (thread, start, end, payload: -1 when none) by name,
    and the module-load and kernel-attribute calls (thread, start, duration, api name, is_load)."""
    conn = connect_readonly(export)
    try:
        schema = read_schema(conn, export)
        frame = load_nvtx_ranges(conn, schema)
    finally:
        conn.close()
    ranges: dict[str, dict[str, Int64s]] = {}
    ours = frame[frame["domain"] == DOMAIN] if len(frame) else frame
    for name in (PAGE, WARMUP, *STAGES):
        rows = ours[ours["name"] == name] if len(ours) else ours
        if len(rows):
            ranges[name] = {
                "thread": rows["thread"].to_numpy(np.int64),
                "start": rows["start"].to_numpy(np.int64),
                "end": rows["end"].to_numpy(np.int64),
                "payload": rows["payload"].fillna(-1).to_numpy(np.int64),
            }
    empty: dict[str, Any] = {
        "thread": np.zeros(0, np.int64),
        "start": np.zeros(0, np.int64),
        "duration": np.zeros(0, np.int64),
        "api": np.zeros(0, object),
        "is_load": np.zeros(0, bool),
    }
    if PAGE not in ranges or not schema.has(RUNTIME):
        return ranges, empty
    load_ids = {int(i): True for i in string_ids_matching(export, MODULE_LOAD_GLOBS)}
    attribute_ids = {int(i): False for i in string_ids_matching(export, KERNEL_ATTRIBUTE_GLOBS)}
    kinds = load_ids | attribute_ids
    if not kinds:
        return ranges, empty
    names = _api_names(export, list(kinds))
    wanted = {"thread": "globalTid", "start": "start", "end": "end", "name": "nameId"}
    where = RowFilter("nameId", np.array(sorted(kinds), dtype=np.int64))
    notes: list[str] = []
    chunks = list(table_chunks(export, RUNTIME, wanted, where, notes))
    if fallbacks is not None:  # (the analysis may have read this table through SQLite already)
        fallbacks += [note for note in notes if note not in fallbacks]
    if not chunks:
        return ranges, empty
    columns = {key: np.concatenate([c[key] for c in chunks]) for key in wanted}
    ids = columns["name"]
    return ranges, {
        "thread": columns["thread"],
        "start": columns["start"],
        "duration": columns["end"] - columns["start"],
        "api": np.array([names[int(i)] for i in ids], dtype=object),
        "is_load": np.array([kinds[int(i)] for i in ids], dtype=bool),
    }


def _api_names(export: Path, ids: list[int]) -> dict[int, str]:
    """The API names of these StringIds ids, without nsys's version suffix ('cudaFuncSetAttribute_v3020')."""
    conn = connect_readonly(export)
    try:
        values = string_values(conn, ids)
    finally:
        conn.close()
    return {i: values[i].split("_v")[0] for i in ids}


def _containing(ranges: dict[str, Int64s], inner: dict[str, Any]) -> Int64s:
    """For each inner item (thread, start), the index of the range on its thread whose [start, end]
    holds its start, or -1. The ranges of one name do not overlap on a thread (perfctl's pages, stages
    and warm-ups follow one another)."""
    result = np.full(len(inner["start"]), -1, dtype=np.int64)
    for thread in np.unique(ranges["thread"]):
        own = np.flatnonzero(ranges["thread"] == thread)
        own = own[np.argsort(ranges["start"][own], kind="stable")]
        mask = inner["thread"] == thread
        starts = inner["start"][mask]
        pos = np.searchsorted(ranges["start"][own], starts, side="right") - 1
        ok = (pos >= 0) & (starts <= ranges["end"][own[np.clip(pos, 0, None)]])
        result[mask] = np.where(ok, own[np.clip(pos, 0, None)], -1)
    return result


# A page with first-use evidence is named as the cause of a spread when it took at least this much
# longer than the steady runs of its input shape: far above the 1-3 % page-to-page CV of warmed-up
# pages on the H200 (docs/benchmarks.md), far below the 5-9x that first-use pages took there
# (tests/fixtures/h200-llama1b-warmup0).
FIRST_USE_SLOWDOWN = 1.25


@dataclass(frozen=True)
class FirstUseHint:
    """What first-use evidence explains of a stage's spread: the sentence, the pages (labels) it
    explains, and the figures behind it (analysis.json's verdict `first_use`)."""

    text: str
    explained: list[int]
    evidence: FirstUseVerdict


def first_use_hint(
    values: list[float],
    labels: list[int],
    records: list[dict[str, Any]],
    evidence: list[PageEvidence],
    stage: str | None,
    outliers: list[int],
) -> FirstUseHint | None:
    """The pages of a stage (`stage` None: whole pages) that carry first-use evidence and were slow:
    an outlier, or FIRST_USE_SLOWDOWN times the median of the steady pages (no such evidence) of the
    same input shape (or of every steady page when none shares it). None when no such page."""
    carrying = [i for i, e in enumerate(evidence) if e.first_use(stage)]
    if not carrying:
        return None
    steady = [i for i in range(len(values)) if i not in carrying]
    keys = [_shape_of_record(r) for r in records]
    slow: list[tuple[int, float | None]] = []  # (index, steady median of its shape, None: nothing to compare)
    against: dict[int, str] = {}
    for i in carrying:
        same = [values[j] for j in steady if keys[j] == keys[i]]
        against[i] = "the steady runs of its shape" if same else "the steady pages (none of its shape)"
        same = same or [values[j] for j in steady]
        reference = float(np.median(same)) if same else None
        if reference is None or labels[i] in outliers or values[i] >= FIRST_USE_SLOWDOWN * reference:
            slow.append((i, reference))
    if not slow:
        return None
    parts = []
    loads: dict[str, int] = {}
    load_ns = attribute_calls = attribute_ns = 0
    for i, reference in slow:
        why = "first run of its input shape in the process" if evidence[i].shape_first_seen else None
        calls = evidence[i].calls(stage)
        where = f"page {labels[i]}" + (f" ({records[i]['page']})" if records[i].get("page") else "")
        text = f"{where} took {values[i] / 1e6:,.1f} ms"
        if reference is not None:
            text += f" against {reference / 1e6:,.1f} ms for {against[i]} ({values[i] / reference:.1f}x)"
        if why:
            text += f", the {why}"
        if calls is not None and (calls.loads or calls.attribute_calls):
            text += f"; under nsys its {stage or 'page'} (same page and repeat) made {calls.describe()}"
            for api, n in calls.module_loads.items():
                loads[api] = loads.get(api, 0) + n
            load_ns += calls.module_load_ns
            attribute_calls += calls.attribute_calls
            attribute_ns += calls.kernel_attribute_ns
        parts.append(text)
    explained = [labels[i] for i, _ in slow]
    no_warmup = any(evidence[i].shape_first_seen for i, _ in slow)
    text = (
        "first use of an input shape / lazy kernel loading: "
        + "; ".join(parts)
        + (
            " (no warm-up ran these shapes: the default --warmup 1 runs every input shape first)"
            if no_warmup
            else ""
        )
    )
    return FirstUseHint(
        text,
        explained,
        {
            "pages": explained,
            "shape_first_seen": [labels[i] for i, _ in slow if evidence[i].shape_first_seen],
            "slowdown": [None if r is None else values[i] / r for i, r in slow],
            "module_loads": dict(sorted(loads.items())),
            "module_load_ns": load_ns,
            "kernel_attribute_calls": attribute_calls,
            "kernel_attribute_ns": attribute_ns,
        },
    )


def _shape_of_record(record: dict[str, Any]) -> str:
    """The input shape of a page record (its page when an older record does not say)."""
    shape = record.get("input_shape")
    return shape_key(shape) if isinstance(shape, dict) else f"page {record.get('page_index')}"
