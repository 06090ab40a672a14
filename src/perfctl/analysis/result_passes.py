"""The records of analysis.json that the run folder's passes give (perfctl.analysis.result has the
rest, the whole and its JSON round trip): first use of an input shape (analysis.lazy_loading), the
clean timing pass's statistics and telemetry (analysis.repeatability, analysis.telemetry), MFU and MBU
(analysis.efficiency), the torch.profiler pass's operators (analysis.operators). TypedDicts, as there.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

# --- first use of an input shape / lazy kernel loading (analysis.lazy_loading) -------------------


class CallTotals(TypedDict):
    module_loads: dict[str, int]  # API -> calls
    module_load_ns: int
    kernel_attribute_calls: dict[str, int]  # API -> calls
    kernel_attribute_ns: int
    lazy_loading: bool


class NsysPageCalls(CallTotals):
    sequence: int
    page_index: int | None
    repeat: int | None
    shape_first_seen: bool | None
    stages: dict[str, CallTotals]


class FirstUseThresholds(TypedDict):
    module_loads: int
    kernel_attribute_ns_per_call: int


class FirstUse(TypedDict):
    source: str
    thresholds: FirstUseThresholds
    warmup: CallTotals | None
    nsys_pages: list[NsysPageCalls]
    nsys_pages_with_first_use: list[int]
    nsys_pages_first_of_shape: list[int]
    calls_in_those_pages: CallTotals


# --- the clean timing pass (analysis.repeatability, analysis.telemetry) ------------------------------


class Spread(TypedDict):
    """A figure over the clean pass's pages (repeatability.spread); only `count` without pages."""

    count: int
    mean: NotRequired[float]
    std: NotRequired[float]
    cv: NotRequired[float | None]
    min: NotRequired[float]
    median: NotRequired[float]
    p95: NotRequired[float]
    max: NotRequired[float]
    ci95_low: NotRequired[float]
    ci95_high: NotRequired[float]
    outliers: NotRequired[list[int]]
    cv_without_outliers: NotRequired[float | None]
    values: NotRequired[list[float]]
    pages: NotRequired[list[int]]


class FirstUseVerdict(TypedDict):
    pages: list[int]
    shape_first_seen: list[int]
    slowdown: list[float | None]
    module_loads: dict[str, int]
    module_load_ns: int
    kernel_attribute_calls: int
    kernel_attribute_ns: int
    cv_without_those_pages: NotRequired[float | None]


class Verdict(TypedDict):
    stable: bool | None
    why: str
    cause: NotRequired[str]
    first_use: NotRequired[FirstUseVerdict]


class BriefSpread(TypedDict):
    mean: float
    cv: float | None
    min: float
    max: float


class PageTiming(Spread):
    verdict: Verdict


class StageTiming(PageTiming):
    cuda_events: NotRequired[BriefSpread]


class HostSummary(TypedDict, total=False):
    speed_probe_ns: BriefSpread
    steal_share_max: float
    process_cpu_share_mean: float


class StageMemory(TypedDict):
    peak_allocated_bytes: int
    above_page_start_bytes: int


class MemorySummary(TypedDict):
    """Per stage (the keys of perfctl.stages.STAGES), when the pages recorded it."""

    unit: str
    source: str
    vision: NotRequired[StageMemory]
    prefill: NotRequired[StageMemory]
    decode: NotRequired[StageMemory]


class DecodeStepLatency(TypedDict):
    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float


class TimingStatistics(TypedDict):
    unit: str
    threshold_cv: float
    stages: dict[str, StageTiming]
    page: PageTiming
    host: NotRequired[HostSummary]
    memory: NotRequired[MemorySummary]
    time_to_first_token: NotRequired[Spread]
    decode_tokens_per_second: NotRequired[Spread]
    decode_step_latency: NotRequired[DecodeStepLatency]


class PageTelemetry(TypedDict):
    sequence: int
    samples: int
    sm_mhz_mean: float
    sm_mhz_min: float
    mem_mhz_mean: float
    power_w_mean: float
    energy_j: float
    energy_j_per_new_token: float | None
    temp_c_max: float
    gpu_util_mean: float
    mem_used_max_bytes: int


class Telemetry(TypedDict):
    available: bool
    reason: NotRequired[str]
    pages: NotRequired[list[PageTelemetry]]
    sm_mhz_page_mean_range: NotRequired[list[float]]
    sm_clock_spread: NotRequired[float]
    gpu_util_mean: NotRequired[float]
    note: NotRequired[str]
    energy_j_per_page_mean: NotRequired[float]


# "pass" is a Python keyword: this record is declared the functional way
Timing = TypedDict(
    "Timing", {"pass": str, "statistics": TimingStatistics, "telemetry": NotRequired[Telemetry]}
)


class NsysPass(TypedDict):
    telemetry: Telemetry


# --- efficiency: MFU and MBU (analysis.efficiency) ---------------------------------------------------


class EfficiencyStage(TypedDict):
    flops_per_page: float
    clean_seconds_per_page: float
    achieved_tflops: float | None
    mfu: float | None
    nsys_over_clean: float | None
    mfu_measured: NotRequired[float | None]


class EfficiencyPage(TypedDict):
    flops: float
    clean_seconds: float
    achieved_tflops: float
    mfu: float | None
    mfu_measured: NotRequired[float | None]
    padding_flops: NotRequired[float]  # --batch-size: FLOPs per call spent on padding (in no figure)


class MeasuredCeiling(TypedDict):
    source: str
    gpu: str | None
    measured_at: str | None
    matmul_tflops: float | None
    matmul_dtype: str | None
    bandwidth_gbs: float | None
    reason: str | None
    cpu: NotRequired[str | None]  # a calibration of a CPU: its model name


class EfficiencyInputs(TypedDict):
    gpu: str | None
    sm_count: int | None
    dtype: str
    peak_tflops: float | None
    peak_source: str
    clean_pages: int
    clean_time_source: str
    overhead_clean_pages: int
    tokens: dict[str, Any]  # the FLOP report's tokens (image, prompt_total, new)
    prompt_tokens_per_page: list[int]
    model_config: str
    flop_conventions: Any  # the FLOP model's conventions (perfctl.flops.CONVENTIONS)
    measured: NotRequired[MeasuredCeiling]


class DecodeMbu(TypedDict):
    mbu: float | None
    bytes_per_step: NotRequired[float]
    weight_bytes_per_step: NotRequired[float]
    kv_bytes_per_step_mean: NotRequired[float]
    clean_seconds_per_step: NotRequired[float]
    achieved_gbs: NotRequired[float]
    peak_bandwidth_gbs: NotRequired[float]
    peak_source: NotRequired[str]
    mbu_measured: NotRequired[float | None]
    reason: NotRequired[str]
    # --batch-size above 1 through a mixture of experts: the routed experts read are bounded
    mbu_least: NotRequired[float]  # every row routed alike: top-k experts per layer (bytes_per_step)
    mbu_most: NotRequired[float]  # every row routed apart: min(batch x top-k, experts) per layer
    bytes_per_step_most: NotRequired[float]


class Efficiency(TypedDict):
    available: bool
    reason: NotRequired[str]  # when not available
    model_config: NotRequired[str]  # when not available because the FLOPs are unknown
    stages: NotRequired[dict[str, EfficiencyStage]]
    page: NotRequired[EfficiencyPage]
    inputs: NotRequired[EfficiencyInputs]
    decode_mbu: NotRequired[DecodeMbu]


# --- the torch.profiler pass's operators (torch/operators.json, joined to nsys) ---------------------


class OperatorKernel(TypedDict):
    name: str
    calls: int
    device_us: float
    nsys_calls: NotRequired[int | None]
    nsys_time_ns: NotRequired[int | None]


class OperatorRow(TypedDict):
    name: str
    calls: int
    self_cpu_us: float
    cpu_total_us: float | None  # None: the torch pass wrote a total below the self time (withheld)
    self_device_us: float
    device_total_us: float | None
    self_cpu_memory_bytes: int
    self_device_memory_bytes: int
    input_shapes: list[Any]
    kernels: list[OperatorKernel]


class OperatorStage(TypedDict):
    operators: int
    self_cpu_us: float
    self_device_us: float
    top: list[OperatorRow]
    ranked_by: str  # "self_device_us" where the stage has device time, else "self_cpu_us"
    top_self_device_share: float | None  # the top operators' part of the stage's self device time
    totals_withheld: int  # totals of its top operators set to None (below their self time)
    kernels_listed: NotRequired[int]  # the top operators' kernels (joined to an nsys pass)
    kernels_matched: NotRequired[int]  # those found in the nsys pass's stage
    self_cpu_memory_bytes: NotRequired[int]
    self_device_memory_bytes: NotRequired[int]


class Operators(TypedDict):
    source: str
    stages: dict[str, OperatorStage]  # stage (or "other") -> its operator table


# --- the decode loop of a --decode static / compiled run (analysis.decode_loop) ------------------


class DecodeCompile(TypedDict):
    """One pass's compilation: its driver-info.json `compile` object and its page records."""

    graphs_compiled: int | None  # graphs torch._dynamo compiled in the pass's process
    graph_breaks: int | None
    graph_break_reasons: dict[str, int]  # dynamo's reason -> breaks (the most frequent ones)
    compile_seconds: float | None  # dynamo's frame compile time over the pass
    warmup_compile_seconds: float | None  # of that, inside the warm-up runs
    warmup_seconds_beyond_pages: float | None  # warm-up runs' wall time beyond a measured page of their shape
    recompiled_pages: list[int]  # measured pages (sequence numbers) during which dynamo compiled again
    recompilations: int  # graphs compiled during those pages
    cudagraph_skips: int | None  # compiled graphs inductor ran without CUDA graphs (reasons: driver.log)


class DecodeLoop(TypedDict):
    mode: str  # static or compiled (--decode; eager runs have no decode_loop)
    kv_cache: str | None  # the KV cache class the model was handed (driver-info.json kv_cache)
    compiled_forward: bool | None  # transformers made its compiled call (its auto-compile ran)
    passes: dict[str, DecodeCompile]  # pass (nsys, timing, torch) -> its compilation


class LatencySpread(TypedDict):
    mean_ms: float
    p50_ms: float
    max_ms: float


class Throughput(TypedDict):
    source: str  # the pass the figures are of: timing (the clean pass), else nsys (slowed by nsys)
    batch_size: int  # pages per generate call (--batch-size)
    generate_calls: int
    pages: int
    pages_per_s: float
    tokens_per_s: float  # generated tokens of every row, over the calls' wall time
    decode_tokens_per_s: float | None  # every row's decode steps over the decode stage's time
    time_to_first_token: LatencySpread | None  # per page: its call's start to its first token
    time_per_output_token: LatencySpread | None  # per page: after its first token, per further token
    padding_share: float  # of the prompt positions the calls computed, the share that was padding
