"""perfctl's machine-wide nsys lock, for real: real processes hold it through perfctl's own API, real
users (root, nobody, a root without its capabilities) open it, and the refusals go through the real
command line. Each test here uses a lock file of its own ($PERFCTL_NSYS_LOCK), so that it neither
waits for nor disturbs the machine's captures; the captures that meet the machine's lock are in
tests/test_concurrent_captures.py."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_perfctl
from faults_support import HeldNsysLock
from perfctl.capture.nsys_lock import LOCK_PATH_VAR, NsysSessionLock
from perfctl.errors import BadInput

TINY = ("--device", "cpu", "--num-pages", "1", "--max-new-tokens", "2", "--warmup", "0")


@pytest.fixture
def lock_file(tmp_path: Path) -> Path:
    return tmp_path / "nsys-session.lock"


def _env(lock: Path) -> dict[str, str]:
    return dict(os.environ, **{LOCK_PATH_VAR: str(lock)})


def test_the_holder_is_named_and_no_wait_refuses(lock_file: Path) -> None:
    holder = HeldNsysLock("run-held-1", what="perfctl capture, nsys pass", env=_env(lock_file))
    try:
        with NsysSessionLock("a waiter", path=lock_file) as waiter:
            named = waiter.holder()
            assert named is not None and named.pid == holder.pid and named.run_id == "run-held-1"
            busy = waiter.try_take()
            assert busy is not None and not waiter.held
            assert f"held by perfctl pid {holder.pid} (perfctl capture, nsys pass, run run-held-1" in busy
            with pytest.raises(BadInput, match=f"perfctl pid {holder.pid} .*--no-wait does not wait"):
                waiter.take(wait=False, report=lambda line: None)
    finally:
        holder.release()


def test_a_waiter_says_whom_it_waits_for_then_takes_the_lock(lock_file: Path) -> None:
    """The waiter reports at once, naming the holder; once the holder lets go, it has the lock and
    its record says whom it waited for."""
    holder = HeldNsysLock("run-held-2", env=_env(lock_file))
    reported = threading.Event()
    lines: list[str] = []

    def report(line: str) -> None:
        lines.append(line)
        reported.set()

    with NsysSessionLock("a waiter", path=lock_file) as waiter:
        taker = threading.Thread(target=waiter.take, kwargs={"wait": True, "report": report})
        taker.start()
        try:
            assert reported.wait(timeout=120), "the waiter never said it waits"
        finally:
            holder.release()
            taker.join(timeout=600)
        assert waiter.held
        assert lines[0].startswith(f"waiting for the nsys lock {lock_file}, held by perfctl pid {holder.pid}")
        record = waiter.record()
        assert record["path"] == str(lock_file) and record["acquired_at"]
        assert any(f"perfctl pid {holder.pid}" in w and "run-held-2" in w for w in record["waited_for"])
        # what a waiter of ours would now read: this process, its run named
        waiter.name_run("run-waiter")
        with NsysSessionLock("another", path=lock_file) as third:
            me = third.holder()
            assert me is not None and (me.pid, me.run_id, me.what) == (os.getpid(), "run-waiter", "a waiter")
    assert lock_file.read_text() == "", "a released lock keeps no holder record"


def test_a_holder_that_dies_releases_the_lock(lock_file: Path) -> None:
    """SIGKILL: no handler runs, the holder's record stays in the file, and yet the kernel has let the
    lock go; the stale record is not believed."""
    holder = HeldNsysLock("run-killed", env=_env(lock_file))
    os.kill(holder.pid, signal.SIGKILL)
    holder.proc.wait(timeout=60)
    assert f'"pid": {holder.pid}' in lock_file.read_text()  # stale: its writer is dead
    with NsysSessionLock("after", path=lock_file) as after:
        assert after.holder() is None
        busy = after.try_take()
        assert busy is None or "held by" not in busy  # at most a foreign nsys of this machine


@pytest.mark.usefixtures("nsys_bin")
def test_a_capture_under_a_parent_holding_the_lock_refuses(
    lock_file: Path, tmp_path: Path, nsys_bin: str
) -> None:
    """A capture started by the lock's own holder would wait for itself forever: exit 2, one line,
    nothing made."""
    out = tmp_path / "run"
    with NsysSessionLock("pytest, the parent", run_id="parent-run", path=lock_file) as held:
        held.try_take()  # None, or a foreign nsys session of this machine named: the flock is ours
        assert held.has_flock
        proc = run_perfctl("capture", *TINY, "--out", str(out), "--nsys", nsys_bin, env=_env(lock_file))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # (its record may say it waits for a foreign session: another perfctl's nsys, on another lock file)
    assert f"held by perfctl pid {os.getpid()} (" in proc.stderr
    assert "pytest, the parent, run parent-run" in proc.stderr
    assert "a parent of this perfctl: it would wait for itself" in proc.stderr
    assert not out.exists() and not (tmp_path / "index.db").exists()


@pytest.mark.usefixtures("nsys_bin")
def test_a_lock_path_that_is_a_symbolic_link_is_refused(tmp_path: Path, nsys_bin: str) -> None:
    """A link planted where the lock file goes is never opened (perfctl would truncate its target)."""
    target = tmp_path / "precious"
    target.write_text("do not truncate me\n")
    before = hashlib.sha256(target.read_bytes()).hexdigest()
    link = tmp_path / "nsys-session.lock"
    link.symlink_to(target)
    out = tmp_path / "run"
    proc = run_perfctl("capture", *TINY, "--out", str(out), "--nsys", nsys_bin, env=_env(link))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert f"cannot open the nsys lock {link}: it is a symbolic link" in proc.stderr
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before and not out.exists()


@pytest.fixture
def sticky_dir() -> Iterator[Path]:
    """A folder like /tmp (world-writable, sticky) that every user can reach."""
    if os.geteuid() != 0 or not shutil.which("runuser") or not shutil.which("setpriv"):
        pytest.skip("needs root, runuser and setpriv to act as other users")
    folder = Path(tempfile.mkdtemp(prefix="perfctl-lock-test-", dir="/tmp"))
    folder.chmod(0o1777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def test_a_lock_file_made_under_a_strict_umask_is_usable_by_every_user(sticky_dir: Path) -> None:
    lock = sticky_dir / "nsys-session.lock"
    made = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.umask(0o077); from perfctl.capture.nsys_lock import "
         "NsysSessionLock as L; L('maker', path=__import__('pathlib').Path(sys.argv[1])).close()", str(lock)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(lock.stat().st_mode) == 0o666
    # another user locks it (util-linux flock opens it as it is)
    other = subprocess.run(["runuser", "-u", "nobody", "--", "flock", "-n", str(lock), "true"], check=False)
    assert other.returncode == 0


# a root that lost every capability is held to the file's permissions like any other user
NO_CAPABILITIES = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all"]


def test_a_read_only_lock_file_of_another_user_still_locks(sticky_dir: Path) -> None:
    """A lock file another user made read-only for us: opened read-only, locked all the same, no
    record written; a waiter names the holder from /proc/locks and its command line."""
    lock = sticky_dir / "nsys-session.lock"
    subprocess.run(["runuser", "-u", "nobody", "--", "sh", "-c", f"umask 022; : > {lock}"], check=True)
    assert lock.stat().st_uid != 0 and stat.S_IMODE(lock.stat().st_mode) == 0o644
    env = _env(lock) | {"PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [*NO_CAPABILITIES, sys.executable, "-c", _READ_ONLY_HOLDER],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        said = holder.stdout.readline().split()
        assert said[:2] == ["held", "writable=False"], [*said, holder.stderr.read() if holder.stderr else ""]
        assert lock.read_text() == ""  # nothing written into another user's file
        with NsysSessionLock("a waiter", path=lock) as waiter:
            named = waiter.holder()
            assert named is not None and named.pid == holder.pid and not named.recorded
            busy = waiter.try_take()
            assert busy is not None and f"held by pid {holder.pid} (" in busy
            assert "no holder record in the lock file" in busy and sys.executable in busy
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(timeout=60)


_READ_ONLY_HOLDER = """
import sys
from perfctl.capture.nsys_lock import NsysSessionLock
with NsysSessionLock("without capabilities") as lock:
    while lock.try_take() is not None and not lock.has_flock:
        pass
    print("held", f"writable={lock.writes_record}", flush=True)
    sys.stdin.read()
"""
