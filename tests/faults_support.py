"""What the fault tests share: real `perfctl capture` processes started as a user's shell starts them,
a look at /proc for any process a capture left behind, and the machine-wide nsys lock as tests meet it.

`perfctl capture` (and `doctor`) take perfctl's machine-wide nsys lock themselves
(perfctl.capture.nsys_lock). A test that runs `nsys profile` itself takes it through the product's API
with `own_nsys_session()`; a test must never hold it around a perfctl capture (the capture would wait
for its own parent: perfctl refuses that with exit 2). `HeldNsysLock` holds it from a process of its
own, as another perfctl would; `ForeignNsysSession` is a real nsys session started without it.
`DriverGate` holds a capture's driver before its first page until the test opens it, so that a test
acts on a capture that certainly has work left, whatever the machine's speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from perfctl.capture.nsys_lock import NsysSessionLock
from perfctl.capture.nsys_sessions import HOLDER_VAR, session_processes

MARK_VAR = "PERFCTL_FAULT_TEST_MARK"


@contextmanager
def own_nsys_session(what: str = "a test's own nsys profile") -> Iterator[dict[str, str]]:
    """Hold perfctl's machine-wide nsys lock in this process (waiting for it as perfctl does) around a
    test's own `nsys profile`; yields the environment to start that nsys with (its mark)."""
    with NsysSessionLock(f"pytest: {what}") as session:
        session.take(wait=True, report=lambda line: None)
        yield dict(os.environ) | session.child_env()


_HOLDER = """
import sys
from perfctl.capture.nsys_lock import NsysSessionLock
with NsysSessionLock(sys.argv[1], run_id=sys.argv[2]) as lock:
    lock.take(wait=True, report=lambda line: None)
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


class HeldNsysLock:
    """perfctl's nsys lock held by a process of its own through perfctl's API, as another perfctl
    holds it (not an ancestor of the captures the test starts), until `release()`."""

    def __init__(
        self, run_id: str, what: str = "a test holding the nsys lock", env: dict[str, str] | None = None
    ):
        self.run_id = run_id
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, what, run_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "held", f"the holder did not take the lock: {line!r}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


class ForeignNsysSession:
    """A real `nsys profile ... sleep` started without perfctl's lock (as by hand, or by another tool),
    in a folder of its own (its report and nsys's temporary stream). It runs until `stop()`, which
    kills each of its processes."""

    def __init__(self, nsys: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.mark = uuid.uuid4().hex
        env = {k: v for k, v in os.environ.items() if k != HOLDER_VAR}  # no perfctl mark: foreign
        env |= {MARK_VAR: self.mark, "TMPDIR": str(folder)}
        self.proc = subprocess.Popen(
            [nsys, "profile", "--trace=osrt", "--sample=none", "--cpuctxsw=none", "--force-overwrite=true",
             "-o", str(folder / "foreign"), "sleep", "3600"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=folder, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while self.pid not in {p.pid for p in session_processes()}:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the foreign nsys session did not start (exit {self.proc.poll()})")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        deadline = time.monotonic() + 60
        while (left := marked_processes(self.mark)) and time.monotonic() < deadline:
            for pid in left:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        self.proc.wait(timeout=60)
        assert not marked_processes(self.mark), "the foreign nsys session survived"


GATE_SCRIPT = """#!{python}
# perfctl's own interpreter, holding perfctl's driver (not other runs, such as perfctl's probe of the
# interpreter) until the gate file exists. The driver waits inside its interpreter, so that nsys's
# injection in it has started and connected to nsys's agent, as in any driver already running.
import os, runpy, sys, time

if sys.argv[1:3] != ["-m", "perfctl.driver"]:
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
open({waiting!r}, "a").close()
while not os.path.exists({gate!r}):
    time.sleep(0.05)
os.unlink({waiting!r})  # this driver is through (DriverGate.let_one_through)
sys.argv = [sys.argv[0], *sys.argv[3:]]  # as `python -m perfctl.driver ...` leaves it
runpy.run_module("perfctl.driver", run_name="__main__", alter_sys=True)
"""


class DriverGate:
    """A `--driver-python` that runs perfctl's own interpreter, but holds each driver (not the
    interpreter probe) at its start until `open()`: until then the capture's pass is certainly
    running, with all its pages ahead of it."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.gate = folder / "gate-open"
        self.waiting = folder / "driver-waiting"
        self.python = folder / "gated-python"
        script = GATE_SCRIPT.format(gate=str(self.gate), waiting=str(self.waiting), python=sys.executable)
        self.python.write_text(script)
        self.python.chmod(0o755)

    def wait_for_driver(self, capture: Capture, timeout: float = 600) -> None:
        """Until a driver of `capture` waits at the gate (its interpreter runs: nsys launched it)."""
        deadline = time.monotonic() + timeout
        while not self.waiting.exists():
            if capture.proc.poll() is not None:
                capture.finish()
                pytest.fail(f"the capture ended before its driver started: {capture.stdout} {capture.stderr}")
            if time.monotonic() > deadline:
                pytest.fail(f"no driver at the gate after {timeout} s")
            time.sleep(0.02)

    def open(self) -> None:
        self.gate.touch()

    def let_one_through(self, timeout: float = 600) -> None:
        """Open the gate for the driver waiting at it, then close it again behind that driver: the
        capture's next pass waits at it in turn."""
        self.open()
        deadline = time.monotonic() + timeout
        while self.waiting.exists():
            if time.monotonic() > deadline:
                pytest.fail(f"the driver did not go through the gate in {timeout} s")
            time.sleep(0.02)
        self.gate.unlink()


class Capture:
    """`perfctl capture ARGS` (or another perfctl `command` that captures: sweep) started the way a
    shell starts a job: in a process group (and session) of its own, its environment carrying a mark
    that every process it starts inherits (nsys passes its environment on to its agent, its launcher
    and the driver)."""

    def __init__(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, command: str = "capture"
    ) -> None:
        self.mark = uuid.uuid4().hex
        env = dict(os.environ if env is None else env, **{MARK_VAR: self.mark})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "perfctl", command, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.stdout = self.stderr = ""

    def finish(self, timeout: float = 900) -> int:
        self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    def wait_for_records(self, records: Path, count: int, timeout: float = 600) -> None:
        """Wait until the driver has recorded `count` pages (warm-up pages included)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if records.is_file() and records.read_text().count("\n") >= count:
                return
            if self.proc.poll() is not None:
                self.finish()
                pytest.fail(f"the capture ended before {count} pages: {self.stdout} {self.stderr}")
            time.sleep(0.02)
        pytest.fail(f"no {count} page records in {records} after {timeout} s")

    def processes(self) -> dict[int, str]:
        """Live processes this capture started (its own process excluded), pid -> command line."""
        return {pid: cmd for pid, cmd in marked_processes(self.mark).items() if pid != self.proc.pid}

    def wait_for_process(self, needle: str, timeout: float = 600) -> int:
        """The pid of the capture's process whose command line contains `needle`, once it exists."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [pid for pid, cmd in self.processes().items() if needle in cmd]
            if found:
                return found[0]
            if self.proc.poll() is not None:
                self.finish()
                pytest.fail(f"the capture ended before a process '{needle}' ran: {self.stdout} {self.stderr}")
            time.sleep(0.02)
        pytest.fail(f"no process '{needle}' after {timeout} s")

    def interrupt_like_a_terminal(self) -> None:
        """Ctrl-C: the terminal sends SIGINT to the whole foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)


def marked_processes(mark: str) -> dict[int, str]:
    """Live (not zombie) processes whose environment carries `mark`, pid -> command line."""
    needle = f"{MARK_VAR}={mark}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
    return found


def driver_of(capture: Capture, run_dir: Path) -> int:
    """The pid of the driver process running `run_dir`'s workload (not nsys, whose command line
    carries the driver's)."""
    needle = f"-m perfctl.driver {run_dir}/workload.json"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        for pid, cmd in capture.processes().items():
            if needle in cmd and " profile " not in cmd:
                return pid
        if capture.proc.poll() is not None:
            break
        time.sleep(0.02)
    pytest.fail(f"no driver process for {run_dir}")


@contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` mounted at `path` (root only; skipped where mounting is refused, as in
    an unprivileged container)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def resize(mount: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)


def fill(mount: Path) -> None:
    """Fill a filesystem to the last byte."""
    fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            try:
                while os.write(fd, b"\0" * chunk):
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)
