"""How a command ends on an error: one line `perfctl: error: ...` on stderr and the exit code, and the
exit codes most commands' --help shows.

The commands import these from here rather than from perfctl.cli, which imports the commands: the
two would import each other."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from perfctl.errors import PerfctlError

EXIT_CODES = (
    "Exit codes: 0 ok, 1 a check, capture or analysis failed, 2 bad input (a one-line reason is printed)."
)


def fail(exc: PerfctlError) -> NoReturn:
    # one line, whatever the reason quotes (a damaged file's error may carry its bytes)
    say_error(str(exc), exc.exit_code)


def say_error(message: str, exit_code: int) -> NoReturn:
    click.echo(f"perfctl: error: {' '.join(message.split())}", err=True)
    sys.exit(exit_code)
