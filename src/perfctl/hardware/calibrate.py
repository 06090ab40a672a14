"""`perfctl calibrate`: the dense matmul rate and the memory bandwidth this GPU, or this CPU, really reaches.

The datasheet peak (`peaks.py`) is what no kernel reaches, and a CPU has no datasheet row here at all;
a measured ceiling tells how far a stage is from what the hardware gives in practice. After warm-up:

* matmul: square GEMMs (`torch.mm`, in the run's compute dtype: bf16 on a GPU by default, float32 on
  the CPU, where perfctl's CPU runs compute) of a few sizes; FLOPs = 2·n³ per call; the best size's
  rate is the ceiling;
* memory: a copy of a large buffer (`Tensor.copy_`), counting the bytes read plus the bytes written
  (2 × the buffer), the way a bandwidth-bound kernel moves them.

On a GPU each size is timed with CUDA events over several back-to-back calls. On the CPU with the
host clock, as the fastest of a few batches of calls (each batch long enough for the clock), with the
torch threads the driver also gets; the buffer is far larger than any CPU cache, so the copy measures
memory, not cache. A busy CPU measures lower: the figure is this CPU's rate at the time, and the
result says it is measured, not a datasheet figure.

The result (`Calibration.to_json`) names the GPU (NVML name, SM count) or the CPU (model name, logical
CPUs, torch threads), torch and CUDA versions, the time, and every measured size, so that `perfctl
analyze` can leave out a file measured on another kind of processor. `perfctl capture --calibrate`
runs `perfctl calibrate --out RUN/calibration.json` after its passes, on the capture's device.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfctl.errors import BadInput

FORMAT = "perfctl-calibration/1"
MATMUL_SIZES = (4096, 8192, 16384)
MATMUL_CALLS, WARMUP_CALLS = 20, 3
COPY_BYTES = 1 << 30  # 1 GiB source, 1 GiB destination
COPY_CALLS = 20
DEFAULT_DTYPE = {"cuda": "bfloat16", "cpu": "float32"}  # what perfctl's runs compute in on each
DTYPES = ("bfloat16", "float16", "float32")
# The CPU: sizes a 2-core machine multiplies in well under a second each (2·1024³ = 2.1 GFLOP), a copy
# buffer far beyond the last-level cache (tens of MiB on server CPUs), and batches of calls long
# enough that the host clock's resolution and one scheduler tick do not matter; the fastest batch is
# the rate the CPU can reach, the others carry whatever else the machine was doing.
CPU_MATMUL_SIZES = (256, 512, 1024)
CPU_COPY_BYTES = 256 << 20
CPU_BATCH_SECONDS = 0.1
CPU_BATCHES = 3


@dataclass(frozen=True)
class Calibration:
    data: dict[str, Any]

    @property
    def matmul_tflops(self) -> float:
        return float(self.data["matmul"]["best_tflops"])

    @property
    def bandwidth_gbs(self) -> float:
        return float(self.data["memory"]["gbs"])

    @property
    def on_cpu(self) -> bool:
        return self.data.get("device") == "cpu"

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


def measure(device: str = "cuda", dtype: str | None = None) -> Calibration:
    """Measure the current GPU (`cuda`, `cuda:N`) or this CPU (`cpu`) in `dtype` (default: what
    perfctl's runs compute in there). BadInput when torch sees no CUDA GPU (or not the one asked for)."""
    if device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
        raise BadInput(f"--device must be cpu, cuda or cuda:N, not {device!r}")
    dtype = dtype or DEFAULT_DTYPE["cpu" if device == "cpu" else "cuda"]
    if dtype not in DTYPES:
        raise BadInput(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return measure_cpu(dtype) if device == "cpu" else measure_gpu(device, dtype)


def measure_gpu(device: str, dtype: str) -> Calibration:
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
    torch_dtype = getattr(torch, dtype)
    with torch.inference_mode():
        for n in MATMUL_SIZES:
            a = torch.randn(n, n, device=dev, dtype=torch_dtype)
            b = torch.randn(n, n, device=dev, dtype=torch_dtype)
            out = torch.empty(n, n, device=dev, dtype=torch_dtype)
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
                "dtype": dtype,
                "how": f"torch.mm of n x n {dtype} matrices, {MATMUL_CALLS} calls after {WARMUP_CALLS} "
                "warm-up, CUDA events; 2 n^3 FLOPs per call",
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


def _fastest_batch_seconds(fn: Any) -> tuple[float, int]:
    """(seconds per call, calls per batch) of `fn` on the host clock: warmed up, then the fastest of
    CPU_BATCHES batches, each of enough calls to last CPU_BATCH_SECONDS."""
    for _ in range(WARMUP_CALLS):
        fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-9)
    calls = max(1, int(CPU_BATCH_SECONDS / once))
    best = float("inf")
    for _ in range(CPU_BATCHES):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best, calls


def measure_cpu(dtype: str) -> Calibration:
    """Measure this CPU with torch's threads (as many as the driver's clean pass gets)."""
    import torch

    from perfctl.files import utc_now
    from perfctl.hardware.host import cpu_model

    torch_dtype = getattr(torch, dtype)
    sizes = []
    with torch.inference_mode():
        for n in CPU_MATMUL_SIZES:
            a, b = torch.randn(n, n, dtype=torch_dtype), torch.randn(n, n, dtype=torch_dtype)
            out = torch.empty(n, n, dtype=torch_dtype)
            seconds, calls = _fastest_batch_seconds(lambda a=a, b=b, out=out: torch.mm(a, b, out=out))
            sizes.append(
                {
                    "n": n,
                    "calls_per_batch": calls,
                    "ms_per_call": seconds * 1e3,
                    "tflops": 2 * n**3 / seconds / 1e12,
                }
            )
        src = torch.empty(CPU_COPY_BYTES, dtype=torch.uint8).random_(0, 255)
        dst = torch.empty_like(src)
        copy_seconds, copy_calls = _fastest_batch_seconds(lambda src=src, dst=dst: dst.copy_(src))
        del src, dst
    timed = f"host clock, the fastest of {CPU_BATCHES} batches of calls after {WARMUP_CALLS} warm-up"
    return Calibration(
        {
            "format": FORMAT,
            "measured_at": utc_now(),
            "device": "cpu",
            "cpu_name": cpu_model(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu_name": None,
            "gpu_sm_count": None,
            "torch": torch.__version__,
            "cuda_runtime": None,
            "matmul": {
                "dtype": dtype,
                "how": f"torch.mm of n x n {dtype} matrices on {torch.get_num_threads()} torch threads, "
                f"{timed}; 2 n^3 FLOPs per call",
                "sizes": sizes,
                "best_tflops": max(s["tflops"] for s in sizes),
            },
            "memory": {
                "how": f"copy_ of {CPU_COPY_BYTES} bytes in host memory ({copy_calls} per batch), {timed}; "
                "bytes read + written per call",
                "bytes_per_call": 2 * CPU_COPY_BYTES,
                "ms_per_call": copy_seconds * 1e3,
                "gbs": 2 * CPU_COPY_BYTES / copy_seconds / 1e9,
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
