"""perfctl's machine-wide nsys lock: one nsys session at a time on this machine, for every user.

Two nsys profiling sessions at once fail at random (../shared/docs/nsys-facts.md); a capture that
ran beside another came back without NVTX ranges. So every perfctl code path that starts `nsys
profile` (capture's nsys pass, doctor's self-test) first takes this lock, and taking it means two
things: holding an flock on the lock file, and seeing no foreign nsys session (perfctl.capture.
nsys_sessions) on the machine. Until both hold, perfctl waits, saying for whom (a progress line,
repeated every WAIT_REPORT_S), or with `capture --no-wait` refuses at once (BadInput, exit 2).

The lock file is `/tmp/perfctl-nsys-session.lock`, or `$PERFCTL_NSYS_LOCK` (every perfctl on the
machine must name the same file, or they do not exclude each other). It is usable by every user:
created with mode 0666 whatever the umask; an existing file is opened without O_CREAT (which
fs.protected_regular refuses on another user's file in sticky /tmp), and read-only where it is not
writable (flock works on a read-only descriptor). It is never followed as a symbolic link, and only
a plain file is written to.

The holder writes who it is into the lock file (JSON: pid, run id, what it runs, user, since when),
so that a waiter can name it; the kernel's /proc/locks says which pid really holds the flock, so a
stale record, left by a holder that died, is not believed. The descriptor is not inherited by the
processes perfctl starts, so a holder that dies releases the lock by itself, even while its nsys
still finalizes a report: that nsys then shows as a foreign session ("started by perfctl pid N,
no longer the nsys lock's holder") until it ends. A lock held by one of this process's
ancestors, or an nsys session this process runs inside, would be waited for forever: refused.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pwd
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from perfctl.capture.nsys_sessions import (
    COMMAND_CHARS,
    HOLDER_VAR,
    NsysProcess,
    ancestors,
    command_line,
    foreign_sessions,
)
from perfctl.errors import BadInput
from perfctl.files import utc_now

LOCK_PATH_VAR = "PERFCTL_NSYS_LOCK"
DEFAULT_LOCK_PATH = Path("/tmp/perfctl-nsys-session.lock")
# A waiter tries again twice a second: a freed lock is taken within half a second, for one flock
# call and one /proc scan each time.
WAIT_POLL_S = 0.5
# A waiter repeats its progress line this often (and whenever whom it waits for changes), so that a
# long wait still shows it is alive and for whom.
WAIT_REPORT_S = 30.0
RECORD_MAX_BYTES = 4096  # of the holder's record read back; a record is a few hundred bytes
WAITED_FOR_KEEP = 10  # distinct "waited for" descriptions kept for the manifest
_WAITING_FOR_FOREIGN = "waiting for a foreign nsys session to end, then "  # in the holder's record


def lock_path() -> Path:
    """The machine-wide lock file: $PERFCTL_NSYS_LOCK, else /tmp/perfctl-nsys-session.lock."""
    return Path(os.environ.get(LOCK_PATH_VAR) or DEFAULT_LOCK_PATH)


@dataclass(frozen=True)
class Holder:
    """Who holds the lock: always its pid (from /proc/locks); the rest from its record, or, where it
    left none (a lock file it could not write, or not a perfctl), its command line as `what`."""

    pid: int
    what: str
    run_id: str | None = None
    user: str | None = None
    since: str | None = None
    recorded: bool = True

    def describe(self) -> str:
        if not self.recorded:
            return f"pid {self.pid} ({self.what}; no holder record in the lock file)"
        parts = [self.what]
        if self.run_id:
            parts.append(f"run {self.run_id}")
        if self.user:
            parts.append(f"user {self.user}")
        if self.since:
            parts.append(f"since {self.since}")
        return f"perfctl pid {self.pid} ({', '.join(parts)})"


class NsysSessionLock:
    """The right to run one nsys session on this machine (see the module's docstring). `what` says
    what the holder runs (shown to waiters); `run_id` names its run once there is one."""

    def __init__(self, what: str, run_id: str | None = None, path: Path | None = None) -> None:
        self.what = what
        self.run_id = run_id
        self.path = path if path is not None else lock_path()
        self._fd, self._writable = _open_lock_file(self.path)
        self._flocked = False
        self.held = False  # the flock held and no foreign session seen: nsys may start
        self.acquired_at: str | None = None
        self.waited_s = 0.0
        self.waited_for: list[str] = []

    def __enter__(self) -> NsysSessionLock:
        return self

    @property
    def has_flock(self) -> bool:
        """The file lock is ours (nsys may start once no foreign session runs: `held`)."""
        return self._flocked

    @property
    def writes_record(self) -> bool:
        """The lock file is writable for us: waiters read who we are from it."""
        return self._writable

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def try_take(self) -> str | None:
        """Take the lock if it can be had now: None once held, else whom it waits for (one line).
        The flock, once had, is kept while foreign sessions run, so that no other perfctl starts in
        between. BadInput when waiting could never end (an ancestor holds it, or runs nsys)."""
        if self.held:
            return None
        if not self._flocked:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self.holder()
                if holder is not None and holder.pid in ancestors():
                    raise BadInput(
                        f"the nsys lock {self.path} is held by {holder.describe()}, a parent of this "
                        "perfctl: it would wait for itself; run perfctl outside that process"
                    ) from None
                return f"the nsys lock {self.path}, held by " + (
                    holder.describe() if holder is not None else "a process that just let it go"
                )
            self._flocked = True
            self._write_record(state=_WAITING_FOR_FOREIGN + self.what)
        foreign = foreign_sessions(os.getpid())
        if foreign:
            _refuse_if_inside(foreign)
            return "an nsys session perfctl cannot lock against: " + "; ".join(p.describe() for p in foreign)
        self.held = True
        self.acquired_at = utc_now()
        self._write_record(state=self.what)
        return None

    def take(self, wait: bool, report: Callable[[str], None]) -> None:
        """Take the lock, waiting for as long as it takes (`report` gets a line at the start of the
        wait, every WAIT_REPORT_S and whenever whom it waits for changes), or, unless `wait`, refuse
        at once with BadInput naming the holder or the foreign session."""
        started = time.monotonic()
        reported_at, reported = 0.0, ""
        while (busy := self.try_take()) is not None:
            if not wait:
                raise no_wait_refusal(busy)
            if busy not in self.waited_for and len(self.waited_for) < WAITED_FOR_KEEP:
                self.waited_for.append(busy)
            now = time.monotonic()
            if busy != reported or now - reported_at >= WAIT_REPORT_S:
                report(f"waiting for {busy} (two nsys sessions at once lose NVTX ranges)")
                reported_at, reported = now, busy
            time.sleep(WAIT_POLL_S)
            self.waited_s = time.monotonic() - started

    def name_run(self, run_id: str) -> None:
        """The holder's record names the run from now on (the lock is taken before the run folder)."""
        self.run_id = run_id
        if self._flocked:
            self._write_record(state=self.what if self.held else _WAITING_FOR_FOREIGN + self.what)

    def child_env(self) -> dict[str, str]:
        """The environment mark of the nsys this holder starts: its processes are not foreign."""
        return {HOLDER_VAR: str(os.getpid())}

    def record(self) -> dict[str, Any]:
        """What the manifest keeps of the lock: the file, when it was had, how long and for whom
        perfctl waited."""
        return {
            "path": str(self.path),
            "acquired_at": self.acquired_at,
            "waited_s": round(self.waited_s, 1),
            "waited_for": list(self.waited_for),
        }

    def holder(self) -> Holder | None:
        """Who holds the flock now (None: nobody, or it cannot be told)."""
        pid = _flock_owner(self._fd)
        record = self._read_record()
        if pid is None and record is not None and _alive(int(record.get("pid", 0))):
            pid = int(record["pid"])  # /proc/locks did not show it (another mount namespace)
        if pid is None:
            return None
        if record is None or record.get("pid") != pid:
            return Holder(pid, command_line(pid)[:COMMAND_CHARS], recorded=False)
        return Holder(
            pid,
            str(record.get("what") or "?"),
            record.get("run_id"),
            record.get("user"),
            record.get("since"),
        )

    def release(self) -> None:
        """Let the lock go (once the session's processes have ended); idempotent."""
        if self._flocked:
            if self._writable and _plain_single_file(self._fd):
                os.ftruncate(self._fd, 0)  # no stale record for the next waiter to read
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._flocked = self.held = False

    def close(self) -> None:
        self.release()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _write_record(self, state: str) -> None:
        if not (self._writable and _plain_single_file(self._fd)):
            return  # waiters name the holder from /proc/locks and its command line instead
        record = {
            "pid": os.getpid(),
            "what": state,
            "run_id": self.run_id,
            "user": _user_name(),
            "since": self.acquired_at or utc_now(),
        }
        data = (json.dumps(record) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def _read_record(self) -> dict[str, Any] | None:
        try:
            text = os.pread(self._fd, RECORD_MAX_BYTES, 0).decode(errors="replace")
            record = json.loads(text)
        except (OSError, ValueError):  # empty, being rewritten, or not ours
            return None
        return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def no_wait_refusal(busy: str) -> BadInput:
    """What `--no-wait` says when the lock cannot be had now (`busy`: whom it would wait for)."""
    return BadInput(f"another nsys session runs on this machine: {busy}; --no-wait does not wait")


def _open_lock_file(path: Path) -> tuple[int, bool]:
    """The lock file's descriptor (and whether it is writable): an existing file opened as it is,
    a missing one created world-usable. Never through a symbolic link."""
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    for _ in range(10):  # a file created or removed by another process meanwhile: look again
        try:
            try:
                fd, writable = os.open(path, os.O_RDWR | flags), True
            except PermissionError:
                fd, writable = os.open(path, os.O_RDONLY | flags), False
        except FileNotFoundError:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | flags, 0o666)
            except FileExistsError:
                continue
            os.fchmod(fd, 0o666)  # every user may lock it, whatever our umask
            return fd, True
        except OSError as exc:
            raise _unusable(path, exc) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise BadInput(f"the nsys lock {path} is not a plain file; set {LOCK_PATH_VAR} to one")
        return fd, writable
    raise BadInput(f"the nsys lock {path} keeps appearing and disappearing; set {LOCK_PATH_VAR} elsewhere")


def _unusable(path: Path, exc: OSError) -> BadInput:
    why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
    return BadInput(
        f"cannot open the nsys lock {path}: {why}; set {LOCK_PATH_VAR} to a file every user of this "
        "machine can open"
    )


def _plain_single_file(fd: int) -> bool:
    """Safe to rewrite: a plain file with one name (not a hard link to someone's file)."""
    info = os.fstat(fd)
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


def _flock_owner(fd: int) -> int | None:
    """The pid holding an flock on the file behind `fd`, from /proc/locks."""
    info = os.fstat(fd)
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    same_inode = None
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue  # a waiter ("->" in that column), or a POSIX / OFD lock
        pid, where = fields[4], fields[5]
        if not pid.isdigit():
            continue
        if where == device:
            return int(pid)
        if where.rsplit(":", 1)[-1] == str(info.st_ino):
            same_inode = int(pid)  # overlay filesystems show the lower device
    return same_inode


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _refuse_if_inside(foreign: list[NsysProcess]) -> None:
    """An nsys session that runs this very process (`nsys profile perfctl capture ...`) ends only
    after it: waiting for it would never end."""
    around = set(ancestors())
    inside = [p for p in foreign if p.pid in around]
    if inside:
        raise BadInput(
            f"this perfctl runs inside an nsys session ({inside[0].describe()}): its own nsys would be a "
            "second session at once; run perfctl outside nsys"
        )


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
