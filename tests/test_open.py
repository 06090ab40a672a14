"""`perfctl open RUN`: the report goes to nsys-ui when there is one (and a display), else its path is
printed. The GUI stand-in is a real executable on PATH that records the arguments it was started
with; the report is a real one, made by nsys (under perfctl's machine-wide nsys lock).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_perfctl
from faults_support import own_nsys_session
from perfctl.commands.open import find_nsys_ui

RECORDER = """#!/bin/sh
# records how it was started, as nsys-ui would be
printf '%s\\n' "$@" > "$0.argv"
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> Path:
    """A run folder holding a real run.nsys-rep (nsys over a one-line Python program)."""
    folder = tmp_path_factory.mktemp("open") / "run-1"
    folder.mkdir()
    with own_nsys_session("test_open's report") as env:
        subprocess.run(
            [nsys_bin, "profile", "--trace=osrt", "--sample=none", "--cpuctxsw=none",
             "-o", str(folder / "run"), sys.executable, "-c", "pass"],
            check=True, capture_output=True, env=env, timeout=300,
        )  # fmt: skip
    assert (folder / "run.nsys-rep").is_file()
    return folder


def _recorder(folder: Path, name: str = "nsys-ui") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text(RECORDER)
    exe.chmod(0o755)
    return exe


def _env(path: Path, display: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NSYS", "DISPLAY", "WAYLAND_DISPLAY")}
    env["PATH"] = str(path)
    if display:
        env["DISPLAY"] = display
    return env


def _argv_recorded(exe: Path) -> list[str]:
    record = Path(f"{exe}.argv")
    deadline = time.monotonic() + 60  # the detached process writes it shortly after the command ends
    while not record.is_file() or not record.read_text().endswith("\n"):
        assert time.monotonic() < deadline, "nsys-ui stand-in never ran"
        time.sleep(0.1)
    return record.read_text().splitlines()


def test_without_nsys_ui_the_path_is_printed(run_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    report = run_dir / "run.nsys-rep"
    for target in (run_dir, report):
        proc = run_perfctl("open", str(target), env=_env(empty, ":0"))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(report.resolve())
        assert "nsys-ui was not found" in proc.stderr


def test_nsys_ui_on_path_is_started_with_the_report(run_dir: Path, tmp_path: Path) -> None:
    ui = _recorder(tmp_path / "bin")
    assert find_nsys_ui(search_path=str(ui.parent)) == ui
    proc = run_perfctl("open", str(run_dir), env=_env(ui.parent, ":0"))
    assert proc.returncode == 0, proc.stderr
    report = str((run_dir / "run.nsys-rep").resolve())
    assert proc.stdout.strip() == report and f"opened in {ui}" in proc.stderr
    assert _argv_recorded(ui) == [report]


def test_nsys_ui_beside_the_given_nsys(run_dir: Path, tmp_path: Path) -> None:
    """--nsys names an install whose bin/ holds nsys-ui too; PATH has neither."""
    install = tmp_path / "nsight" / "bin"
    ui = _recorder(install)
    _recorder(install, "nsys")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_nsys_ui(str(install / "nsys"), search_path=str(empty)) == ui
    proc = run_perfctl(
        "open", str(run_dir / "run.nsys-rep"), "--nsys", str(install / "nsys"), env=_env(empty, ":0")
    )
    assert proc.returncode == 0, proc.stderr
    assert _argv_recorded(ui) == [str((run_dir / "run.nsys-rep").resolve())]


def test_installed_nsys_ui_is_found_beside_installed_nsys(nsys_bin: str, tmp_path: Path) -> None:
    """The real install's layout (Debian: /usr/bin/nsys-ui; NVIDIA: bin/ or host-linux-x64/)."""
    found = find_nsys_ui(nsys_bin, search_path=str(tmp_path))
    if found is None:
        pytest.skip(f"this nsys install ({nsys_bin}) has no nsys-ui")
    assert found.name == "nsys-ui" and os.access(found, os.X_OK)


def test_without_a_display_nothing_is_started(run_dir: Path, tmp_path: Path) -> None:
    ui = _recorder(tmp_path / "bin")
    proc = run_perfctl("open", str(run_dir), env=_env(ui.parent, None))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str((run_dir / "run.nsys-rep").resolve())
    assert "no display" in proc.stderr and str(ui) in proc.stderr
    assert not Path(f"{ui}.argv").exists()


def test_bad_run_is_exit_2(run_dir: Path, tmp_path: Path) -> None:
    export_only = tmp_path / "export-only"
    export_only.mkdir()
    (export_only / "run.sqlite").write_bytes(b"")
    cases = [
        (tmp_path / "missing", "no such file"),
        (export_only, "no .nsys-rep"),
        (export_only / "run.sqlite", "not an Nsight Systems report"),
    ]
    for target, needle in cases:
        proc = run_perfctl("open", str(target))
        assert proc.returncode == 2, (target, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("perfctl: error:") and needle in proc.stderr
        assert "Traceback" not in proc.stderr and not proc.stdout
