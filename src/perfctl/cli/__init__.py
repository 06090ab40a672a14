"""The `perfctl` command line: a thin Click layer over perfctl's library functions.

This module holds the `main` group (`perfctl.cli:main`, the console script and `python -m perfctl`),
Click's own errors in perfctl's one-line form (`OneLineErrors`), and the registration of the
commands. The commands live one group per module:

    errors.py            the one-line error and exit (fail, say_error), the exit codes --help shows
    options.py           the options several commands share (--profiles, --format, --quiet)
    capture_options.py   capture's options as one reusable stack (capture_options, capture_options_from)
    capture.py           capture
    analyze.py           analyze
    compare.py           compare
    runs.py              runs, shipped, open: the run folders of a profiles folder
    tools.py             doctor, calibrate, flops: the machine and a model, no run folder needed

Every command imports its heavy modules (torch, the analysis) inside its body, so that `perfctl --help`
and a command's own --help stay fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from perfctl import __version__
from perfctl.capture.processes import Interrupted
from perfctl.cli import analyze, capture, compare, runs, sweep, tools
from perfctl.cli.errors import EXIT_CODES, say_error


class OneLineErrors(click.Group):
    """The `perfctl` group, with Click's own errors (a bad option value, a missing argument), a stop
    signal, a file the system refused and a dependency not installed in perfctl's form: one line on
    stderr, no traceback."""

    def main(  # type: ignore[override]  # one signature for Click's two overloads
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # `perfctl` alone: the help, as Click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            say_error(f"{exc.format_message()}{hint}", exc.exit_code)
        except (click.Abort, Interrupted) as exc:  # Ctrl-C or SIGTERM outside a capture's handling
            say_error(f"stopped by {exc}" if isinstance(exc, Interrupted) else "interrupted (Ctrl-C)", 1)
        except ModuleNotFoundError as exc:  # a dependency missing from this Python (a GPU host's own env)
            say_error(
                f"the Python package providing {exc.name!r} is not installed for {sys.executable}: install "
                "perfctl with its dependencies (pip install -e ., or scripts/setup.sh)",
                1,
            )
        except OSError as exc:  # the system refused a file: which one, and why
            say_error(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), 1)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.version_option(__version__, prog_name="perfctl")
def main() -> None:
    """Profile LLM / VLM inference under Nsight Systems and analyze where the time goes.

    \b
    Examples:
      perfctl doctor                         # can this machine make a capture? each problem with its fix
      perfctl capture --tool nsys            # built-in DeepSeek-OCR-2-architecture model, sample pages
      perfctl analyze profiles/<run-id>      # -> analysis.json + report.html in the run folder
    """


# The command modules are imported above, not their commands: a command named like its module
# (capture, analyze, ...) would hide the module at perfctl.cli.<name>. Click lists the commands in
# --help by name, whatever the order they are added in.
for _command in (
    capture.capture,
    sweep.sweep,
    analyze.analyze,
    compare.compare,
    runs.runs,
    runs.shipped,
    runs.open_command,
    tools.doctor,
    tools.calibrate,
    tools.flops,
):
    main.add_command(_command)
