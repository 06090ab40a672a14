"""A sweep folder, what `perfctl sweep` writes: one run folder per batch size, and the sweep's own files.

  sweep.json            the sweep's manifest: command, options, batch sizes, each point's run folder
                        and how its capture ended, status (running, ok, partial, failed, interrupted)
  index.db              the registry of its points (the sweep folder is their profiles folder:
                        `perfctl runs --profiles SWEEP` lists them)
  pages/                links to the page files the points ran, in order (a point of batch B runs
                        calls x B pages; a folder holding fewer pages is gone through again)
  batch-1/ batch-4/ ... one run folder per batch size, each captured and analyzed as `perfctl
                        capture` / `perfctl analyze` would (analysis.json, report.html, summary.md)
  sweep-analysis.json   the sweep's analysis (perfctl.analysis.sweep), and what renders it:
  sweep-report.html     sweep-summary.md

Like a run folder it is recognised by the manifest perfctl wrote (`why_not_made_by_perfctl`), and
`--force` replaces nothing else.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfctl.errors import BadInput
from perfctl.files import write_json_atomic
from perfctl.run_manifest import ARGV, COUNT, TEXT, TEXT_OR_NULL, Field, RecordFile, read_record

SWEEP_FILE = "sweep.json"
SWEEP_ANALYSIS_FILE = "sweep-analysis.json"
SWEEP_REPORT_FILE = "sweep-report.html"
SWEEP_SUMMARY_FILE = "sweep-summary.md"
SWEEP_OUTPUTS = (SWEEP_ANALYSIS_FILE, SWEEP_REPORT_FILE, SWEEP_SUMMARY_FILE)
SWEEP_PAGES_DIR = "pages"
SWEEP_KIND = "perfctl-sweep"  # sweep.json's `kind`: what tells a sweep folder from a run folder

SWEEP_FIELDS: dict[str, Field] = {
    "kind": TEXT,
    "perfctl_version": TEXT,
    "sweep_id": TEXT,
    "status": TEXT,
    "reason": TEXT_OR_NULL,
    "started_at": TEXT,
    "finished_at": TEXT_OR_NULL,
    "perfctl_command": ARGV,
    "batch_sizes": Field((list,), items=COUNT),
    "calls": COUNT,
    "profile_calls": COUNT,
    "options": Field((dict,)),
    "points": Field(
        (list,),
        items=Field(
            (dict,), fields={"batch_size": COUNT, "run": TEXT, "status": TEXT, "reason": TEXT_OR_NULL}
        ),
    ),
}


def point_name(batch_size: int) -> str:
    """The run folder of a sweep's point, inside the sweep folder."""
    return f"batch-{batch_size}"


@dataclass(frozen=True)
class SweepFolder:
    path: Path

    @property
    def manifest_path(self) -> Path:
        return self.path / SWEEP_FILE

    @property
    def pages(self) -> Path:
        return self.path / SWEEP_PAGES_DIR

    def point(self, batch_size: int) -> Path:
        return self.path / point_name(batch_size)

    def output(self, name: str) -> Path:
        return self.path / name

    @staticmethod
    def is_sweep(path: Path) -> bool:
        """Whether `path` is a folder holding a sweep's manifest (a sweep folder, made or being made)."""
        return path.is_dir() and (path / SWEEP_FILE).is_file()

    def read_manifest(self) -> RecordFile:
        """sweep.json, checked against SWEEP_FIELDS (perfctl.run_manifest: untrusted input)."""
        return read_record(self.manifest_path, SWEEP_FIELDS)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def why_not_made_by_perfctl(self) -> str | None:
        """Why this is not a sweep folder perfctl made, or None when it is one: its sweep.json is a
        sweep's manifest naming this folder (`sweep_id`, the folder's name, as `perfctl sweep` sets it)."""
        found = self.read_manifest()
        if found.data is None:
            state = "does not exist" if not found.present else "is unusable"
            return f"{found.path} {state}" + (f" ({found.problems[0]})" if found.problems else "")
        if found.data.get("kind") != SWEEP_KIND or not isinstance(found.data.get("perfctl_version"), str):
            return f"{found.path} is no sweep manifest perfctl wrote"
        if found.data.get("sweep_id") != self.path.name:
            return f"its {SWEEP_FILE} is of sweep {found.data.get('sweep_id')!r}, not of this folder"
        return None

    @staticmethod
    def claim(path: Path, profiles_root: Path, force: bool) -> SweepFolder:
        """Create the sweep folder, exclusively; with `force` first remove one perfctl made (never a
        folder protected by where it is, capture.claim.protected_place, nor one a capture writes into)."""
        from perfctl.capture.claim import capture_running_in, protected_place

        if os.path.lexists(path):
            if not force:
                raise BadInput(f"sweep folder {path} already exists; pass --force to replace it")
            if path.is_symlink():
                raise BadInput(f"--force does not replace {path}: it is a symbolic link, not a sweep folder")
            resolved = path.resolve()
            why = protected_place(resolved, profiles_root)
            if why:
                raise BadInput(f"--force does not replace {path}: {why}")
            not_ours = SweepFolder(resolved).why_not_made_by_perfctl()
            if not_ours:
                raise BadInput(
                    f"--force replaces only a sweep folder perfctl made, and {path} is none: {not_ours}"
                )
            busy = [p.name for p in resolved.iterdir() if p.is_dir() and capture_running_in(p)]
            if busy:
                raise BadInput(
                    f"a capture is still writing into {path}/{busy[0]}; --force does not replace it"
                )
            shutil.rmtree(resolved)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            raise BadInput(f"sweep folder {path} was created by someone else just now") from None
        return SweepFolder(path)
