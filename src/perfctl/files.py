"""Writing files so that no reader sees half of one, hashing them, and the time stamps written beside
them: shared by capture, the driver's child process, analysis, the registry and calibration."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perfctl.errors import OutputFailed


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file in the same folder, then rename: a reader never sees half a file."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary name beside `path`, flush it to disk, then rename it over `path`.

    A reader (or a crash, or a full disk) never leaves half a file under `path`: it holds the old
    content or the new one. A write that fails raises OutputFailed and leaves no temporary behind."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run folders are shared read-only artefacts
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputFailed(f"cannot write {path}: {exc.strerror or exc}{disk_note(path.parent)}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def disk_note(folder: Path) -> str:
    """'; the disk is full (12 KiB free in /x)' when the folder's filesystem has (almost) no room left."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f"; the disk is full ({free // 1024} KiB free in {folder})" if free < 16 << 20 else ""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
