"""The Nsight Systems CLI: where it is, which version, and the commands perfctl runs with it."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from perfctl.capture.tool_cli import tool_version
from perfctl.errors import BadInput, CaptureFailed
from perfctl.files import disk_note
from perfctl.nsys_export.schema import readonly_uri
from perfctl.run_folder import STREAM_SUFFIX

INSTALL_HINT = (
    "install it with scripts/install-nsys.sh (Debian/Ubuntu), or from "
    "https://developer.nvidia.com/nsight-systems, then put nsys on PATH or set NSYS=/path/to/nsys"
)
# --sample=none --cpuctxsw=none: CPU sampling once made a 2 GB capture of a 5 s program.
DEFAULT_TRACE = "cuda,nvtx,osrt"


class NsysCouldNotRead(CaptureFailed):
    """nsys failed to export a report or import a stream. For perfctl's own capture that is a failed
    capture (exit 1); a command that was handed the file (`perfctl analyze`) reports it as bad input
    (exit 2) when `blames_input`: nsys ran to its end and refused the file, with room on the disk.
    A full disk, a timeout or a damaged output are no fault of the input."""

    def __init__(self, message: str, blames_input: bool) -> None:
        super().__init__(message)
        self.blames_input = blames_input


@dataclass(frozen=True)
class Nsys:
    path: Path
    version: str  # e.g. "2022.4.2.1"

    def profile_command(self, output_base: Path, trace: str, program: list[str]) -> list[str]:
        return [
            str(self.path),
            "profile",
            f"--trace={trace}",
            "--sample=none",
            "--cpuctxsw=none",
            # CUDA graph replays as their kernels: traced as whole graphs, nsys 2022.4 keeps nothing of them
            "--cuda-graph-trace=node",
            "--export=sqlite",
            "--force-overwrite=true",
            "--env-var",
            f"PERFCTL_NSYS_VERSION={self.version}",
            "-o",
            str(output_base),
            *program,
        ]

    def export_sqlite(self, report: Path, sqlite: Path, timeout_s: float = 3600) -> None:
        """`nsys export` a .nsys-rep to SQLite (for captures that did not export, or a user's report).

        The export goes to a temporary name and is renamed only once it reads as an SQLite database:
        nsys exits 0 even when the disk fills up, leaving an empty file behind."""
        partial = sqlite.with_name(f".{sqlite.name}.partial")
        cmd = [str(self.path), "export", "--type=sqlite", "--force-overwrite=true", "-o", str(partial)]
        cmd.append(str(report))
        try:
            proc = _run_nsys(cmd, timeout_s, f"exporting {report} to SQLite")
            problem = sqlite_problem(partial)
            if proc.returncode != 0 or problem:
                said = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip() and "%" not in ln]
                detail = said[-1].strip() if said else problem or "no output"
                full = disk_note(sqlite.parent)
                raise NsysCouldNotRead(
                    f"nsys could not export {report} to SQLite: {detail} (nsys exit {proc.returncode}){full}",
                    blames_input=proc.returncode != 0 and not full,
                )
            partial.replace(sqlite)
        finally:
            partial.unlink(missing_ok=True)

    def importer(self) -> Path:
        """Where this nsys keeps QdstrmImporter, which turns its raw stream (.qdstrm) into a report."""
        return self.path.resolve().parent.parent / "host-linux-x64" / "QdstrmImporter"

    def import_qdstrm(self, qdstrm: Path, report: Path, timeout_s: float = 3600) -> None:
        """Turn a .qdstrm that nsys left behind (its importer was missing) into a .nsys-rep."""
        importer = self.importer()
        if not importer.exists():
            raise BadInput(
                f"{qdstrm} needs nsys's importer, which is missing: {importer} does not exist "
                f"(the Debian package's layout bug); {INSTALL_HINT}, or pass --nsys with a complete one"
            )
        partial = report.with_name(f".{report.stem}.partial.nsys-rep")
        cmd = [str(importer), "--input-file", str(qdstrm), "--output-file", str(partial), "--force-overwrite"]
        try:
            proc = _run_nsys(cmd, timeout_s, f"importing {qdstrm}")
            if proc.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
                said = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip() and "%" not in ln]
                full = disk_note(report.parent)
                raise NsysCouldNotRead(
                    f"importing {qdstrm} failed (exit {proc.returncode}): "
                    f"{said[-1].strip() if said else 'no output'}{full}",
                    blames_input=proc.returncode != 0 and not full,
                )
            partial.replace(report)
        finally:
            partial.unlink(missing_ok=True)


def _run_nsys(cmd: list[str], timeout_s: float, doing: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise NsysCouldNotRead(f"{doing} took over {timeout_s:.0f} s: stopped", blames_input=False) from None


def sqlite_problem(path: Path) -> str | None:
    """Why `path` is not a complete SQLite database (missing, empty, unreadable), or None."""
    if not path.is_file():
        return "no file written"
    if path.stat().st_size == 0:
        return "it wrote an empty file"
    try:
        conn = sqlite3.connect(readonly_uri(path), uri=True)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"it wrote a damaged file ({exc})"
    return None


def nsys_log_error(log: Path) -> str | None:
    """nsys's last line that says something went wrong, if any (its progress bars left out)."""
    try:
        lines = log.read_text(errors="replace").replace("\r", "\n").splitlines()
    except OSError:
        return None
    errors = [ln.strip() for ln in lines if re.search(r"(?i)\b(error|failed|no space|cannot)\b", ln)]
    return errors[-1][:300] if errors else None


def stream_left_elsewhere(log: Path, run_dir: Path) -> Path | None:
    """The .qdstrm nsys names as 'Generated' outside the run folder (it could not move it there)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    for line in reversed(text.replace("\r", "\n").splitlines()):
        path = Path(line.strip())
        if path.suffix == STREAM_SUFFIX and path.is_absolute() and path.parent != run_dir and path.is_file():
            return path
    return None


def nsys_candidate(explicit: str | None = None) -> str | None:
    """Where to look for nsys: --nsys, then $NSYS, then PATH (not checked; None when none is named)."""
    return explicit or os.environ.get("NSYS") or shutil.which("nsys")


def find_nsys(explicit: str | None = None) -> Nsys:
    """The nsys to use: --nsys, then $NSYS, then PATH. Raises BadInput with the install hint."""
    path, version = tool_version(
        nsys_candidate(explicit), "nsys", "Nsight Systems CLI", INSTALL_HINT, r"(\d{4}\.\d+(?:\.\d+)*)"
    )
    return Nsys(path=path, version=version)


def importer_present(nsys: Nsys) -> bool:
    """Whether this nsys can turn a capture into a report (Debian's layout bug leaves a .qdstrm only)."""
    return nsys.importer().exists()
