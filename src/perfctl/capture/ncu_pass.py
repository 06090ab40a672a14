"""The Nsight Compute pass: after the nsys pass, the driver once more under `ncu`, profiling only the
kernels that hold each stage's time, into the run folder's ncu/.

The nsys pass's export chooses the kernels (analysis.kernel_selection) and says how often each launch
configuration of them ran per stage (nsys_export.kernel_configs), which gives the estimate printed
before the replay starts. The driver runs the first profiled page once: ncu samples each launch
configuration of a chosen kernel `instances` times, and every later page runs the same
configurations again (other input shapes on later pages show up as lower coverage in the analysis).
Written into ncu/: run.ncu-rep, ncu.log (ncu's own messages), selection.json and command.json
(the exact command, the settings, the clock control and the estimate).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from perfctl import progress
from perfctl.analysis.analyze import analyze_export
from perfctl.analysis.kernel_selection import Selection, select_kernels, selected_names
from perfctl.capture.ncu import (
    PERMISSION_HINT,
    Ncu,
    NcuSettings,
    ReplayEstimate,
    estimate_replay,
    profiled_so_far,
)
from perfctl.errors import CaptureFailed
from perfctl.files import write_json_atomic
from perfctl.nsys_export.kernel_configs import kernel_configs_by_stage
from perfctl.run_folder import NCU_PASS, RunFolder

PROGRESS_EVERY_S = 5.0  # how often the pass says how many kernel instances ncu has profiled


def choose_kernels(export: Path, settings: NcuSettings) -> Selection:
    """The nsys pass's choice of kernels for ncu, or CaptureFailed when no stage ran any kernel."""
    analysis = analyze_export(export, top_n=max(settings.max_kernels, 10))
    selection = select_kernels(analysis, settings.max_kernels, settings.coverage)
    if not selection["stages"]:
        raise CaptureFailed(
            f"the nsys pass ({export.name}) recorded no kernels inside perfctl's stages: nothing for "
            "Nsight Compute to profile (a CPU run, or CUDA not traced)"
        )
    return selection


def ncu_failure(log: Path) -> str | None:
    """ncu's own error from its log, with the fix for the counter-permission error."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [line for line in lines if line.startswith("==ERROR==")]
    if not errors:
        return None
    if any("ERR_NVGPUCTRPERM" in line for line in errors):
        return PERMISSION_HINT
    return errors[0].removeprefix("==ERROR==").strip()


class ProgressWatcher:
    """Says every PROGRESS_EVERY_S how many kernel instances ncu's log shows profiled."""

    def __init__(self, log: Path, expected: int) -> None:
        self._log, self._expected = log, expected
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ProgressWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        said = -1
        while not self._stop.wait(PROGRESS_EVERY_S):
            done = profiled_so_far(self._log)
            if done != said:
                progress.step(f"ncu: {done} of about {self._expected} kernel instances profiled")
                said = done


def prepare_ncu_pass(
    run_dir: Path, ncu: Ncu, settings: NcuSettings
) -> tuple[Callable[[list[str]], list[str]], dict[str, Any], ReplayEstimate]:
    """Choose the kernels, write selection.json, print the estimate; return what turns the driver's
    command into the ncu command (writing command.json as it does), the record the manifest's `ncu`
    gets, and the estimate."""
    folder = RunFolder(run_dir).ncu
    folder.path.mkdir(exist_ok=True)
    export = RunFolder(run_dir).export
    progress.step(f"Nsight Compute pass: choosing kernels from {export.name}")
    selection = choose_kernels(export, settings)
    configs = kernel_configs_by_stage(export, selected_names(selection))
    estimate = estimate_replay(selection, configs, settings)
    chosen = ", ".join(
        f"{stage} {len(s['kernels'])} ({s['coverage']:.0%} of its kernel time)"
        for stage, s in selection["stages"].items()
    )
    progress.step(
        f"Nsight Compute pass: kernels chosen per stage: {chosen}; about {estimate.instances} kernel "
        f"instances to replay, about {estimate.seconds:.0f} s of replay ({estimate.basis})"
    )
    write_json_atomic(folder.ncu_selection, selection)
    record: dict[str, Any] = {
        "path": str(ncu.path),
        "version": ncu.version,
        "settings": asdict(settings),
        "clock_control": settings.clock_control,
        "estimate": asdict(estimate),
    }

    def wrap(driver: list[str]) -> list[str]:
        command = ncu.profile_command(settings, selection, folder.ncu_report_base, folder.ncu_log, driver)
        write_json_atomic(folder.ncu_command, {**record, "command": command})
        return command

    return wrap, record, estimate


def watch_ncu(run_dir: Path, expected: int) -> ProgressWatcher:
    return ProgressWatcher(RunFolder(run_dir).ncu.ncu_log, expected)


def conclude_ncu_pass(
    run_dir: Path, manifest: dict[str, Any], record: dict[str, Any], started: float
) -> tuple[str, str | None]:
    """ok, or failed with ncu's reason, from what the pass left in ncu/; the manifest's `ncu` (the
    driver pass's record) gets `record` and what the pass produced."""
    folder = RunFolder(run_dir).ncu
    entry = manifest.setdefault(NCU_PASS, {})
    entry.update(record)
    entry["report"] = str(folder.ncu_report.relative_to(run_dir)) if folder.ncu_report.is_file() else None
    entry["kernels_profiled"] = profiled_so_far(folder.ncu_log)
    entry["seconds"] = round(time.monotonic() - started, 1)
    problem = ncu_failure(folder.ncu_log)
    if entry.get("status") != "ok":
        return "failed", str(entry.get("reason")) + (f"; ncu: {problem}" if problem else "")
    if entry["report"] is None:
        return "failed", f"the Nsight Compute pass wrote no report: {problem or 'see ncu/ncu.log'}"
    return "ok", None
