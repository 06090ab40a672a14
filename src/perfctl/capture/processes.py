"""The processes a capture starts, and how they are stopped: no orphan outlives `perfctl capture`.

nsys does not keep its processes in one process group: `nsys profile` starts a profiling agent that
detaches into a session of its own, and launches the profiled program (the driver) in yet another
session. A signal to perfctl's process group therefore misses most of them, and a killed nsys leaves
the driver running. So every child gets a token in its environment (inherited by everything nsys
starts), and stopping a run means stopping every process that carries the run's token.

Ctrl-C and SIGTERM become `Interrupted` while a capture runs, so that the capture can stop its
children in order (nsys first, with one SIGINT, so that it writes the report of what ran) and record
the run as interrupted.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO, Any

RUN_TOKEN_VAR = "PERFCTL_RUN_TOKEN"
_PR_SET_PDEATHSIG = 1
# The signals that stop a capture: Ctrl-C, `kill` / a scheduler's SIGTERM, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived while a capture ran (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(describe_signal(signum))


def describe_signal(signum: int) -> str:
    name = signal.Signals(signum).name
    return f"{name} (Ctrl-C)" if signum == signal.SIGINT else name


def exit_description(code: int) -> str:
    """A child's exit status in words: 'exit 1', or 'killed by SIGKILL' (negative, or 128 + N from a
    program that reports its own child's death the shell's way, as nsys does)."""
    signum = -code if code < 0 else code - 128 if 128 < code < 128 + 65 else 0
    try:
        return f"killed by {signal.Signals(signum).name}" if signum else f"exit {code}"
    except ValueError:
        return f"exit {code}"


@contextmanager
def _stop_signals_handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """While inside, `handler` receives SIGINT/SIGTERM/SIGHUP in the main thread (elsewhere Python
    cannot handle signals: there the default behaviour stays); the previous handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """While inside, SIGINT/SIGTERM/SIGHUP raise `Interrupted` in the main thread (elsewhere Python
    cannot handle signals; the default behaviour stays)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    with _stop_signals_handled_by(handler):
        yield


def new_token() -> str:
    return secrets.token_hex(12)


def child_env(
    token: str, drop: tuple[str, ...] = (), set_env: dict[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(set_env or {})
    env[RUN_TOKEN_VAR] = token
    return env


def _die_with_parent(signum: int) -> Callable[[], None]:
    """A preexec function: the child gets `signum` if perfctl dies (even by SIGKILL) before it."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)

    return preexec


def start(
    cmd: list[str],
    token: str,
    parent_death_signal: int,
    cwd: Path,
    stdout: IO[Any] | None = None,
    drop_env: tuple[str, ...] = (),
    set_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a capture's child in a session of its own: a terminal's Ctrl-C reaches perfctl alone,
    which then stops the child itself (nsys must get exactly one SIGINT to finalize its report; a
    second one makes it quit without a report)."""
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=child_env(token, drop_env, set_env),
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
        start_new_session=True,
        preexec_fn=_die_with_parent(parent_death_signal),
    )


def processes_with_token(token: str) -> list[int]:
    """Live processes (not zombies) whose environment carries this run's token."""
    needle = f"{RUN_TOKEN_VAR}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def stop_processes(token: str, grace_s: float = 10.0) -> list[int]:
    """Stop every process of the run: let those that are exiting finish for up to `grace_s`, then
    SIGTERM, then SIGKILL. Returns the pids that had to be signalled."""
    signalled: list[int] = []
    pids = wait_until_gone(token, grace_s)
    for signum, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signum)
                signalled.append(pid)
            except ProcessLookupError:
                pass
        pids = wait_until_gone(token, wait_s)
    return sorted(set(signalled))


def wait_until_gone(
    token: str, seconds: float = float("inf"), tick: Callable[[], None] | None = None
) -> list[int]:
    """Wait up to `seconds` for the run's processes to end by themselves; those still running. `tick`,
    when given, is called at each look (the nsys pass's session watcher)."""
    deadline = time.monotonic() + seconds
    while True:
        pids = processes_with_token(token)
        if not pids or time.monotonic() >= deadline:
            return pids
        if tick is not None:
            tick()
        time.sleep(0.1)


def stop_child(proc: subprocess.Popen[bytes], signum: int, patience_s: float) -> int:
    """Ask a child to stop with one `signum` and wait up to `patience_s` for it (nsys writes its report
    meanwhile); past that, or at a second Ctrl-C / SIGTERM, kill it. Returns its exit status."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signum)
    try:
        return proc.wait(timeout=patience_s)
    except (subprocess.TimeoutExpired, KeyboardInterrupt, Interrupted):
        proc.kill()
        return proc.wait()


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Finish a step that must not be cut in half (recording the run's outcome): a stop signal that
    arrives meanwhile is raised as `Interrupted` once the step is done."""
    arrived: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        arrived.append(signum)

    with _stop_signals_handled_by(handler):
        yield
    if arrived:
        raise Interrupted(arrived[0])
