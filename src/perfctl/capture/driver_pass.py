"""The passes that run perfctl's driver once more after the nsys pass, each into its own folder of the
run: the clean timing pass, the torch.profiler pass and the Nsight Compute pass (capture.ncu_pass
chooses its kernels; here it runs). capture.run runs the nsys pass and these after it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfctl import progress
from perfctl.capture.driver_python import driver_command
from perfctl.capture.ncu import Ncu, NcuSettings
from perfctl.capture.ncu_pass import conclude_ncu_pass, prepare_ncu_pass, watch_ncu
from perfctl.capture.processes import (
    Interrupted,
    deferred_interrupts,
    describe_signal,
    exit_description,
    new_token,
    stop_child,
    stop_processes,
)
from perfctl.capture.processes import start as start_child
from perfctl.errors import CaptureFailed
from perfctl.files import utc_now
from perfctl.records import read_page_records
from perfctl.run_folder import (
    DRIVER_INFO_FILE,
    DRIVER_LOG_FILE,
    NCU_PASS,
    PAGES_FILE,
    WORKLOAD_FILE,
    RunFolder,
)
from perfctl.run_manifest import read_driver_info
from perfctl.workloads.workload import DriverOutputs, Workload, runs_unit

DRIVER_STOP_S = 30  # how long a pass's driver may take to exit after a stop signal


@dataclass
class CaptureResult:
    run_dir: Path
    status: str
    reason: str | None
    manifest: dict[str, Any]


@dataclass(frozen=True)
class DriverPass:
    """A pass that runs the driver again without nsys, in its own sub-folder of the run."""

    label: str  # what errors and progress call it
    sync_stage_edges: bool = False  # the GPU waited for at every stage edge: true stage clocks
    telemetry: bool = False  # NVML sampled into telemetry.jsonl
    torch_profiler: bool = False  # under torch.profiler: operators and a trace into the folder


DRIVER_PASSES: dict[str, DriverPass] = {
    "timing": DriverPass("the clean timing pass", sync_stage_edges=True, telemetry=True),
    "torch": DriverPass("the torch.profiler pass", torch_profiler=True),
    "ncu": DriverPass("the Nsight Compute pass"),
}


def run_ncu_pass(
    run_dir: Path, workload: Workload, manifest: dict[str, Any], ncu: Ncu, settings: NcuSettings
) -> CaptureResult:
    """The driver under ncu on the first profiled page, once (capture.ncu_pass says why and what)."""
    started = time.monotonic()
    try:
        wrap, record, estimate = prepare_ncu_pass(run_dir, ncu, settings)
    except CaptureFailed as exc:
        manifest[NCU_PASS] = {"status": "failed", "reason": str(exc)}
        manifest["status"], manifest["reason"] = "failed", str(exc)
        RunFolder(run_dir).write_manifest(manifest)
        return CaptureResult(run_dir, "failed", str(exc), manifest)
    with watch_ncu(run_dir, estimate.instances):
        result = run_driver_pass(run_dir, workload.profiled(1), manifest, NCU_PASS, wrap_command=wrap)
    status, reason = conclude_ncu_pass(run_dir, result.manifest, record, started)
    if status != "ok":
        result.manifest["status"], result.manifest["reason"] = status, reason
    RunFolder(run_dir).write_manifest(result.manifest)
    return CaptureResult(run_dir, result.manifest["status"], result.manifest.get("reason"), result.manifest)


def run_driver_pass(
    run_dir: Path,
    workload: Workload,
    manifest: dict[str, Any],
    name: str,
    wrap_command: Callable[[list[str]], list[str]] | None = None,
) -> CaptureResult:
    """The same workload again without nsys, into run_dir/<name>/: `timing` (no profiler at all, GPU
    synchronized at every stage edge, NVML sampled: the stage times MFU divides by; nsys slows
    launch-bound decode markedly) or `torch` (under torch.profiler: operators and a Chrome trace)."""
    driver_pass = DRIVER_PASSES[name]
    label, expected_pages = driver_pass.label, workload.page_runs
    unit = runs_unit(workload.batch_size)
    progress.step(f"{label}: {expected_pages} {unit} (log: {run_dir / name / DRIVER_LOG_FILE})")
    folder = run_dir / name
    folder.mkdir(exist_ok=True)  # (the ncu pass writes its selection there first)
    outputs = DriverOutputs.in_folder(
        folder, telemetry=driver_pass.telemetry, torch_profiler=driver_pass.torch_profiler
    )
    workload.for_pass(outputs, sync_stage_edges=driver_pass.sync_stage_edges).save(folder / WORKLOAD_FILE)
    cmd, env = driver_command(run_dir, manifest, folder / WORKLOAD_FILE)
    if wrap_command is not None:  # the driver under a profiler (ncu)
        cmd = wrap_command(cmd)
    token = new_token()
    interrupted_by = None
    proc = start_child(cmd, token, signal.SIGTERM, folder, drop_env=("PERFCTL_NSYS_VERSION",), set_env=env)
    try:
        exit_code = proc.wait()
    except (KeyboardInterrupt, Interrupted) as exc:
        interrupted_by = signal_of(exc)
        exit_code = stop_child(proc, signal.SIGINT, DRIVER_STOP_S)
    with deferred_interrupts():  # the outcome is recorded whole; a signal meanwhile counts after
        stop_processes(token)
        done = len(read_page_records(folder / PAGES_FILE))
        status, reason = "ok", None
        if interrupted_by is not None:
            status = "interrupted"
            stopper = describe_signal(interrupted_by)
            reason = f"stopped by {stopper} during {label}, after {done} of {expected_pages} {unit}"
        elif exit_code != 0 or done < expected_pages:
            status = "failed"
            reason = (
                f"{label} finished {done} of {expected_pages} {unit} (driver {exit_description(exit_code)}); "
                f"{name}/driver.log ends: {last_line(folder / DRIVER_LOG_FILE)}"
            )
        info = read_driver_info(folder / DRIVER_INFO_FILE)
        if "driver" not in manifest and info.data is not None:  # --tool torch: no nsys pass said what it saw
            manifest["driver"] = info.data
        manifest.setdefault("pages_completed", done)  # the nsys pass's own count, when there is one
        manifest.setdefault("pages_expected", expected_pages)
        manifest[name] = {
            "command": cmd,
            "exit_code": exit_code,
            **({"sync_stage_edges": True} if driver_pass.sync_stage_edges else {}),
            "pages_completed": done,
            "pages_expected": expected_pages,
            "status": status,
            "reason": reason,
        }
        if status != "ok":
            manifest["status"], manifest["reason"] = status, reason
        manifest["finished_at"] = utc_now()
        RunFolder(run_dir).write_manifest(manifest)
        return CaptureResult(run_dir, manifest["status"], manifest.get("reason"), manifest)


def signal_of(exc: BaseException) -> int:
    return exc.signum if isinstance(exc, Interrupted) else signal.SIGINT


def last_line(path: Path) -> str:
    try:
        return last_text_line(path.read_text(errors="replace"))
    except OSError:
        return "(no driver.log)"


def last_text_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(empty)"
