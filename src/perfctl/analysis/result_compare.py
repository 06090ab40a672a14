"""The records of a comparison (perfctl.analysis.compare, perfctl.analysis.compare_power): what
`perfctl compare --format json` writes, every key documented in docs/compare.md (tests/test_compare_doc.py
holds the doc to these TypedDicts)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class SampleRecord(TypedDict):
    mean: float
    std: float
    count: int


class Difference(TypedDict):
    """B - A of one figure, with its 95 % confidence interval (null with fewer than two pages) and
    the smallest change the two runs could tell from noise (null, with its reason, when unknown)."""

    a: SampleRecord
    b: SampleRecord
    delta: float
    delta_pct: float | None
    ci95_low: float | None
    ci95_high: float | None
    df: float | None
    change: str
    min_detectable_change_pct: float | None
    min_detectable_change_reason: str | None


class RunSide(TypedDict):
    """Who one run is (`a`, `b`): what `_identity` reads of its analysis, and where it came from."""

    label: str
    run_id: str | None
    status: str | None
    reason: str | None
    model: str | None
    gpu: str | None
    device: str | None
    dtype: str | None
    workload: dict[str, Any]
    clean_pages: int | None
    nsys_pages: int | None
    decode_step_span: str  # what its decode steps cover (stages.DECODE_STEP_SPAN)
    origin: NotRequired[str]  # compare_run: the file, or how the analysis was made


class RunDifference(TypedDict):
    """One thing the two runs differ in; `refused`: one of those compare refuses without
    --allow-different (a different model, mode, device, batch size or decode mode)."""

    key: str
    a: Any
    b: Any
    refused: bool


class KernelDelta(TypedDict):
    name: str
    short_name: str
    category: str
    in_a: bool
    in_b: bool
    a_calls_per_page: float | None
    b_calls_per_page: float | None
    a_time_ns_per_page: float | None
    b_time_ns_per_page: float | None
    delta_ns_per_page: float | None
    delta_pct: float | None


class StageComparison(TypedDict):
    stage: str
    verdict: str
    time_ns: Difference
    mfu: Difference | None
    achieved_tflops: Difference | None
    # MFU and TFLOP/s: "time" (FLOPs per page equal: computed from the stage time's interval, so their
    # verdict follows the time's), "own" (FLOPs per page differ: judged on their own), null: not compared
    efficiency_basis: str | None
    flops_per_page_a: float | None
    flops_per_page_b: float | None
    kernel_count: Difference | None
    kernel_time_ns: Difference | None
    top_kernels: list[KernelDelta]


class PageComparison(TypedDict):
    verdict: str
    time_ns: Difference


class FailingStage(TypedDict):
    stage: str
    delta_pct: float | None


class UndeterminedStage(TypedDict):
    """A stage whose runs cannot tell a change of the gate's size from noise, and what would."""

    stage: str
    min_detectable_change_pct: float | None
    reason: str | None  # why the minimum is unknown
    pages_needed: int | None  # per run, both runs with their spreads; null: beyond pages_searched
    pages_searched: int


class Gate(TypedDict):
    fail_if_slower_pct: float
    outcome: str  # "passed", "slower", "cannot tell"
    exit_code: int
    failed: bool
    failing_stages: list[FailingStage]
    undetermined_stages: list[UndeterminedStage]


class Comparison(TypedDict):
    """The comparison of run B against run A (docs/compare.md)."""

    a: RunSide
    b: RunSide
    time_source: str
    clean_clock: str | None
    time_source_text: str
    kernel_source: str | None
    method: str
    run_differences: list[RunDifference]
    allowed_different: bool
    warnings: list[str]
    stages: list[StageComparison]
    page: PageComparison
    gate: NotRequired[Gate]  # with a threshold (compare_run)
