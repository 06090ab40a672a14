"""The run folder's name and ownership: run ids, claiming a folder, and the lock a capture holds.

A capture owns its run folder from the moment it creates it (exclusively: of two captures racing for
one name, one is refused) until it ends; the lock file says so to `--force` and to `perfctl analyze`
(which then warns that what it reads is still being written).
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

from perfctl.errors import BadInput

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
LOCK_FILE = ".capture.lock"  # held (flock) while a capture writes into its run folder


def check_run_id(run_id: str) -> None:
    """A run id names a folder directly inside profiles/: no path, no hidden or parent folder."""
    if not RUN_ID_PATTERN.fullmatch(run_id) or ".." in run_id:
        raise BadInput(f"run id {run_id!r} must be letters, digits, '.', '_' or '-' (no paths)")


def new_run_id(model: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model).name).strip("-.") or "model"
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{stem[:40]}-{secrets.token_hex(3)}"


def claim_run_dir(
    profiles_root: Path, model: str, run_id: str | None = None, out: Path | None = None, force: bool = False
) -> Path:
    """Create the run folder (`out`, else profiles_root/run_id, else a new id drawn from the model's
    name); refuse an existing one unless `force` (then it is replaced, unless a capture is still
    writing into it). A generated run id that someone took meanwhile is drawn again."""
    named = out is not None or run_id is not None
    if out is not None:
        run_dir = out
    else:
        chosen = new_run_id(model) if run_id is None else run_id
        check_run_id(chosen)
        run_dir = profiles_root / chosen
    # a generated id that exists is simply drawn again below (never replaced, even with --force)
    if named and run_dir.exists():
        if not force:
            raise BadInput(f"run folder {run_dir} already exists; pass --force to replace it")
        if not run_dir.is_dir():
            raise BadInput(f"{run_dir} exists and is not a folder")
        if capture_running_in(run_dir):
            raise BadInput(f"a capture is still writing into {run_dir}; --force does not replace it")
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        try:
            run_dir.mkdir()  # exclusive: of two captures racing for one folder, one gets FileExistsError
            return run_dir
        except FileExistsError:
            if named:
                raise BadInput(f"run folder {run_dir} was created by someone else just now") from None
            run_dir = profiles_root / new_run_id(model)
    raise BadInput(f"no free run id in {profiles_root} after 100 tries")


def lock_run_dir(run_dir: Path) -> int:
    """Mark the run folder as being written for as long as the returned descriptor stays open."""
    fd = os.open(run_dir / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def unlock_run_dir(run_dir: Path, fd: int) -> None:
    (run_dir / LOCK_FILE).unlink(missing_ok=True)
    os.close(fd)


def capture_running_in(run_dir: Path) -> bool:
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
