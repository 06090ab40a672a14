"""Progress lines for the long steps of a command (capture passes, export, analysis), on stderr.

Library code announces a step with one call, `progress.step("nsys pass: ...")`; nothing is printed
unless the command line turned progress on with `configure` (the CLI does, for capture, analyze and
doctor). Even then it stays quiet with `--quiet` or when stderr is not a terminal (CI logs, pipes),
so scripted runs and tests see only the command's own output. Each line carries the time since the
command started, so the gap between two lines is what the earlier step took.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self) -> None:
        self.enabled = False
        self.stream: TextIO = sys.stderr
        self.started = time.monotonic()

    def configure(self, quiet: bool, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and _is_terminal(self.stream)
        self.started = time.monotonic()

    def step(self, label: str) -> None:
        if self.enabled:
            elapsed = time.monotonic() - self.started
            print(f"perfctl [{elapsed:7.1f}s] {label}", file=self.stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


_PROGRESS = Progress()


def configure(quiet: bool, stream: TextIO | None = None) -> None:
    """Turn progress lines on for this command: on unless `quiet` or the stream is not a terminal."""
    _PROGRESS.configure(quiet, stream)


def step(label: str) -> None:
    """Announce the step that starts now (printed only when progress is on)."""
    _PROGRESS.step(label)


def finish() -> None:
    """The command's last progress line, with its total time."""
    _PROGRESS.step("done")
