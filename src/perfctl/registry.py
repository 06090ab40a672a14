"""The run registry: one SQLite table (`runs` in `index.db`) per profiles root, via sqlite-utils.

Every capture is recorded when its run folder exists (status `running`) and again when it ends,
whatever happens (`ok`, `failed` or `interrupted`, with the reason); every `perfctl analyze` of a run
folder adds the run's headline metrics. One row per run id, the run folder's name, unique within its
profiles folder: a capture that replaces a run folder (`--force`) replaces its row.

Where: only in a profiles folder perfctl was pointed to or made. A run folder directly inside the
`--profiles` folder (capture's and analyze's option, default `./profiles`) is recorded there
(`index.db` is created when absent); a run folder whose parent already holds perfctl's registry (an
SQLite `index.db` with its `runs` table) is recorded there. Anywhere else (`capture --out /tmp/x`,
`analyze ~/copies/run`) nothing is written, and a note on stderr says so once (`registry_for`).

The registry is an index, never the record: a run folder's manifest.json is the truth. Writing it
therefore never fails a capture or an analysis; a registry that cannot be written (read-only folder,
a damaged file) is a warning on stderr. Several perfctl processes may write at once: SQLite's busy
timeout makes each wait for the others' short transactions.

`perfctl runs` reads it as untrusted input: an `index.db` that is empty, a folder, not SQLite, without
the `runs` table, or with a value of the wrong type in a column is refused in one line (exit 2).
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfctl.errors import BadInput
from perfctl.files import utc_now
from perfctl.run_folder import INDEX_FILE, RunFolder
from perfctl.stages import STAGES

if TYPE_CHECKING:  # the analysis code is not loaded for a capture
    from perfctl.analysis.result import Analysis

TABLE = "runs"
BUSY_TIMEOUT_S = 30.0
STATUSES = ("running", "ok", "failed", "interrupted")

CAPTURE_COLUMNS: dict[str, type] = {
    "run_id": str,
    "path": str,  # the run folder, absolute
    "started_at": str,  # UTC, ISO 8601
    "finished_at": str,
    "status": str,
    "reason": str,
    "model": str,
    "gpu": str,  # the GPU the driver ran on; null on the CPU
    "device": str,
    "pages_expected": int,
    "pages_completed": int,
    "max_new_tokens": int,
    "tiles": int,
    "host": str,
    "perfctl_version": str,
}
ANALYSIS_COLUMNS: dict[str, type] = {
    "analyzed_at": str,
    "analysis_path": str,
    "time_source": str,  # clean (the clean timing pass) or nsys (the nsys pass's pages)
    **{f"{stage}_mean_ns": float for stage in (*STAGES, "page")},
    **{f"{stage}_mfu": float for stage in (*STAGES, "page")},
    "kernel_count": int,  # CUDA kernels in the nsys export
    "wall_ns": int,  # the measured pages' wall time under nsys, summed
}
COLUMNS = CAPTURE_COLUMNS | ANALYSIS_COLUMNS


@dataclass(frozen=True)
class Placement:
    """Where a run folder's row goes (`path`), or why it is not recorded (`why_not`)."""

    path: Path | None
    why_not: str | None = None


def registry_for(run_dir: Path, profiles_root: Path | None) -> Placement:
    """The registry of `run_dir`: its parent's index.db when the parent is the profiles folder given
    (`profiles_root`) or already holds perfctl's registry; else none (see the module docstring)."""
    parent = run_dir.resolve().parent
    index = parent / INDEX_FILE
    if profiles_root is not None and parent == profiles_root.resolve():
        return Placement(index)
    problem = registry_problem(index)
    if problem is None:
        return Placement(index)
    given = (
        f"the profiles folder {profiles_root} (--profiles)"
        if profiles_root is not None
        else "a profiles folder"
    )
    held = (
        "holds no index.db"
        if not os.path.lexists(index)
        else f"holds an index.db that is no perfctl registry ({problem})"
    )
    return Placement(None, f"{run_dir} is not in {given}, and {parent} {held}")


def registry_problem(path: Path) -> str | None:
    """Why `path` is not a readable perfctl run registry, or None when it is one."""
    if path.is_dir():
        return "a folder, not a file"
    if not path.is_file():
        return "no such file"
    if path.stat().st_size == 0:
        return "an empty file (0 bytes)"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            columns = {row[1] for row in conn.execute("select * from pragma_table_info(?)", [TABLE])}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return " ".join(str(exc).split())
    if not {"run_id", "path"} <= columns:
        return f"no '{TABLE}' table of runs"
    return None


def _warn(path: Path, exc: BaseException | str) -> None:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    print(f"perfctl: warning: run registry {path} not updated: {reason}", file=sys.stderr)


def _note(why_not: str | None) -> None:
    print(f"perfctl: note: run registry not updated: {why_not}", file=sys.stderr)


def _write(path: Path, row: dict[str, Any], replace: bool) -> bool:
    """Insert (replace: the whole row) or update one run's row; a failure is a warning, never raised."""
    import sqlite_utils  # imports pandas when present: only when the registry is written

    try:
        db = sqlite_utils.Database(sqlite3.connect(path, timeout=BUSY_TIMEOUT_S))
        try:
            # the write lock first, so that concurrent writers wait their turn (busy timeout) instead of
            # one failing on a read lock it cannot upgrade
            db.conn.execute("BEGIN IMMEDIATE")
            table = db.table(TABLE)
            table.create(COLUMNS, pk="run_id", if_not_exists=True)
            if replace:
                table.insert(row, pk="run_id", replace=True, alter=True)
            else:
                table.upsert(row, pk="run_id", alter=True)
            db.conn.execute("COMMIT")
        finally:
            db.close()  # closing without COMMIT rolls back
    except Exception as exc:  # an index must never fail the run it indexes
        _warn(path, exc)
        return False
    return True


def _gpu(manifest: dict[str, Any]) -> str | None:
    """The GPU the run used: the driver's report once it ran; before, NVML's for a GPU device."""
    driver = manifest.get("driver") or {}
    if driver:
        return driver.get("gpu_name")
    device = str((manifest.get("workload") or {}).get("device", ""))
    gpus = (manifest.get("host") or {}).get("gpus_nvml")
    if device == "cpu" or not isinstance(gpus, list) or not gpus:
        return None
    numbered = re.fullmatch(r"cuda:(\d+)", device)
    index = int(numbered.group(1)) if numbered else 0
    return next((g.get("name") for g in gpus if g.get("index") == index), None)


def capture_row(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The capture columns of a run, from its manifest."""
    workload = manifest.get("workload") or {}
    driver = manifest.get("driver") or {}
    return {
        "run_id": run_dir.name,  # = the manifest's at capture; unique in its folder even when copied
        "path": str(run_dir.resolve()),
        "started_at": manifest.get("started_at"),
        "finished_at": manifest.get("finished_at"),
        "status": manifest.get("status"),
        "reason": manifest.get("reason"),
        "model": (manifest.get("model_spec") or {}).get("name"),
        "gpu": _gpu(manifest),
        "device": driver.get("device") or workload.get("device"),
        "pages_expected": manifest.get("pages_expected"),
        "pages_completed": manifest.get("pages_completed"),
        "max_new_tokens": workload.get("max_new_tokens"),
        "tiles": workload.get("tiles", 0),
        "host": (manifest.get("host") or {}).get("hostname"),
        "perfctl_version": manifest.get("perfctl_version"),
    }


def ended_by(exc: BaseException) -> dict[str, str]:
    """Status and reason of a capture that an exception ended."""
    if isinstance(exc, KeyboardInterrupt):
        return {"status": "interrupted", "reason": "interrupted by the user (Ctrl-C)"}
    text = " ".join(str(exc).split())
    return {"status": "failed", "reason": f"{type(exc).__name__}: {text}" if text else type(exc).__name__}


def record_capture(
    run_dir: Path, manifest: dict[str, Any], profiles_root: Path | None, started: bool = False
) -> bool:
    """Record a capture: `started` when its run folder was just made (a fresh row: a replaced run
    folder's old analysis goes with it), else its outcome. False when not recorded: a warning when
    the registry could not be written, a note (once, with `started`) when the run folder is in no
    profiles folder (`registry_for`)."""
    placement = registry_for(run_dir, profiles_root)
    if placement.path is None:
        if started:
            _note(placement.why_not)
        return False
    return _write(placement.path, capture_row(run_dir, manifest), replace=started)


def record_capture_failure(
    run_dir: Path, manifest: dict[str, Any], exc: BaseException, profiles_root: Path | None
) -> bool:
    """Record a capture that an exception ended: the manifest on disk when it says how it ended,
    else failed or interrupted with the exception as the reason."""
    on_disk = RunFolder(run_dir).read_manifest().data
    if on_disk is not None and on_disk.get("status") not in (None, "running"):
        return record_capture(run_dir, on_disk, profiles_root)
    return record_capture(run_dir, manifest | ended_by(exc), profiles_root)


def analysis_row(analysis: Analysis) -> dict[str, Any]:
    """The headline metrics of an analysis: stage times per page (mean), MFU, kernels, wall time."""
    from perfctl.analysis.compare import headline_times  # analysis code: not loaded for a capture

    source, times = headline_times(analysis)
    eff = analysis.get("efficiency")
    stages = (eff.get("stages") if eff else None) or {}
    mfu = {s: figures.get("mfu") if (figures := stages.get(s)) else None for s in STAGES}
    mfu["page"] = page.get("mfu") if eff and (page := eff.get("page")) else None
    pages = analysis.get("pages") or []
    return {
        "analyzed_at": utc_now(),
        "time_source": source,
        **{f"{s}_mean_ns": (times[s].mean if times else None) for s in (*STAGES, "page")},
        **{f"{s}_mfu": (mfu[s] if eff and eff.get("available") else None) for s in (*STAGES, "page")},
        "kernel_count": totals.get("kernels") if (totals := analysis.get("totals")) else None,
        "wall_ns": sum(int(p["wall_ns"]) for p in pages) if pages else None,
    }


def record_analysis(
    run_dir: Path, analysis: Analysis, analysis_path: Path, profiles_root: Path | None
) -> bool:
    """Record an analysis of a perfctl run folder (one with a usable manifest.json; other exports are
    no run and are not recorded). False (and a warning, or a note) when not recorded."""
    placement = registry_for(run_dir, profiles_root)
    if placement.path is None:
        _note(placement.why_not)
        return False
    path = placement.path
    found = RunFolder(run_dir).read_manifest()
    if found.data is None:
        _warn(path, f"{found.path} is {'missing' if not found.present else 'unusable'}")
        return False
    try:
        row = capture_row(run_dir, found.data) | analysis_row(analysis)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        _warn(path, exc)
        return False
    row["analysis_path"] = str(analysis_path.resolve())
    return _write(path, row, replace=False)


def parse_since(text: str) -> str:
    """`--since` (an ISO date or date and time; UTC unless it says otherwise) as a UTC ISO string."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--since {text!r} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def list_runs(
    profiles: Path,
    model: str | None = None,
    status: str | None = None,
    gpu: str | None = None,
    since: str | None = None,
) -> list[dict[str, Any]]:
    """The recorded runs of a profiles folder, newest first: model and status exactly, `gpu` as a
    case-insensitive part of the GPU name, `since` (parse_since) on the start time. The registry is
    opened read-only: listing never creates or changes it."""
    import sqlite_utils

    if status is not None and status not in STATUSES:
        raise BadInput(f"--status must be one of {', '.join(STATUSES)}, got {status!r}")
    if not profiles.is_dir():
        raise BadInput(f"no such profiles folder: {profiles}")
    path = profiles / INDEX_FILE
    if not os.path.lexists(path):
        return []
    problem = registry_problem(path)
    if problem is not None:
        raise BadInput(f"{path} is not a readable run registry: {problem}")
    where, params = [], []
    for clause, value in (
        ("model = ?", model),
        ("status = ?", status),
        ("lower(gpu) like ?", f"%{gpu.lower()}%" if gpu else None),
        ("started_at >= ?", parse_since(since) if since else None),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    sql = f"select * from {TABLE}" + (f" where {' and '.join(where)}" if where else "")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            db = sqlite_utils.Database(conn)
            if not db.table(TABLE).exists():
                return []
            rows = [dict(r) for r in db.query(sql + " order by started_at desc, run_id", params)]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BadInput(f"{path} is not a readable run registry: {' '.join(str(exc).split())}") from None
    for row in rows:
        _check_row(path, row)
    return rows


# what a column's value may be, by its declared type (null is always allowed: not known yet)
_COLUMN_KINDS: dict[type, tuple[type, ...]] = {str: (str,), int: (int,), float: (int, float)}
SHOWN_VALUE = 60  # characters of a bad value shown in the refusal


def _check_row(path: Path, row: dict[str, Any]) -> None:
    """Refuse a row whose value is not of its column's type: the table would print it as a figure."""
    for column, kind in COLUMNS.items():
        value = row.get(column)
        if value is None or (isinstance(value, _COLUMN_KINDS[kind]) and not isinstance(value, bool)):
            continue
        shown = repr(value)
        shown = shown if len(shown) <= SHOWN_VALUE else shown[: SHOWN_VALUE - 3] + "..."
        raise BadInput(
            f"{path} is not a readable run registry: run {str(row.get('run_id'))[:SHOWN_VALUE]!r} has "
            f"{shown} in {column}, a {'text' if kind is str else 'number'} column"
        )
