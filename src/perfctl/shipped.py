"""The run folders that come with perfctl (`shipped/` in a checkout): real runs on real GPUs, so that a
newcomer without one sees what perfctl reports about a GPU.

`copy_shipped_runs` puts each into a profiles folder as an ordinary run folder (its `*.xz` files
unpacked: the export and the Nsight Compute report are kept compressed in the package), where
`perfctl analyze` reads it like any run. A shipped run keeps its `shipped.json` (RunFolder's
SHIPPED_FILE), so every analysis and report of it says it was shipped and is not the user's.
"""

from __future__ import annotations

import json
import lzma
import shutil
from dataclasses import dataclass
from pathlib import Path

from perfctl.analysis.result import ShippedLabel
from perfctl.errors import BadInput
from perfctl.resources import shipped_dir
from perfctl.run_folder import SHIPPED_FILE, RunFolder

FORMAT = "perfctl-shipped-run/1"
COMPRESSED_SUFFIX = ".xz"


@dataclass(frozen=True)
class ShippedRun:
    name: str  # the folder's name, which is its run id
    source: Path  # where it lies in perfctl's package
    label: ShippedLabel


def read_shipped_label(folder: RunFolder) -> ShippedLabel | None:
    """The folder's shipped.json when it is a shipped run, else None; BadInput for a damaged one (a
    label that cannot be read must not let a shipped run pass for the user's own)."""
    path = folder.shipped_label
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT}")
        return {key: str(data[key]) for key in ShippedLabel.__annotations__}  # type: ignore[return-value]
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise BadInput(f"{path}: a damaged shipped-run label ({exc})") from None


def shipped_runs() -> list[ShippedRun]:
    """Every run folder perfctl ships, by name."""
    runs = []
    for source in sorted(p for p in shipped_dir().iterdir() if (p / SHIPPED_FILE).is_file()):
        label = read_shipped_label(RunFolder(source))
        assert label is not None  # its shipped.json is there
        runs.append(ShippedRun(source.name, source, label))
    return runs


def copy_shipped_run(run: ShippedRun, profiles_root: Path) -> Path:
    """`run` as a run folder in `profiles_root` (its `*.xz` files unpacked), returned. A folder of that
    name already there is replaced only when it is this shipped run (an earlier copy); anything else
    of the user's is refused (BadInput) and left as it is."""
    dest = profiles_root / run.name
    if dest.exists() or dest.is_symlink():
        existing = read_shipped_label(RunFolder(dest)) if dest.is_dir() and not dest.is_symlink() else None
        if existing is None:
            raise BadInput(f"{dest} exists and is not a copy of the shipped run {run.name}: left as it is")
        shutil.rmtree(dest)
    partial = profiles_root / f".{run.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    profiles_root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(run.source, partial)
    for packed in sorted(partial.rglob(f"*{COMPRESSED_SUFFIX}")):
        with lzma.open(packed) as src, open(packed.with_suffix(""), "wb") as out:
            shutil.copyfileobj(src, out, length=1 << 20)
        packed.unlink()
    partial.rename(dest)  # whole or not at all: an interrupted copy never looks like a run folder
    return dest


def copy_shipped_runs(profiles_root: Path) -> list[tuple[ShippedRun, Path]]:
    """Every shipped run copied into `profiles_root`: (the run, its run folder there)."""
    return [(run, copy_shipped_run(run, profiles_root)) for run in shipped_runs()]
