"""A run folder's name and ownership: run ids, claiming a folder, and the lock a capture holds (the
entry point is perfctl.run_folder.RunFolder: claim, check_choice, lock, unlock, capture_running).

A capture owns its run folder from the moment it creates it (exclusively: of two captures racing for
one name, one is refused) until it ends; the lock file says so to `--force` and to `perfctl analyze`
(which then warns that what it reads is still being written).

`--force` replaces only a run folder perfctl made (its manifest.json, as capture writes it, names the
folder: `RunFolder.why_not_made_by_perfctl`), and never a symbolic link, the root folder, the home
folder, the working directory or a folder above it, the profiles folder given (`--profiles`) or any
folder that is itself a profiles folder (it holds a registry, index.db, or run folders of its own).
Each refusal is one line (BadInput) and comes before anything is deleted, and before nsys or the
driver runs (`check_run_dir_choice`, called with the other option checks).
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
from perfctl.run_folder import INDEX_FILE, LOCK_FILE, MANIFEST_FILE, RunFolder

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# how many of a profiles folder's run folders a refusal names
NAMED_RUN_FOLDERS = 3


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
    if named:
        run_dir = check_run_dir_choice(profiles_root, run_id, out, force)
        if os.path.lexists(run_dir):  # checked again just now: a run folder perfctl made
            shutil.rmtree(run_dir)
    else:
        # a generated id that exists is simply drawn again below (never replaced, even with --force)
        run_dir = profiles_root / new_run_id(model)
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


def check_run_dir_choice(profiles_root: Path, run_id: str | None, out: Path | None, force: bool) -> Path:
    """The run folder a capture named (`out`, else profiles_root/run_id), once it is sure a capture may
    claim it: it does not exist yet, or `force` may replace it (`check_replaceable`). BadInput else."""
    if out is None:
        if run_id is None:
            raise ValueError("a run folder is named by out or run_id")
        check_run_id(run_id)
        run_dir = profiles_root / run_id
    else:
        run_dir = out
    if os.path.lexists(run_dir):  # a dangling symbolic link exists too
        if not force:
            raise BadInput(f"run folder {run_dir} already exists; pass --force to replace it")
        check_replaceable(run_dir, profiles_root)
    return run_dir


def check_replaceable(run_dir: Path, profiles_root: Path) -> None:
    """Refuse (BadInput, naming why) to replace `run_dir` with --force unless it is a run folder perfctl
    made that no capture is writing into (see the module docstring)."""
    if run_dir.is_symlink():
        raise BadInput(f"--force does not replace {run_dir}: it is a symbolic link, not a run folder")
    resolved = run_dir.resolve()
    why = _protected(resolved, profiles_root)
    if why:
        raise BadInput(f"--force does not replace {run_dir}: {why}")
    if not resolved.is_dir():
        raise BadInput(f"{run_dir} exists and is not a folder")
    if capture_running_in(resolved):
        raise BadInput(f"a capture is still writing into {run_dir}; --force does not replace it")
    not_ours = RunFolder(resolved).why_not_made_by_perfctl()
    if not_ours:
        raise BadInput(f"--force replaces only a run folder perfctl made, and {run_dir} is none: {not_ours}")


def _protected(folder: Path, profiles_root: Path) -> str | None:
    """Why a resolved folder is never replaced, whatever it holds, or None."""
    why = protected_place(folder, profiles_root)
    if why:
        return why
    if os.path.lexists(folder / INDEX_FILE):
        return f"it is a profiles folder: it holds a run registry ({INDEX_FILE})"
    runs = sorted(
        p.name
        for p in _subfolders(folder)
        if (p / MANIFEST_FILE).is_file() and RunFolder(p).why_not_made_by_perfctl() is None
    )
    if runs:
        named = ", ".join(runs[:NAMED_RUN_FOLDERS]) + (", ..." if len(runs) > NAMED_RUN_FOLDERS else "")
        return f"it is a profiles folder: it holds run folders of its own ({named})"
    return None


def protected_place(folder: Path, profiles_root: Path) -> str | None:
    """Why a resolved folder is never replaced because of where it is (the root folder, the working
    directory or a folder above it, the home folder, the profiles folder given), or None."""
    cwd = Path.cwd().resolve()
    if folder == Path(folder.anchor):
        return "it is the root folder"
    if folder == cwd:
        return "it is the working directory"
    if folder in cwd.parents:
        return f"it holds the working directory {cwd}"
    if folder == Path.home().resolve():
        return "it is the home folder"
    if folder == profiles_root.resolve():
        return "it is the profiles folder (--profiles)"
    return None


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


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
