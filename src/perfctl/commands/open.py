"""`perfctl open RUN`: show a run's Nsight Systems report in the GUI (`nsys-ui`), or say where it is.

nsys-ui is looked for on PATH, then beside the nsys perfctl would use (NVIDIA's installers put it in
the same `bin/` or in `host-linux-x64/`; Debian puts `/usr/bin/nsys-ui` beside `/usr/bin/nsys`).
It is started detached, from an argument list (no shell), so it outlives the command. Without it,
or without a display to draw on, the report's path is all there is to give.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from perfctl.capture.nsys import nsys_candidate
from perfctl.errors import BadInput
from perfctl.run_folder import REPORT_SUFFIX, RunFolder

UI_NAME = "nsys-ui"


@dataclass(frozen=True)
class OpenOutcome:
    report: Path
    ui: Path | None  # the nsys-ui that was started, or None
    pid: int | None
    reason: str | None  # why the GUI was not started


def find_report(path: Path) -> Path:
    """The .nsys-rep behind RUN: the file itself, or a run folder's run.nsys-rep (or its only one)."""
    found = RunFolder.find(path)
    if found.kind == "run_folder":
        report = found.folder.report
        if report.is_file():
            return report.resolve()
        reports = sorted(path.glob(f"*{REPORT_SUFFIX}"))
        if len(reports) == 1:
            return reports[0].resolve()
        what = "several" if reports else "no"
        raise BadInput(f"{path} holds {what} {REPORT_SUFFIX} reports (is it a perfctl run folder?)")
    if found.kind != "report":
        raise BadInput(f"{path} is not an Nsight Systems report ({REPORT_SUFFIX}) or a run folder")
    return path.resolve()


def find_nsys_ui(nsys: str | None = None, search_path: str | None = None) -> Path | None:
    """nsys-ui on PATH (`search_path`, default $PATH), else beside nsys (--nsys, $NSYS, PATH), else None."""
    on_path = shutil.which(UI_NAME, path=search_path)
    if on_path:
        return Path(on_path)
    candidate = nsys_candidate(nsys)
    if not candidate:
        return None
    given = Path(candidate)
    real = given.resolve()
    # beside the nsys named, beside its real file, and in the install's bin/ and host side
    for folder in (
        given.parent,
        real.parent,
        real.parent.parent / "bin",
        real.parent.parent / "host-linux-x64",
    ):
        ui = folder / UI_NAME
        if ui.is_file() and os.access(ui, os.X_OK):
            return ui
    return None


def display_missing() -> str | None:
    """Why a GUI cannot be shown here (Linux without $DISPLAY or $WAYLAND_DISPLAY), or None."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display ($DISPLAY and $WAYLAND_DISPLAY are unset)"
    return None


def launch_detached(ui: Path, report: Path) -> int:
    """Start `ui report` in its own session, detached from this terminal; its pid."""
    proc = subprocess.Popen(
        [str(ui), str(report)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    return proc.pid


def open_report(path: Path, nsys: str | None = None) -> OpenOutcome:
    """Open RUN's report in nsys-ui when it and a display are there; otherwise say why not."""
    report = find_report(path)
    ui = find_nsys_ui(nsys)
    if ui is None:
        return OpenOutcome(report, None, None, f"{UI_NAME} was not found (on PATH or beside nsys)")
    no_display = display_missing()
    if no_display:
        return OpenOutcome(report, None, None, f"{UI_NAME} is at {ui}, but there is {no_display}")
    return OpenOutcome(report, ui, launch_detached(ui, report), None)
