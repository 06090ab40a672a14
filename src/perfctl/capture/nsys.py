"""The Nsight Systems CLI: where it is, which version, and the commands perfctl runs with it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from perfctl.errors import BadInput, CaptureFailed

INSTALL_HINT = (
    "install it with scripts/install-nsys.sh (Debian/Ubuntu), or from "
    "https://developer.nvidia.com/nsight-systems, then put nsys on PATH or set NSYS=/path/to/nsys"
)
# --sample=none --cpuctxsw=none: CPU sampling once made a 2 GB capture of a 5 s program.
DEFAULT_TRACE = "cuda,nvtx,osrt"


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
        """`nsys export` a .nsys-rep to SQLite (for captures that did not export, or a user's report)."""
        cmd = [
            str(self.path),
            "export",
            "--type=sqlite",
            "--force-overwrite=true",
            "-o",
            str(sqlite),
            str(report),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        if proc.returncode != 0 or not sqlite.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise CaptureFailed(f"nsys export of {report} failed (exit {proc.returncode}): {tail[0]}")


def nsys_candidate(explicit: str | None = None) -> str | None:
    """Where to look for nsys: --nsys, then $NSYS, then PATH (not checked; None when none is named)."""
    return explicit or os.environ.get("NSYS") or shutil.which("nsys")


def find_nsys(explicit: str | None = None) -> Nsys:
    """The nsys to use: --nsys, then $NSYS, then PATH. Raises BadInput with the install hint."""
    candidate = nsys_candidate(explicit)
    if not candidate:
        raise BadInput(f"nsys (Nsight Systems CLI) not found: {INSTALL_HINT}")
    path = Path(candidate)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BadInput(f"nsys at {path} is not an executable file: {INSTALL_HINT}")
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise BadInput(f"cannot run {path}: {exc}") from None
    match = re.search(r"(\d{4}\.\d+(?:\.\d+)*)", out.stdout + out.stderr)
    if not match:
        raise BadInput(f"{path} does not look like nsys (its --version said: {out.stdout.strip()[:80]!r})")
    return Nsys(path=path, version=match.group(1))


def importer_path(nsys: Nsys) -> Path:
    """Where nsys looks for the importer that turns a capture into a report: beside its real path."""
    return nsys.path.resolve().parent.parent / "host-linux-x64" / "QdstrmImporter"


def importer_present(nsys: Nsys) -> bool:
    """Whether this nsys can turn a capture into a report (Debian's layout bug leaves a .qdstrm only)."""
    return importer_path(nsys).exists()
