"""Dense peak throughput and memory bandwidth per GPU, for MFU and MBU that can be checked by hand.

One table (`GPU_PEAKS`), one row per board, each with the datasheet it came from. Rules:

* **Dense, never sparse.** NVIDIA's datasheets print tensor-core rows "with sparsity" (2:4
  structured), next to the dense figure for the A100/A10/L40S and alone for Hopper, the L4 and
  Blackwell; a dense matmul can reach half of it. Every tensor figure here is the dense one; where the
  datasheet printed only the sparse number, the row's source says "halved".
* **Matched on the name the driver reports** (NVML, `torch.cuda.get_device_name`, nsys
  `TARGET_INFO_GPU.name`), exactly, case- and space-insensitively, with or without the leading
  "NVIDIA " that older drivers left out. No substring or prefix matching: "NVIDIA A10" is the A10 and
  nothing else, "NVIDIA A100" (no variant) matches no row. Where the caller knows the SM count it must
  agree with the row's, which also turns MIG slices and cut-down variants into "unknown".
* **Unknown stays unknown.** `match_gpu` returns None and `resolve_peak` returns a `PeakChoice` with
  no value and the reason; nothing falls back to a default number. The user's override
  (`--peak-tflops`) always wins and is reported as such.

dtypes are torch-style names (`canonical_dtype`): "bf16", "fp16", "fp8" are the tensor-core rates
with FP32 accumulation (what PyTorch's matmuls use); "fp32" is the plain CUDA-core FP32 rate, because
with torch's defaults (`torch.backends.cuda.matmul.allow_tf32 = False`) an fp32 matmul does not use
TF32 tensor cores; "tf32" is the TF32 tensor-core rate, for runs that enable it.

Units: TFLOP/s (10^12 FLOP/s, 2 FLOPs per multiply-add) and GB/s (10^9 bytes/s).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

Dtype = Literal["fp32", "tf32", "bf16", "fp16", "fp8"]

DTYPES: tuple[Dtype, ...] = ("fp32", "tf32", "bf16", "fp16", "fp8")
"""Canonical dtype names, in the table's column order."""

_DTYPE_ALIASES: dict[str, Dtype] = {
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "tf32": "tf32",
    "tensorfloat32": "tf32",
    "tensorfloat-32": "tf32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "fp8": "fp8",
    "float8": "fp8",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
    "e4m3": "fp8",
    "e5m2": "fp8",
}


@dataclass(frozen=True)
class GpuPeaks:
    """One board's datasheet peaks. A None rate means the board has no such unit (A100/A10: no FP8)
    or no figure could be sourced; it is reported as unknown, never filled in."""

    key: str
    label: str
    nvml_names: tuple[str, ...]
    sm_count: int | None
    fp32_tflops: float | None
    tf32_tflops: float | None
    bf16_tflops: float | None
    fp16_tflops: float | None
    fp8_tflops: float | None
    memory_bandwidth_gbs: float
    source: str
    notes: str = ""

    def dense_tflops(self, dtype: Dtype) -> float | None:
        rates: dict[Dtype, float | None] = {
            "fp32": self.fp32_tflops,
            "tf32": self.tf32_tflops,
            "bf16": self.bf16_tflops,
            "fp16": self.fp16_tflops,
            "fp8": self.fp8_tflops,
        }
        return rates[dtype]


_A100_SOURCE = (
    "NVIDIA A100 Tensor Core GPU datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf): "
    "FP32 19.5, TF32 156 (312 with sparsity), BF16/FP16 312 (624 with sparsity); "
    "bandwidth {bw} ({mem})"
)
_A100_NOTES = "Same peaks on every A100 board; the variants differ in memory and bandwidth. No FP8 units."

_H100_PAGE = "NVIDIA H100 datasheet / nvidia.com/en-us/data-center/h100"
_H200_PAGE = "NVIDIA H200 product page, nvidia.com/en-us/data-center/h200"
_HOPPER_HALVED = "tensor figures printed with sparsity, halved here"

GPU_PEAKS: tuple[GpuPeaks, ...] = (
    GpuPeaks(
        key="a100-sxm4-40gb",
        label="A100 SXM4 40GB",
        nvml_names=("NVIDIA A100-SXM4-40GB",),
        sm_count=108,
        fp32_tflops=19.5,
        tf32_tflops=156.0,
        bf16_tflops=312.0,
        fp16_tflops=312.0,
        fp8_tflops=None,
        memory_bandwidth_gbs=1555.0,
        source=_A100_SOURCE.format(bw="1,555 GB/s", mem="40 GB HBM2"),
        notes=_A100_NOTES,
    ),
    GpuPeaks(
        key="a100-sxm4-80gb",
        label="A100 SXM4 80GB",
        nvml_names=("NVIDIA A100-SXM4-80GB",),
        sm_count=108,
        fp32_tflops=19.5,
        tf32_tflops=156.0,
        bf16_tflops=312.0,
        fp16_tflops=312.0,
        fp8_tflops=None,
        memory_bandwidth_gbs=2039.0,
        source=_A100_SOURCE.format(bw="2,039 GB/s", mem="80 GB HBM2e, SXM"),
        notes=_A100_NOTES,
    ),
    GpuPeaks(
        key="a100-pcie-40gb",
        label="A100 PCIe 40GB",
        nvml_names=("NVIDIA A100-PCIE-40GB",),
        sm_count=108,
        fp32_tflops=19.5,
        tf32_tflops=156.0,
        bf16_tflops=312.0,
        fp16_tflops=312.0,
        fp8_tflops=None,
        memory_bandwidth_gbs=1555.0,
        source=_A100_SOURCE.format(bw="1,555 GB/s", mem="40 GB HBM2, PCIe"),
        notes=_A100_NOTES,
    ),
    GpuPeaks(
        key="a100-pcie-80gb",
        label="A100 PCIe 80GB",
        nvml_names=("NVIDIA A100 80GB PCIe",),
        sm_count=108,
        fp32_tflops=19.5,
        tf32_tflops=156.0,
        bf16_tflops=312.0,
        fp16_tflops=312.0,
        fp8_tflops=None,
        memory_bandwidth_gbs=1935.0,
        source=_A100_SOURCE.format(bw="1,935 GB/s", mem="80 GB HBM2e, PCIe"),
        notes=_A100_NOTES,
    ),
    GpuPeaks(
        key="h100-sxm",
        label="H100 SXM5 80GB",
        nvml_names=("NVIDIA H100 80GB HBM3",),
        sm_count=132,
        fp32_tflops=67.0,
        tf32_tflops=494.5,
        bf16_tflops=989.5,
        fp16_tflops=989.5,
        fp8_tflops=1979.0,
        memory_bandwidth_gbs=3350.0,
        source=(
            f"{_H100_PAGE}, H100 SXM column: FP32 67, TF32 989, BF16/FP16 1,979, FP8 3,958 "
            f"({_HOPPER_HALVED}); 80 GB HBM3 at 3.35 TB/s"
        ),
    ),
    GpuPeaks(
        key="h100-pcie",
        label="H100 PCIe 80GB",
        nvml_names=("NVIDIA H100 PCIe",),
        sm_count=114,
        fp32_tflops=51.0,
        tf32_tflops=378.0,
        bf16_tflops=756.5,
        fp16_tflops=756.5,
        fp8_tflops=1513.0,
        memory_bandwidth_gbs=2000.0,
        source=(
            f"{_H100_PAGE}, H100 PCIe column: FP32 51, TF32 756, BF16/FP16 1,513, FP8 3,026 "
            f"({_HOPPER_HALVED}); 80 GB HBM2e at 2 TB/s"
        ),
    ),
    GpuPeaks(
        key="h100-nvl",
        label="H100 NVL 94GB",
        nvml_names=("NVIDIA H100 NVL",),
        sm_count=132,
        fp32_tflops=60.0,
        tf32_tflops=417.5,
        bf16_tflops=835.5,
        fp16_tflops=835.5,
        fp8_tflops=1670.5,
        memory_bandwidth_gbs=3900.0,
        source=(
            f"{_H100_PAGE}, H100 NVL column: FP32 60, TF32 835, BF16/FP16 1,671, FP8 3,341 "
            f"({_HOPPER_HALVED}); 94 GB HBM3 at 3.9 TB/s"
        ),
        notes="Per GPU: an NVL pair is two GPUs, each reporting its own name and its own peaks.",
    ),
    GpuPeaks(
        key="h200-sxm",
        label="H200 SXM 141GB",
        nvml_names=("NVIDIA H200",),
        sm_count=132,
        fp32_tflops=67.0,
        tf32_tflops=494.5,
        bf16_tflops=989.5,
        fp16_tflops=989.5,
        fp8_tflops=1979.0,
        memory_bandwidth_gbs=4800.0,
        source=(
            f"{_H200_PAGE}, H200 SXM column: FP32 67, TF32 989, BF16/FP16 1,979, FP8 3,958 "
            f"({_HOPPER_HALVED}); 141 GB HBM3e at 4.8 TB/s"
        ),
        notes=(
            "'NVIDIA H200' is the SXM board (PCI device 0x2335); the NVL card reports 'NVIDIA H200 NVL' "
            "(0x233B) in NVIDIA's driver product table, so the name alone separates them (both have "
            "132 SMs and 141 GB, which could not)."
        ),
    ),
    GpuPeaks(
        key="h200-nvl",
        label="H200 NVL 141GB",
        nvml_names=("NVIDIA H200 NVL",),
        sm_count=132,
        fp32_tflops=60.0,
        tf32_tflops=417.5,
        bf16_tflops=835.5,
        fp16_tflops=835.5,
        fp8_tflops=1670.5,
        memory_bandwidth_gbs=4800.0,
        source=(
            f"{_H200_PAGE}, H200 NVL column: FP32 60, TF32 835, BF16/FP16 1,671, FP8 3,341 "
            f"({_HOPPER_HALVED}); 141 GB HBM3e at 4.8 TB/s, up to 600 W"
        ),
    ),
    GpuPeaks(
        key="l40s",
        label="L40S 48GB",
        nvml_names=("NVIDIA L40S",),
        sm_count=142,
        fp32_tflops=91.6,
        tf32_tflops=183.0,
        bf16_tflops=362.05,
        fp16_tflops=362.05,
        fp8_tflops=733.0,
        memory_bandwidth_gbs=864.0,
        source=(
            "NVIDIA L40S datasheet: FP32 91.6, TF32 183 (366 with sparsity), BF16/FP16 362.05 "
            "(733 with sparsity), FP8 733 (1,466 with sparsity); 48 GB GDDR6 at 864 GB/s"
        ),
    ),
    GpuPeaks(
        key="l4",
        label="L4 24GB",
        nvml_names=("NVIDIA L4",),
        sm_count=58,
        fp32_tflops=30.3,
        tf32_tflops=60.0,
        bf16_tflops=121.0,
        fp16_tflops=121.0,
        fp8_tflops=242.5,
        memory_bandwidth_gbs=300.0,
        source=(
            "NVIDIA L4 datasheet: FP32 30.3, TF32 120, BF16/FP16 242, FP8 485 (tensor figures printed "
            "with sparsity, halved here); 24 GB GDDR6 at 300 GB/s"
        ),
    ),
    GpuPeaks(
        key="a10",
        label="A10 24GB",
        nvml_names=("NVIDIA A10",),
        sm_count=72,
        fp32_tflops=31.2,
        tf32_tflops=62.5,
        bf16_tflops=125.0,
        fp16_tflops=125.0,
        fp8_tflops=None,
        memory_bandwidth_gbs=600.0,
        source=(
            "NVIDIA A10 Tensor Core GPU datasheet: FP32 31.2, TF32 62.5 (125 with sparsity), "
            "BF16/FP16 125 (250 with sparsity); 24 GB GDDR6 at 600 GB/s"
        ),
        notes=(
            "Not the A10G (AWS G5, 'NVIDIA A10G', a different SKU with no NVIDIA datasheet): A10G is "
            "unknown. No FP8 units."
        ),
    ),
    GpuPeaks(
        key="b200",
        label="B200 180GB (HGX, 1,000 W)",
        nvml_names=("NVIDIA B200",),
        sm_count=148,
        fp32_tflops=75.0,
        tf32_tflops=1100.0,
        bf16_tflops=2250.0,
        fp16_tflops=2250.0,
        fp8_tflops=4500.0,
        memory_bandwidth_gbs=7700.0,
        source=(
            "NVIDIA HGX page (nvidia.com/en-us/data-center/hgx), HGX B200 per-GPU column: FP32 75, "
            "TF32 2.2 PF, BF16/FP16 4.5 PF, FP8 9 PF (tensor figures printed with sparsity, halved "
            "here); 180 GB HBM3e at 7.7 TB/s, configurable up to 1,000 W"
        ),
        notes=(
            "Assumes the 1,000 W HGX/DGX configuration; a board capped lower has lower peaks (use the "
            "override). Earlier NVIDIA material gave 8 TB/s and 80 TFLOP/s FP32; the HGX page's newer "
            "7.7 TB/s is used."
        ),
    ),
    GpuPeaks(
        key="rtx-4090",
        label="GeForce RTX 4090",
        nvml_names=("NVIDIA GeForce RTX 4090",),
        sm_count=128,
        fp32_tflops=82.6,
        tf32_tflops=82.6,
        bf16_tflops=165.2,
        fp16_tflops=165.2,
        fp8_tflops=330.3,
        memory_bandwidth_gbs=1008.0,
        source=(
            "NVIDIA Ada Lovelace GPU architecture whitepaper (nvidia-ada-gpu-architecture.pdf), "
            "RTX 4090 column: FP32 82.6, TF32 82.6, FP16/BF16 with FP32 accumulate 165.2, FP8 with "
            "FP32 accumulate 330.3 (dense; 2x with sparsity); 24 GB GDDR6X at 1,008 GB/s"
        ),
        notes=(
            "FP32-accumulate rates (what PyTorch matmuls use): on GeForce they are half the "
            "FP16-accumulate rates (330.3 FP16, 660.6 FP8). The 'RTX 4090 D' is a different board and "
            "unknown. GeForce boards often clock above the rated boost, so a measured rate can "
            "exceed these by some percent."
        ),
    ),
    GpuPeaks(
        key="rtx-5090",
        label="GeForce RTX 5090",
        nvml_names=("NVIDIA GeForce RTX 5090",),
        sm_count=170,
        fp32_tflops=104.8,
        tf32_tflops=104.8,
        bf16_tflops=209.5,
        fp16_tflops=209.5,
        fp8_tflops=419.0,
        memory_bandwidth_gbs=1792.0,
        source=(
            "NVIDIA GeForce RTX 5090 specifications as quoted by third-party spec sheets (e.g. "
            "spheron.network 'NVIDIA RTX 5090 Specs'; no NVIDIA table was read): 170 SMs, 21,760 CUDA "
            "cores at 2.41 GHz boost (FP32 104.8), FP16 tensor 838 and FP8 1,676 with sparsity and FP16 "
            "accumulate; 32 GB GDDR7 at 1,792 GB/s. Tensor rows DERIVED, see notes"
        ),
        notes=(
            "Derived, not read from an NVIDIA table: dense = half the sparse figure (FP16 419, FP8 "
            "838 with FP16 accumulate), and FP32 accumulate runs at half the FP16-accumulate rate on "
            "GeForce (NVIDIA's corrected Ada whitepaper; the same 2:1 measured on sm_120 in "
            "flashinfer-ai/flashinfer#3628), giving BF16/FP16 209.5 and FP8 419; TF32 = half of "
            "BF16, as on the 4090. Public torch benchmarks reach about 236-240 TFLOP/s bf16 and "
            "about 122 tf32 at 10240^3, 1.15x both figures, consistent with boost clocks above the "
            "rated 2.41 GHz. The 'RTX 5090 D' is a different board and unknown."
        ),
    ),
)
"""The table. Edit here only; docs/gpu-peaks.md is checked against `peak_table_markdown()`."""

_NAME_INDEX: dict[str, GpuPeaks] = {}
_KEY_INDEX: dict[str, GpuPeaks] = {}


def normalize_gpu_name(name: str) -> str:
    """Case-folded, single-spaced, without the leading "NVIDIA " (older drivers omitted it)."""
    folded = " ".join(name.split()).casefold()
    return folded.removeprefix("nvidia ")


for _gpu in GPU_PEAKS:
    _KEY_INDEX[_gpu.key] = _gpu
    for _name in _gpu.nvml_names:
        _NAME_INDEX[normalize_gpu_name(_name)] = _gpu
del _gpu, _name

_MIG = re.compile(r"\bmig\b")


@dataclass(frozen=True)
class _Lookup:
    gpu: GpuPeaks | None
    reason: str | None


def _lookup(name: str | None, sm_count: int | None) -> _Lookup:
    if name is None or not name.strip():
        return _Lookup(None, "no GPU name was recorded")
    norm = normalize_gpu_name(name)
    if _MIG.search(norm):
        return _Lookup(None, f"GPU {name!r} is a MIG slice; the whole board's peaks do not apply to it")
    gpu = _NAME_INDEX.get(norm)
    if gpu is None:
        return _Lookup(None, f"GPU {name!r} is not in perfctl's dense-peak table")
    if sm_count is not None and gpu.sm_count is not None and sm_count != gpu.sm_count:
        return _Lookup(
            None,
            f"GPU {name!r} reports {sm_count} SMs but the table's {gpu.label} has {gpu.sm_count} "
            "(a MIG slice or a different variant)",
        )
    return _Lookup(gpu, None)


def match_gpu(name: str | None, sm_count: int | None = None) -> GpuPeaks | None:
    """The table row for the name the driver reports (NVML / torch / nsys `TARGET_INFO_GPU.name`), or
    None when it is not in the table (the caller reports "unknown"). `sm_count`, when given, must
    equal the row's."""
    return _lookup(name, sm_count).gpu


def gpu_by_key(key: str) -> GpuPeaks | None:
    """A row by its table key ("h100-sxm", "h200-nvl", ...), or None."""
    return _KEY_INDEX.get(key.strip().casefold())


def canonical_dtype(dtype: str) -> Dtype:
    """The canonical name ("bf16", "fp16", "fp32", "tf32", "fp8") of a torch-style dtype name
    ("bfloat16", "torch.float16", "float8_e4m3fn", ...). "float32" means plain FP32 (CUDA cores),
    not TF32. Raises ValueError for a name it does not know."""
    key = dtype.strip().casefold().removeprefix("torch.")
    canon = _DTYPE_ALIASES.get(key)
    if canon is None:
        known = ", ".join(sorted(_DTYPE_ALIASES))
        raise ValueError(f"unknown dtype {dtype!r} for a peak lookup (known: {known})")
    return canon


def dense_peak_tflops(gpu: GpuPeaks, dtype: str) -> float | None:
    """The row's dense peak in TFLOP/s for `dtype` (see `canonical_dtype`), or None where the board
    has no such figure (A100/A10 FP8). Raises ValueError for an unknown dtype name."""
    return gpu.dense_tflops(canonical_dtype(dtype))


def peak_bandwidth_gbs(gpu: GpuPeaks) -> float:
    """The row's datasheet memory bandwidth in GB/s (10^9 bytes/s)."""
    return gpu.memory_bandwidth_gbs


Origin = Literal["override", "table", "unknown"]


@dataclass(frozen=True)
class PeakChoice:
    """The peak a report uses and where it came from, for the report to print next to MFU/MBU.

    `value` is None exactly when `origin` is "unknown"; `source` is "override",
    "table: <label> (<datasheet>)" or "unknown: <reason>"."""

    value: float | None
    unit: Literal["TFLOP/s", "GB/s"]
    origin: Origin
    source: str
    dtype: Dtype | None = None
    gpu: GpuPeaks | None = None
    reason: str | None = None

    @property
    def known(self) -> bool:
        return self.value is not None

    def describe(self) -> str:
        what = f"dense {self.dtype} peak" if self.dtype else "peak memory bandwidth"
        if self.value is None:
            return f"{what}: unknown ({self.reason})"
        return f"{what}: {self.value:g} {self.unit}, {self.source}"


def _check_override(value: float, option: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{option} must be a positive number, got {value!r}")
    return float(value)


def resolve_peak(
    gpu_name: str | None, sm_count: int | None, dtype: str, override_tflops: float | None = None
) -> PeakChoice:
    """The dense peak (TFLOP/s) to divide by: the override when given (it always wins), else the
    table's figure for this GPU and dtype, else unknown with the reason. Never a made-up number.
    Raises ValueError only for an override that is not a positive finite number."""
    try:
        canon: Dtype | None = canonical_dtype(dtype)
    except ValueError:
        canon = None
    if override_tflops is not None:
        value = _check_override(override_tflops, "--peak-tflops")
        gpu = match_gpu(gpu_name, sm_count)
        return PeakChoice(value, "TFLOP/s", "override", "override", canon, gpu)
    if canon is None:
        reason = f"dtype {dtype!r} has no dense peak (known: {', '.join(DTYPES)} and torch names)"
        return PeakChoice(None, "TFLOP/s", "unknown", f"unknown: {reason}", None, None, reason)
    found = _lookup(gpu_name, sm_count)
    if found.gpu is None:
        reason = f"{found.reason}; pass --peak-tflops to set the peak"
        return PeakChoice(None, "TFLOP/s", "unknown", f"unknown: {reason}", canon, None, reason)
    value_or_none = found.gpu.dense_tflops(canon)
    if value_or_none is None:
        reason = f"{found.gpu.label} has no dense {canon} figure in the table; pass --peak-tflops"
        return PeakChoice(None, "TFLOP/s", "unknown", f"unknown: {reason}", canon, found.gpu, reason)
    source = f"table: {found.gpu.label} ({found.gpu.source})"
    return PeakChoice(value_or_none, "TFLOP/s", "table", source, canon, found.gpu)


def resolve_bandwidth(
    gpu_name: str | None, sm_count: int | None, override_gbs: float | None = None
) -> PeakChoice:
    """The peak memory bandwidth (GB/s) for MBU: the override when given, else the table's datasheet
    figure, else unknown with the reason."""
    if override_gbs is not None:
        value = _check_override(override_gbs, "the bandwidth override")
        return PeakChoice(value, "GB/s", "override", "override", None, match_gpu(gpu_name, sm_count))
    found = _lookup(gpu_name, sm_count)
    if found.gpu is None:
        reason = f"{found.reason}; pass a bandwidth override to set it"
        return PeakChoice(None, "GB/s", "unknown", f"unknown: {reason}", None, None, reason)
    source = f"table: {found.gpu.label} ({found.gpu.source})"
    return PeakChoice(found.gpu.memory_bandwidth_gbs, "GB/s", "table", source, None, found.gpu)


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def peak_table_markdown() -> str:
    """The table as docs/gpu-peaks.md shows it (a test keeps the two equal)."""
    lines = [
        "| GPU | NVML name(s) | SMs | FP32 | TF32 | BF16 | FP16 | FP8 | Memory GB/s | Key |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for g in GPU_PEAKS:
        names = ", ".join(f"`{n}`" for n in g.nvml_names)
        sms = "—" if g.sm_count is None else str(g.sm_count)
        rates = " | ".join(_cell(g.dense_tflops(d)) for d in DTYPES)
        lines.append(f"| {g.label} | {names} | {sms} | {rates} | {g.memory_bandwidth_gbs:g} | `{g.key}` |")
    return "\n".join(lines) + "\n"


def sources_markdown() -> str:
    """One line per row: its datasheet and notes (a test keeps docs/gpu-peaks.md in step)."""
    lines = []
    for g in GPU_PEAKS:
        line = f"- **{g.label}** (`{g.key}`): {g.source}."
        if g.notes:
            line += f" {g.notes}"
        lines.append(line)
    return "\n".join(lines) + "\n"
