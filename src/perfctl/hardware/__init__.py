"""What perfctl knows about the hardware a run used: dense peak throughput and memory bandwidth per GPU
(`peaks`), the denominators of MFU and MBU."""

from __future__ import annotations

from perfctl.hardware.peaks import (
    DTYPES,
    GPU_PEAKS,
    GpuPeaks,
    PeakChoice,
    canonical_dtype,
    dense_peak_tflops,
    gpu_by_key,
    match_gpu,
    peak_bandwidth_gbs,
    resolve_bandwidth,
    resolve_peak,
)

__all__ = [
    "DTYPES",
    "GPU_PEAKS",
    "GpuPeaks",
    "PeakChoice",
    "canonical_dtype",
    "dense_peak_tflops",
    "gpu_by_key",
    "match_gpu",
    "peak_bandwidth_gbs",
    "resolve_bandwidth",
    "resolve_peak",
]
