"""Conventions every command keeps: --help with examples and the exit codes; progress lines on stderr
for long steps when stderr is a terminal, none with --quiet or in a pipe.

The capture and doctor tests run the real nsys, under perfctl's own machine-wide nsys lock: where
another nsys session runs meanwhile they wait for it, saying so in progress lines of their own
("waiting for ..."), which the step lists here leave out.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import run_perfctl
from perfctl.cli import main

PROGRESS_LINE = re.compile(r"^perfctl \[\s*\d+\.\d+s\] (.+)$")


@pytest.mark.parametrize("command", [None, *sorted(main.commands)])
def test_every_help_shows_examples_and_exit_codes(command: str | None) -> None:
    args = ["--help"] if command is None else [command, "--help"]
    result = CliRunner().invoke(main, args, terminal_width=120)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Examples: perfctl " in text, result.output
    assert "Exit codes: 0" in text and "2 bad input" in text, result.output
    if command in ("capture", "analyze", "flops", "doctor"):
        assert "1 a check, capture or analysis failed" in text or "1 a check failed" in text


def test_top_level_help_lists_doctor_and_open() -> None:
    result = CliRunner().invoke(main, ["--help"], terminal_width=120)
    assert {"doctor", "open", "capture", "analyze", "flops"} <= set(main.commands)
    assert "doctor" in result.output and "open" in result.output


def _run_with_tty_stderr(*args: str) -> tuple[int, str, list[str]]:
    """The real command with stderr on a pseudo-terminal (as in an interactive shell), stdout piped.
    Returns (exit code, stdout, progress labels)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "perfctl", *args], stdout=subprocess.PIPE, stderr=follower, text=True
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:  # read until the child closes the terminal (EIO on Linux)
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    stdout = proc.stdout.read() if proc.stdout else ""
    code = proc.wait(timeout=900)
    lines = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n").splitlines()
    labels = [m.group(1) for line in lines if (m := PROGRESS_LINE.match(line))]
    # a wait for the machine's nsys lock is a step only when another session runs: not counted here
    return code, stdout, [label for label in labels if not label.startswith("waiting for ")]


def test_analyze_progress_on_a_terminal_and_quiet(tiny_gpu_export: Path, tmp_path: Path) -> None:
    args = ("analyze", str(tiny_gpu_export), "--out-dir", str(tmp_path))
    code, _, labels = _run_with_tty_stderr(*args)
    assert code == 0
    assert [label.split()[0] for label in labels] == ["reading", "attributing", "writing", "done"], labels
    assert str(tiny_gpu_export) in labels[0] and str(tmp_path / "analysis.json") in labels[2]
    code, _, labels = _run_with_tty_stderr(*args, "--quiet")
    assert code == 0 and labels == []
    piped = run_perfctl(*args)  # stderr a pipe, as in CI: no progress either
    assert piped.returncode == 0 and "perfctl [" not in piped.stderr


@pytest.mark.nsys
@pytest.mark.slow
def test_capture_progress_names_every_pass(tmp_path: Path, nsys_bin: str) -> None:
    code, stdout, labels = _run_with_tty_stderr(
        "capture", "--tool", "all", "--num-pages", "1", "--max-new-tokens", "2", "--warmup", "0",
        "--profiles", str(tmp_path), "--run-id", "progress", "--nsys", nsys_bin,
    )  # fmt: skip
    assert code == 0, stdout
    steps = [label.split(":")[0] for label in labels]
    assert steps == ["nsys pass", "export", "the clean timing pass", "the torch.profiler pass", "done"], (
        labels
    )
    assert str(tmp_path / "progress" / "timing" / "driver.log") in labels[2]


@pytest.mark.nsys
@pytest.mark.slow
def test_capture_quiet(tmp_path: Path, nsys_bin: str) -> None:
    code, stdout, labels = _run_with_tty_stderr(
        "capture", "--num-pages", "1", "--max-new-tokens", "2", "--warmup", "0", "--quiet",
        "--profiles", str(tmp_path), "--run-id", "quiet", "--nsys", nsys_bin,
    )  # fmt: skip
    assert code == 0 and "status: ok" in stdout, stdout
    assert labels == []


@pytest.mark.nsys
def test_doctor_progress_and_quiet(nsys_bin: str) -> None:
    code, stdout, labels = _run_with_tty_stderr("doctor", "--nsys", nsys_bin, "--format", "json")
    assert code == 0 and json.loads(stdout)["ok"] is True
    assert [label.split(":")[0] for label in labels] == ["self-test"], labels
    code, stdout, labels = _run_with_tty_stderr("doctor", "--nsys", nsys_bin, "--quiet")
    assert code == 0 and labels == []
    assert any(line.split()[:2] == ["ok", "selftest"] for line in stdout.splitlines()), stdout
