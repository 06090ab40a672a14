"""What the user chose for `perfctl analyze` (everything but the path and the profiles folder): one
typed record, made by the CLI from its options (or by a caller in code), checked once when it is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from perfctl.errors import BadInput

# What an override may be: above any GPU's dense peak by far is a typo, not a GPU (B200: ~2,250 dense
# bf16 TFLOP/s, 8 TB/s).
PEAK_LIMITS = {"--peak-tflops": 100_000.0, "--peak-bandwidth-gbs": 1_000_000.0}


def check_peaks(peak_tflops: float | None, peak_bandwidth_gbs: float | None) -> None:
    """Refuse a peak override that is not a positive, finite, believable number, before any work."""
    for flag, value in (("--peak-tflops", peak_tflops), ("--peak-bandwidth-gbs", peak_bandwidth_gbs)):
        if value is not None and not (math.isfinite(value) and 0 < value <= PEAK_LIMITS[flag]):
            raise BadInput(
                f"{flag} must be a number above 0 and at most {PEAK_LIMITS[flag]:,.0f}, got {value}"
            )


@dataclass(frozen=True)
class AnalyzeOptions:
    """`perfctl analyze`'s options. Making one refuses an unbelievable peak override (BadInput), so
    no analysis starts with one."""

    nsys_path: str | None = None  # nsys for exporting a .nsys-rep (None: $NSYS, then PATH)
    top_n: int = 10  # top kernels kept per range (--top)
    out_dir: Path | None = None  # where the outputs (and a new export) go (None: beside the export)
    allow_no_kernels: bool = False  # an export without CUDA kernels: NVTX wall times alone, not refused
    peak_tflops: float | None = None  # dense peak TFLOP/s for MFU and the roofs (None: the GPU table's)
    peak_bandwidth_gbs: float | None = None  # peak memory GB/s for MBU and the roofs (None: the table's)
    calibration: Path | None = None  # a `perfctl calibrate` file (None: the run folder's calibration.json)

    def __post_init__(self) -> None:
        check_peaks(self.peak_tflops, self.peak_bandwidth_gbs)


DEFAULT_OPTIONS = AnalyzeOptions()  # `perfctl analyze PATH` with no option given
