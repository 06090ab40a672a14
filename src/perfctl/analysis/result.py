"""The analysis result as typed records: the shape of analysis.json, its one writer and its one reader.

The records are TypedDicts: they are the JSON objects themselves (no conversion, nothing at run time),
so `dump_analysis` writes exactly what the producers built and mypy checks every key a producer
writes and a consumer (findings, summary.md, report.html, compare, the registry) reads. A key marked
NotRequired is absent from some analyses (an export alone has no `timing`; a record left short by a
CPU run). docs/analysis-json.md documents every key of every record here; tests/test_analysis_doc.py
holds the two to each other, and a real fixture's analysis.json to these keys.

Records that perfctl copies from elsewhere stay open dicts: the run's manifest records under `run`
(`workload`, `driver`, `model_spec`: docs/workloads.md), a finding's `evidence` (per finding kind),
the FLOP model's conventions.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, NotRequired, TypedDict, Union, get_args, get_origin, get_type_hints

from perfctl.analysis.result_ncu import NcuPass
from perfctl.analysis.result_passes import (
    DecodeLoop,
    Efficiency,
    FirstUse,
    NsysPass,
    Operators,
    Throughput,
    Timing,
)
from perfctl.errors import BadInput

# --- NVTX ranges and stages -------------------------------------------------------------------------


class Statistics(TypedDict):
    """A figure over a range name's instances (analysis.runs.describe)."""

    count: float
    mean: float
    std: float
    min: float
    median: float
    p95: float
    max: float


class PerInstance(TypedDict):
    wall_ns: Statistics
    kernel_count: Statistics
    graph_kernel_count: Statistics | None  # None: the export cannot tell (no graphNodeId column)
    kernel_time_ns: Statistics
    gpu_busy_ns: Statistics


class OtherThreads(TypedDict):
    kernel_count: int
    kernel_time_ns: int


class TopKernel(TypedDict):
    name: str
    short_name: str
    category: str
    count: int
    time_ns: int
    share_of_range_kernel_time: float


class RangeSummary(TypedDict):
    """One (domain, name) of the export's NVTX ranges: `ranges[]`."""

    domain: str
    name: str
    instances: int
    wall_ns: int
    kernel_count: int
    graph_kernel_count: int | None  # of those, replayed from CUDA graphs; None: the export cannot tell
    kernel_time_ns: int
    gpu_busy_ns: int
    gpu_span_ns: int
    gpu_idle_fraction: float | None
    launches: int
    graph_launches: int  # CUDA graph launch calls inside the instances
    memcpy_count: int
    memcpy_bytes: int
    memcpy_time_ns: int
    memset_count: int
    memset_bytes: int
    memset_time_ns: int
    launch_to_start_ns: Statistics
    other_threads: OtherThreads
    per_instance: PerInstance
    top_kernels: list[TopKernel]
    kernel_time_by_category: dict[str, int]  # kernel category -> time (ns)
    kernel_time_by_name: dict[str, list[int]]  # kernel name -> [calls, time (ns)]


class StageSummary(RangeSummary):
    """A perfctl stage's range summary (zeros when the stage never ran): `stages[]`."""

    stage: str
    wall_mean_ns: float


class PageStage(TypedDict):
    instances: int
    wall_ns: int
    kernel_count: int
    kernel_time_ns: int
    gpu_busy_ns: int


class PageSummary(TypedDict):
    """One perfctl page range of the nsys pass: `pages[]`."""

    sequence: int | None  # the range's payload; None when the range carries none
    start_ns: int
    wall_ns: int
    gpu_busy_ns: int
    stages: dict[str, PageStage]


class IncompletePage(TypedDict):
    sequence: int | None
    start_ns: int
    ranges_left_out: int


class Completion(TypedDict):
    complete: list[int]
    incomplete: list[IncompletePage]
    expected: int | None
    not_started: list[int] | None


# --- the export ---------------------------------------------------------------------------------------


class Gpu(TypedDict, total=False):
    """A TARGET_INFO_GPU row: the columns this export's schema has (text ones may be NULL)."""

    id: int | None
    name: str | None
    busLocation: str | None
    smCount: int | None
    totalMemory: int | None
    memoryBandwidth: int | None
    clockRate: int | None
    computeMajor: int | None
    computeMinor: int | None


class ExportInfo(TypedDict):
    path: str
    schema_version: str | None
    nsys_version: str | None
    gpus: list[Gpu]
    source: NotRequired[str]  # how the export was chosen (perfctl.export_source)


class Totals(TypedDict):
    nvtx_ranges: int
    kernels: int
    kernel_time_ns: int
    gpu_busy_ns: int
    unattributed_kernels: int
    graph_launches: int
    graph_launches_without_activity: int


# --- the run folder's records ------------------------------------------------------------------------


class RunIdentity(TypedDict):
    """The manifest's fields analyze_run.RUN_IDENTITY_KEYS (null when the manifest lacks one)."""

    run_id: str | None
    tool: str | None
    status: str | None
    reason: str | None
    pages_completed: int | None
    pages_expected: int | None
    model_spec: dict[str, Any] | None
    workload: dict[str, Any] | None
    driver: dict[str, Any] | None


class ShippedLabel(TypedDict):
    """A run that came with perfctl (perfctl.shipped): its shipped.json, as analysis.json `shipped`."""

    label: str  # one line: shipped with perfctl, not a run of the user's
    captured: str  # when, on which hardware and software
    command: str  # the capture command that made it
    model: str  # which model and weights
    left_out: str  # what of the capture is not shipped, and why


class RunManifestNote(TypedDict):
    path: str
    state: str
    problems: list[str]
    record_warnings: list[str]


# --- findings and cost centres (analysis.findings) ---------------------------------------------------


class Finding(TypedDict):
    id: str
    severity: str
    stage: str | None
    title: str
    text: str
    evidence: dict[str, Any]  # the raw numbers, per finding kind (docs/analysis-json.md)
    next: str | None


class LargestKernel(TypedDict):
    short_name: str
    name: str
    count: int
    time_ns: int


class CostCentre(TypedDict):
    stage: str
    kind: str
    category: str | None
    time_ns: int
    share_of_stage_wall: float
    share_of_all_stages: float
    largest_kernel: LargestKernel | None


# --- the whole ----------------------------------------------------------------------------------------


class Analysis(TypedDict):
    """analysis.json. An export's analysis has export..completion; a run folder's adds run and the
    passes' records; a --tool torch run has only the operators (with `source` and `trace`)."""

    perfctl_version: str
    warnings: list[str]
    export: NotRequired[ExportInfo]
    totals: NotRequired[Totals]
    ranges: NotRequired[list[RangeSummary]]
    stages: NotRequired[list[StageSummary]]
    pages: NotRequired[list[PageSummary]]
    completion: NotRequired[Completion]
    run: NotRequired[RunIdentity]
    shipped: NotRequired[ShippedLabel]  # a run that came with perfctl, not the user's
    first_use: NotRequired[FirstUse]
    timing: NotRequired[Timing]
    nsys_pass: NotRequired[NsysPass]
    operators: NotRequired[Operators]
    efficiency: NotRequired[Efficiency]
    throughput: NotRequired[Throughput]  # run folders: pages and tokens per second, TTFT, TPOT
    decode_loop: NotRequired[DecodeLoop]  # --decode static / compiled runs
    ncu: NotRequired[NcuPass]  # the Nsight Compute pass (run folders with ncu/)
    run_manifest: NotRequired[RunManifestNote]
    cost_centres: NotRequired[list[CostCentre]]
    findings: NotRequired[list[Finding]]
    source: NotRequired[str]  # a --tool torch run: what the analysis is of
    trace: NotRequired[str]  # a --tool torch run: its Chrome trace


def new_finding(
    kind: str,
    severity: str,
    stage: str | None,
    title: str,
    text: str,
    evidence: dict[str, Any],
    next_step: str | None,
) -> Finding:
    """A finding (analysis.findings, analysis.ncu_findings): `kind` is its id, `next_step` its advice."""
    return {
        "id": kind,
        "severity": severity,
        "stage": stage,
        "title": title,
        "text": text,
        "evidence": evidence,
        "next": next_step,
    }


# --- the one writer and the one reader ---------------------------------------------------------------


def dump_analysis(analysis: Analysis) -> str:
    """analysis.json's text: indented JSON, anything not JSON (a path) as its string, one final newline."""
    return json.dumps(analysis, indent=2, default=str) + "\n"


def read_analysis(path: Path) -> Analysis:
    """An analysis.json that `perfctl analyze` wrote, with its top-level shape checked: BadInput (one
    line) for a file that is not JSON, not an analysis, holds no stage times to compare, or has a
    top-level record of the wrong kind (a damaged or hand-edited file)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"cannot read {path} as JSON: {exc}") from None
    if not (isinstance(data, dict) and {"stages", "timing"} & set(data)):
        if isinstance(data, dict) and "perfctl_version" in data:
            raise BadInput(f"{path} holds no stage times to compare (a --tool torch run has operators only)")
        raise BadInput(f"{path} is not a perfctl analysis.json (no 'stages' or 'timing')")
    hints = get_type_hints(Analysis)
    for key, value in data.items():
        if key in hints and not _json_kind_fits(value, hints[key]):
            raise BadInput(f"{path} is a damaged analysis.json: '{key}' is {_json_kind(value)}")
    analysis: Analysis = data  # type: ignore[assignment]  # its top-level shape checked above
    return analysis


def _json_kind(value: object) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def _json_kind_fits(value: object, hint: Any) -> bool:
    """Whether a JSON value is of the kind (object, array, string, number, null) that `hint` names;
    what is inside it is not looked at."""
    if get_origin(hint) in (Union, types.UnionType):
        return any(_json_kind_fits(value, arm) for arm in get_args(hint))
    if get_origin(hint) is typing.NotRequired:
        return _json_kind_fits(value, get_args(hint)[0])
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    origin = get_origin(hint) or hint
    if typing.is_typeddict(hint) or origin is dict:
        return isinstance(value, dict)
    if origin is list:
        return isinstance(value, list)
    if origin is str:
        return isinstance(value, str)
    if origin is bool:
        return isinstance(value, bool)
    if origin in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True
