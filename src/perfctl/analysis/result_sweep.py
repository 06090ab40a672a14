"""The typed result of a batch sweep (`perfctl sweep`): sweep-analysis.json, what its renderers show.

One point per batch size, each read from that point's own analysis.json (perfctl.analysis.sweep);
nothing here is measured anew.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from perfctl.analysis.result_compare import Comparison


class CategoryShare(TypedDict):
    category: str  # perfctl's kernel category (gemm, attention, elementwise, ...)
    share: float  # of the stage's kernel time in the point's nsys pass


class DecodeRoofline(TypedDict):
    """A point's decode step on the roofline: analytic FLOPs per modelled DRAM byte, achieved rate."""

    arithmetic_intensity: float  # FLOP per byte, with the fewest bytes the model allows (mbu / mbu_least)
    # a batch through a mixture of experts: FLOP per byte with the most bytes (every row routed apart)
    arithmetic_intensity_least: NotRequired[float]
    achieved_tflops: float


class SweepPoint(TypedDict):
    batch_size: int
    run: str  # the point's run folder, relative to the sweep folder
    status: str  # the capture's: ok, failed, interrupted (or "missing": no run folder)
    reason: str | None
    analyzed: bool  # its analysis.json was read
    throughput_source: str | None  # timing (the clean pass) or nsys
    pages_per_s: float | None
    tokens_per_s: float | None
    decode_tokens_per_s: float | None
    time_to_first_token_p50_ms: float | None
    time_per_output_token_p50_ms: float | None
    decode_step_p50_ms: float | None  # the clean pass's decode step time, median over every step
    padding_share: float | None
    stage_cv: dict[str, float | None]  # the clean pass's CV per stage over its generate calls
    cv_clock: str | None  # cuda_events (GPU) or host: the clock stage_cv was measured with
    mfu: dict[str, float | None]  # vision, prefill, decode and page, against the datasheet peak
    decode_mbu: float | None  # None for a batch through a mixture of experts: bounded, see below
    decode_mbu_least: NotRequired[float]
    decode_mbu_most: NotRequired[float]
    decode_roofline: DecodeRoofline | None
    gpu_busy_share: dict[str, float | None]  # per stage: GPU busy time / stage wall time (nsys pass)
    top_category: dict[str, CategoryShare | None]  # per stage, the kernel category holding most time
    compile_seconds: NotRequired[float | None]  # --decode compiled: the clean pass's warm-up compile
    recompilations: NotRequired[int]  # graphs compiled during measured calls, every pass


class Saturation(TypedDict):
    """Where throughput stops growing: the rule is in perfctl.analysis.sweep (SATURATION_GAIN)."""

    metric: str  # pages_per_s
    gain_threshold: float
    reached: bool
    batch_size: int | None  # the saturation batch, None when not reached within the sweep
    why: str
    dominant_category: NotRequired[CategoryShare | None]  # decode's top kernel category there


class SweepRoofs(TypedDict):
    gpu: str | None
    dtype: str | None
    peak_tflops: float | None  # the datasheet's dense peak (or the override) MFU divides by
    bandwidth_gbs: float | None
    source: str | None
    measured_tflops: float | None  # a calibration in the run folders, when one applies
    measured_bandwidth_gbs: float | None


class SweepIdentity(TypedDict):
    sweep_id: str
    path: str
    model: str | None
    decode: str | None
    device: str | None
    gpu: str | None
    dtype: str | None
    max_new_tokens: int | None
    batch_sizes: list[int]
    command: list[str]
    status: str
    started_at: str | None
    finished_at: str | None


class SweepAnalysis(TypedDict):
    perfctl_version: str
    sweep: SweepIdentity
    points: list[SweepPoint]
    saturation: Saturation
    roofs: SweepRoofs
    warnings: list[str]


# --- `perfctl compare SWEEP_A SWEEP_B`: two sweeps, batch size by batch size --------------------------


class SweepSide(TypedDict):
    label: str  # A or B
    sweep_id: str
    path: str
    model: str | None
    decode: str | None
    gpu: str | None
    batch_sizes: list[int]


class RateChange(TypedDict):
    a: float | None
    b: float | None
    change_pct: float | None  # (B - A) / A in percent


class SweepPointComparison(TypedDict):
    batch_size: int
    compared: bool  # both sweeps analyzed this batch size: `comparison` holds the runs' comparison
    reason: str | None  # why not compared (only in one sweep, not analyzed there)
    pages_per_s: RateChange
    tokens_per_s: RateChange
    comparison: NotRequired[Comparison]  # perfctl compare of the two points' run folders


class SweepGate(TypedDict):
    fail_if_slower_pct: float
    outcome: str  # the worst point's: "slower" over "cannot tell" over "passed"
    exit_code: int
    failed: bool
    slower_batches: list[int]
    undetermined_batches: list[int]


class SweepComparison(TypedDict):
    a: SweepSide
    b: SweepSide
    points: list[SweepPointComparison]
    warnings: list[str]
    gate: NotRequired[SweepGate]  # with --fail-if-slower
