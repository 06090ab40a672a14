"""What the fault tests share: the machine-wide nsys lock, real `perfctl capture` processes started as a
user's shell starts them, and a look at /proc for any process a capture left behind."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NSYS_LOCK = Path("/tmp/perfctl-nsys.lock")
MARK_VAR = "PERFCTL_FAULT_TEST_MARK"


@contextmanager
def nsys_lock() -> Iterator[None]:
    """Hold the machine-wide nsys lock (two nsys sessions at once fail spuriously). When pytest itself
    runs under `flock /tmp/perfctl-nsys.lock`, the lock is already ours (flock(1) hands its locked
    descriptor to the command): taking it again would wait for ourselves forever."""
    inherited = any(_fd_target(fd) == str(NSYS_LOCK) for fd in os.listdir("/proc/self/fd"))
    if inherited:
        yield
        return
    with NSYS_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fd_target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


class Capture:
    """`perfctl capture ARGS` started the way a shell starts a job: in a process group (and session)
    of its own, its environment carrying a mark that every process it starts inherits (nsys passes
    its environment on to its agent, its launcher and the driver)."""

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        self.mark = uuid.uuid4().hex
        env = dict(os.environ, **{MARK_VAR: self.mark})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "perfctl", "capture", *args],
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
