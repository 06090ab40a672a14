"""The nsys sessions running on this machine, read from /proc, and whose they are.

Two nsys profiling sessions at once fail at random (../shared/docs/nsys-facts.md: a capture started
while another nsys profiled came back without an NVTX_EVENTS table). perfctl serializes its own
sessions with a machine-wide lock (perfctl.capture.nsys_lock), and every nsys it starts carries
`PERFCTL_NSYS_LOCK_HOLDER=<pid of the lock holder>` in its environment, which nsys hands on to its
agent and launcher. Any other nsys session process is foreign: started by hand or by another tool, by
a perfctl that predates the lock, or left running by a holder that died (perfctl killed by SIGKILL:
its nsys still finalizes its report). perfctl waits for a foreign session to end (or, with
`capture --no-wait`, refuses), and while its own nsys pass runs a `SessionWatcher` notes every
foreign one that appears (`nsys.foreign_sessions_seen` in the manifest): evidence, should the
capture's NVTX ranges be missing.

A session process is the nsys executable running `profile`, `launch` or `start`, its agent
(`--start-agent`), or nsys-launcher (which starts the profiled program, and nsys-tee). `nsys
--version`, `export`, `stats` and QdstrmImporter profile nothing and are not sessions. The executable
is read from /proc/PID/exe, or from the command line where that link is not readable (another
user's process). A process of another user whose environment cannot be read counts as foreign, and
is named as such. Processes in another PID namespace (another container) are not visible here.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HOLDER_VAR = "PERFCTL_NSYS_LOCK_HOLDER"
SESSION_SUBCOMMANDS = frozenset({"profile", "launch", "start"})
AGENT_OPTION = "--start-agent"
NSYS_EXECUTABLE = "nsys"
LAUNCHER_EXECUTABLES = frozenset({"nsys-launcher", "nsys-tee"})
# nsys needs well over a second to start a session (its agent, then the program), so a scan every
# second sees every session that runs beside ours; one scan is a walk over /proc, a few milliseconds.
WATCH_PERIOD_S = 1.0
# The foreign processes a watcher keeps for the manifest (one session is 3-4 processes).
WATCH_KEEP = 20
COMMAND_CHARS = 300  # of a command line, in descriptions and the manifest


@dataclass(frozen=True)
class NsysProcess:
    """One process of an nsys session."""

    pid: int
    user: str
    command: str
    holder: int | None  # the perfctl lock holder that started it (its HOLDER_VAR), None if unmarked
    environment_readable: bool

    def describe(self) -> str:
        if not self.environment_readable:
            whose = f"user {self.user}, its environment not readable"
        elif self.holder is None:
            whose = f"user {self.user}, not started by perfctl"
        else:
            whose = (
                f"user {self.user}, started by perfctl pid {self.holder}, no longer the nsys lock's holder"
            )
        return f"pid {self.pid} ({whose}): {self.command[:COMMAND_CHARS]}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def session_processes() -> list[NsysProcess]:
    """Every live nsys session process this process can see, by pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            process = _session_process(entry)
            if process is not None:
                found.append(process)
    return sorted(found, key=lambda p: p.pid)


def foreign_sessions(own_holder: int | None) -> list[NsysProcess]:
    """The session processes that do not belong to the perfctl lock holder `own_holder` (a pid)."""
    return [p for p in session_processes() if own_holder is None or p.holder != own_holder]


def ancestors() -> list[int]:
    """This process's parent, its parent, ... up to (and without) pid 1."""
    chain: list[int] = []
    pid = os.getpid()
    while True:
        pid = _parent_of(pid)
        if pid <= 1 or pid in chain:
            return chain
        chain.append(pid)


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "(gone)"
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace") or "(no command line)"


def _parent_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _session_process(entry: Path) -> NsysProcess | None:
    try:
        argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0")]
    except OSError:  # gone meanwhile
        return None
    argv = argv[:-1] if argv and argv[-1] == "" else argv
    if not argv:  # a zombie, or a kernel thread
        return None
    try:
        names = {os.path.basename(os.readlink(entry / "exe"))}
    except OSError:  # another user's process: its command line says what it runs
        names = set()
    names.add(os.path.basename(argv[0]))
    if not _is_session(names, argv[1:]):
        return None
    try:
        environ = (entry / "environ").read_bytes().split(b"\0")
        readable = True
    except OSError:
        environ, readable = [], False
    holder = None
    prefix = f"{HOLDER_VAR}=".encode()
    for item in environ:
        if item.startswith(prefix) and item[len(prefix) :].isdigit():
            holder = int(item[len(prefix) :])
    return NsysProcess(int(entry.name), _owner(entry), " ".join(argv), holder, readable)


def _is_session(names: set[str], args: list[str]) -> bool:
    if names & LAUNCHER_EXECUTABLES:
        return True
    if NSYS_EXECUTABLE not in names:
        return False
    subcommand = next((a for a in args if not a.startswith("-")), None)
    return AGENT_OPTION in args or subcommand in SESSION_SUBCOMMANDS


def _owner(entry: Path) -> str:
    try:
        uid = entry.stat().st_uid
    except OSError:
        return "?"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def describe_recorded(process: dict[str, Any]) -> str:
    """NsysProcess.describe() of a process as a manifest recorded it (`to_json`)."""
    try:
        return NsysProcess(**process).describe()
    except TypeError:  # a manifest written by another version
        return str(process)


def sessions_seen_note(seen: list[dict[str, Any]]) -> str:
    """For the reason of a capture that failed: the foreign sessions its watcher saw (manifest
    `nsys.foreign_sessions_seen`), as evidence and not as the cause; "" when it saw none. Two nsys
    sessions at once fail at random and in many ways (no NVTX_EVENTS table, `sem_open` failed, "Local
    Endpoint is not available"), so a failure beside one is not to be trusted as the program's own."""
    if not seen:
        return ""
    described = "; ".join(describe_recorded(p) for p in seen[:3])
    return (
        f"; another nsys session ran during the nsys pass ({described}), and two nsys sessions at "
        "once fail at random: capture again once it has ended"
    )


class SessionWatcher:
    """Notes the session processes that do not belong to `own_holder` while perfctl waits for its nsys:
    `wait(proc)` waits for a process, scanning /proc every `period_s` meanwhile; `tick()` scans when a
    period has passed (for other waiting loops); `seen` keeps the first WATCH_KEEP found, in order.

    No thread: a child started with a parent-death signal (capture.processes.start) gets that signal
    whenever the thread that started it ends, and again from each thread it is handed to as the
    others end. A second thread alive when perfctl is killed would send nsys a second SIGINT, which
    makes it quit without writing its report."""

    def __init__(self, own_holder: int, period_s: float = WATCH_PERIOD_S) -> None:
        self._own = own_holder
        self._period_s = period_s
        self._seen: dict[int, NsysProcess] = {}
        self._last_scan = -float("inf")

    @property
    def seen(self) -> list[NsysProcess]:
        return list(self._seen.values())

    def scan(self) -> None:
        self._last_scan = time.monotonic()
        for process in foreign_sessions(self._own):
            if len(self._seen) < WATCH_KEEP:
                self._seen.setdefault(process.pid, process)

    def tick(self) -> None:
        if time.monotonic() - self._last_scan >= self._period_s:
            self.scan()

    def wait(self, proc: subprocess.Popen[bytes], timeout_s: float | None = None) -> int:
        """proc.wait(), scanning meanwhile; subprocess.TimeoutExpired after `timeout_s`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self.tick()
            step = self._period_s if deadline is None else min(self._period_s, deadline - time.monotonic())
            try:
                return proc.wait(timeout=max(step, 0.0))
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
