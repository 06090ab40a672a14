"""`perfctl calibrate`: measure this GPU's (or CPU's) dense matmul rate and memory bandwidth
(perfctl.hardware.calibrate), and keep the result in a file when asked."""

from __future__ import annotations

from pathlib import Path

from perfctl.files import write_json_atomic
from perfctl.hardware.calibrate import Calibration, measure


def calibrate(device: str, dtype: str | None = None, out: Path | None = None) -> Calibration:
    """Measure `device` in `dtype`; with `out`, also write the result there (for `perfctl analyze
    --calibration`)."""
    result = measure(device, dtype)
    if out is not None:
        write_json_atomic(out, result.to_json())
    return result
