"""`perfctl doctor`'s Nsight Compute checks: is there an ncu, can it read this GPU's performance
counters (the first thing that fails on a shared machine: ERR_NVGPUCTRPERM), and can perfctl read
the reports it writes (NVIDIA's ncu-report package). Only `capture --tool ncu` / `--ncu` needs them,
so a missing ncu is a warning, not a failure."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from perfctl.capture.ncu import INSTALL_HINT, PERMISSION_HINT, find_ncu
from perfctl.commands.doctor import CheckResult
from perfctl.errors import PerfctlError
from perfctl.ncu_rep.reader import NCU_REPORT_HINT

COUNTER_CHECK_TIMEOUT_S = 180  # one tiny kernel under ncu: CUDA start-up and one replay, with room
# the program ncu profiles to see whether counters can be read: one small kernel
_ONE_KERNEL = (
    "import torch; x = torch.ones(1024, device='cuda'); x.add_(1); torch.cuda.synchronize(); print('ok')"
)


def check_ncu(cuda_available: bool, skip_capture: bool) -> CheckResult:
    """ncu found ($NCU, PATH, /usr/local/cuda/bin/ncu) and, on a GPU, whether it reads counters."""
    try:
        ncu = find_ncu()
    except PerfctlError as exc:
        found = str(exc).replace(f": {INSTALL_HINT}", "")
        return CheckResult(
            "ncu", "warn", f"{found} (needed only by capture --tool ncu / --ncu)", INSTALL_HINT
        )
    details: dict[str, Any] = {"path": str(ncu.path), "version": ncu.version}
    found = f"ncu {ncu.version} at {ncu.path}"
    if not cuda_available:
        return CheckResult("ncu", "skip", f"{found}; counters not checked: no CUDA GPU here", None, details)
    if skip_capture:
        return CheckResult("ncu", "skip", f"{found}; counters not checked (--skip-capture)", None, details)
    with tempfile.TemporaryDirectory(prefix="perfctl-doctor-ncu-") as scratch:
        log = Path(scratch) / "counter-check.log"  # (a scratch file: no run folder)
        cmd = [
            str(ncu.path),
            "--metrics=sm__cycles_elapsed.avg",
            f"--log-file={log}",
            f"--export={Path(scratch) / 'check'}",
            sys.executable,
            "-c",
            _ONE_KERNEL,
        ]
        try:
            subprocess.run(cmd, capture_output=True, text=True, timeout=COUNTER_CHECK_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return CheckResult("ncu", "fail", f"{found}; profiling one kernel failed: {exc}", None, details)
        text = log.read_text(errors="replace") if log.is_file() else ""
    details["command"] = cmd
    if "ERR_NVGPUCTRPERM" in text:
        return CheckResult(
            "ncu", "fail", f"{found}; it may not read this GPU's counters", PERMISSION_HINT, details
        )
    if "==PROF== Profiling" not in text:
        errors = [line for line in text.splitlines() if line.startswith("==ERROR==")]
        said = errors[0] if errors else "no kernel profiled"
        return CheckResult("ncu", "fail", f"{found}; profiling one kernel failed: {said}", None, details)
    return CheckResult(
        "ncu", "ok", f"{found}; it read this GPU's counters (one kernel profiled)", None, details
    )


def check_ncu_report() -> CheckResult:
    """NVIDIA's ncu-report package, which `perfctl analyze` reads .ncu-rep files with."""
    if importlib.util.find_spec("ncu_report") is None:
        return CheckResult("ncu-report", "warn", "the ncu_report module is not installed", NCU_REPORT_HINT)
    return CheckResult("ncu-report", "ok", "ncu_report importable: .ncu-rep files can be analyzed")
