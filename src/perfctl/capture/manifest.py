"""What makes a run folder self-describing: who ran what, where, with which versions, and how it ended."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from perfctl.errors import OutputFailed

# The model's config.json as the capture ran it, copied into the run folder: the FLOP model reads it
# there, so efficiency does not depend on the model folder still existing (or a built-in unchanged).
MODEL_CONFIG_FILE = "model-config.json"


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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvml_gpus() -> list[dict[str, Any]] | str:
    """GPUs as NVML sees them, or a sentence saying why there are none to list."""
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"NVML unavailable ({exc})"
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append(
                {
                    "index": i,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "memory_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    "driver": _text(pynvml.nvmlSystemGetDriverVersion()),
                }
            )
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def host_identity() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "gpus_nvml": nvml_gpus(),
    }


def package_versions(names: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
