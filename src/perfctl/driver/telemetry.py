"""GPU telemetry while the driver runs: NVML sampled in a background thread.

Each sample (every `period_s`) is one JSON line: the host clock (`t_ns`, the same perf_counter_ns
clock as the page records, so samples align with pages and stages), SM and memory clocks (MHz), power
(mW), temperature (°C), GPU and memory utilization (%), memory used (bytes). Without a GPU, without
nvidia-ml-py, or when NVML does not start, `start` returns a sentence saying why and nothing is sampled.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


class TelemetrySampler:
    def __init__(self, path: Path, device_index: int = 0, period_s: float = 0.05) -> None:
        self.path, self.device_index, self.period_s = path, device_index, period_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: Any = None
        self.samples = 0

    def start(self) -> str | None:
        """Begin sampling; None when it runs, else why it cannot."""
        try:
            import pynvml
        except ImportError:
            return "absent: nvidia-ml-py is not installed"
        try:
            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.device_index)
        except pynvml.NVMLError as exc:
            return f"absent: NVML did not start ({exc})"
        self._nvml = pynvml
        self._thread = threading.Thread(target=self._run, args=(handle,), name="perfctl-nvml", daemon=True)
        self._thread.start()
        return None

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._nvml.nvmlShutdown()

    def _run(self, handle: Any) -> None:
        nvml = self._nvml
        with self.path.open("w") as out:
            while not self._stop.is_set():
                try:
                    util = nvml.nvmlDeviceGetUtilizationRates(handle)
                    sample = {
                        "t_ns": time.perf_counter_ns(),
                        "sm_mhz": nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
                        "mem_mhz": nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
                        "power_mw": nvml.nvmlDeviceGetPowerUsage(handle),
                        "temp_c": nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
                        "gpu_util": util.gpu,
                        "mem_util": util.memory,
                        "mem_used": int(nvml.nvmlDeviceGetMemoryInfo(handle).used),
                    }
                except nvml.NVMLError as exc:  # a counter this GPU lacks: say so once, stop sampling
                    out.write(json.dumps({"t_ns": time.perf_counter_ns(), "error": str(exc)}) + "\n")
                    return
                out.write(json.dumps(sample) + "\n")
                self.samples += 1
                self._stop.wait(self.period_s)
