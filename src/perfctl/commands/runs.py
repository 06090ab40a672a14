"""`perfctl runs`: the runs a profiles folder's registry (index.db) recorded, newest first, filtered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perfctl.registry import list_runs


def runs(
    profiles_root: Path,
    model: str | None = None,
    status: str | None = None,
    gpu: str | None = None,
    since: str | None = None,
) -> list[dict[str, Any]]:
    """The registry's runs that match every filter given (perfctl.registry.list_runs)."""
    return list_runs(profiles_root, model=model, status=status, gpu=gpu, since=since)
