"""`perfctl calibrate`: the dense bf16 matmul rate and the memory bandwidth this GPU really reaches.

The datasheet peak (`peaks.py`) is what no kernel reaches; a measured ceiling tells how far a stage is
from what the hardware gives in practice. Measured on the current GPU with CUDA events, after warm-up:

* matmul: square bf16 GEMMs (`torch.mm`, FP32 accumulation as PyTorch does it) of a few sizes, each
  timed over several back-to-back calls; FLOPs = 2·n³ per call; the best size's rate is the ceiling;
* memory: a device-to-device copy of a large buffer (`Tensor.copy_`), counting the bytes read plus
  the bytes written (2 × the buffer), the way a bandwidth-bound kernel moves them.

The result (`Calibration.to_json`) names the GPU (NVML name, SM count), torch and CUDA versions, the
time, and every measured size, so that `perfctl analyze` can leave out a file measured on another
kind of GPU. `perfctl capture --calibrate` runs `perfctl calibrate --out RUN/calibration.json` after
its passes, on the capture's GPU.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfctl.errors import BadInput

FORMAT = "perfctl-calibration/1"
MATMUL_SIZES = (4096, 8192, 16384)
MATMUL_CALLS, WARMUP_CALLS = 20, 3
COPY_BYTES = 1 << 30  # 1 GiB source, 1 GiB destination
COPY_CALLS = 20


@dataclass(frozen=True)
class Calibration:
    data: dict[str, Any]

    @property
    def matmul_tflops(self) -> float:
        return float(self.data["matmul"]["best_tflops"])

    @property
    def bandwidth_gbs(self) -> float:
        return float(self.data["memory"]["gbs"])

    def to_json(self) -> dict[str, Any]:
        return self.data


def _timed_ms(torch: Any, fn: Any, calls: int) -> float:
    """Milliseconds per call of `fn`, warmed up, timed with CUDA events around `calls` calls."""
    for _ in range(WARMUP_CALLS):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    torch.cuda.synchronize()
    return float(start.elapsed_time(end)) / calls


def measure(device: str = "cuda") -> Calibration:
    """Measure the current GPU. BadInput when torch sees no CUDA GPU (or not the one asked for)."""
    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise BadInput(
            f"perfctl calibrate measures a CUDA GPU; --device must be cuda or cuda:N, not {device!r}"
        )
    import torch

    from perfctl.files import utc_now

    if not torch.cuda.is_available():
        raise BadInput(f"no CUDA GPU to calibrate: this torch ({torch.__version__}) sees none")
    dev = torch.device(device)
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise BadInput(f"no GPU {device}: torch sees {torch.cuda.device_count()}")
    torch.cuda.set_device(index)
    props = torch.cuda.get_device_properties(index)
    sizes = []
    with torch.inference_mode():
        for n in MATMUL_SIZES:
            a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
            b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
            out = torch.empty(n, n, device=dev, dtype=torch.bfloat16)
            ms = _timed_ms(torch, lambda a=a, b=b, out=out: torch.mm(a, b, out=out), MATMUL_CALLS)
            sizes.append({"n": n, "ms_per_call": ms, "tflops": 2 * n**3 / (ms / 1e3) / 1e12})
            del a, b, out
        src = torch.empty(COPY_BYTES, device=dev, dtype=torch.uint8).random_(0, 255)
        dst = torch.empty_like(src)
        copy_ms = _timed_ms(torch, lambda src=src, dst=dst: dst.copy_(src), COPY_CALLS)
        del src, dst
    torch.cuda.empty_cache()
    return Calibration(
        {
            "format": FORMAT,
            "measured_at": utc_now(),
            "gpu_name": props.name,
            "gpu_sm_count": props.multi_processor_count,
            "device": f"cuda:{index}",
            "torch": torch.__version__,
            "cuda_runtime": torch.version.cuda,
            "matmul": {
                "dtype": "bfloat16",
                "how": f"torch.mm of n x n bf16 matrices, {MATMUL_CALLS} calls after {WARMUP_CALLS} warm-up, "
                "CUDA events; 2 n^3 FLOPs per call",
                "sizes": sizes,
                "best_tflops": max(s["tflops"] for s in sizes),
            },
            "memory": {
                "how": f"device-to-device copy_ of {COPY_BYTES} bytes, {COPY_CALLS} calls after "
                f"{WARMUP_CALLS} warm-up, CUDA events; bytes read + written per call",
                "bytes_per_call": 2 * COPY_BYTES,
                "ms_per_call": copy_ms,
                "gbs": 2 * COPY_BYTES / (copy_ms / 1e3) / 1e9,
            },
        }
    )


def load_calibration(path: Path) -> Calibration:
    """A file `perfctl calibrate` wrote; BadInput for anything else."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read the calibration {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadInput(f"{path} is not a perfctl calibration (format {FORMAT})")
    try:
        calibration = Calibration(data)
        if calibration.matmul_tflops <= 0 or calibration.bandwidth_gbs <= 0:
            raise ValueError("non-positive rate")
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"{path}: damaged calibration ({exc})") from None
    return calibration
