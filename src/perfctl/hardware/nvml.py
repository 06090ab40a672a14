"""The GPUs NVML sees (nvidia-ml-py), for a run's manifest and for `perfctl doctor`."""

from __future__ import annotations

from typing import Any


def nvml_gpus() -> list[dict[str, Any]] | str:
    """GPUs as NVML sees them, or a sentence saying why there are none to list."""
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"NVML unavailable ({exc})"
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append(
                {
                    "index": i,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "memory_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    "driver": _text(pynvml.nvmlSystemGetDriverVersion()),
                }
            )
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
