"""Which SQLite export `perfctl analyze PATH` reads, and whether it provably comes from the report.

A `.sqlite` beside a `.nsys-rep` need not be its export: an older capture under the same name, a copy,
another tool's output. nsys records no digest of its input in the export (`EXPORT_META_DATA` /
`META_DATA_EXPORT` hold the input's path and the export time, nothing that survives a copy or tells two
reports at one path apart), so perfctl reads a `.sqlite` for a report only when something ties them:

- perfctl exported it: beside every export (and import) it makes, perfctl writes `<file>.source.json`,
  the source's size, mtime and sha256 and the output's size and mtime. The output is fresh while the
  source still has that size and sha256 and the output is unchanged;
- the capture did: in a run folder, `run.sqlite` written by `nsys profile --export=sqlite` beside
  `run.nsys-rep`, both at the sizes the manifest's `files` recorded when the capture ended.

Anything else is not provably fresh: the report is exported again, into the plain name
(`<stem>.sqlite`) when nothing is there or perfctl wrote what is there, else into perfctl's own name
(`<stem>.perfctl.sqlite`). A file perfctl did not write is never overwritten or deleted. With
`--out-dir`, a new export (or import) goes there and the input folder is not written. The same holds
for importing nsys's raw stream (`.qdstrm`) into a report. `analysis.json`'s `export.source` says which
file was read and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfctl import __version__, progress
from perfctl.capture.nsys import NsysCouldNotRead, find_nsys
from perfctl.errors import BadInput, OutputFailed
from perfctl.files import file_sha256, utc_now, write_json_atomic
from perfctl.run_folder import EXPORT_SUFFIX, REPORT_BASE, REPORT_SUFFIX, FoundPath, RunFolder
from perfctl.run_manifest import COUNT, TEXT, Field, RecordFile, read_record

SIDECAR_SUFFIX = ".source.json"
OWN_TAG = ".perfctl"  # perfctl's own name for an export or import beside a file it did not write

_FILE_IDENTITY = Field(
    (dict,), fields={"name": TEXT, "path": TEXT, "size": COUNT, "mtime_ns": COUNT, "sha256": TEXT}
)
SIDECAR_FIELDS = {
    "written_by": TEXT,
    "at": TEXT,
    "how": TEXT,
    "source": _FILE_IDENTITY,
    "derived": _FILE_IDENTITY,
}


@dataclass(frozen=True)
class ExportPlan:
    """What to read for PATH, decided without writing anything: an export to read as it is
    (`sqlite`), else a report to export first (`report`), else a raw stream to import first
    (`stream`); new files go into `into` (None: beside their source) named `stem` (None: the source's)."""

    sqlite: Path | None = None
    report: Path | None = None
    stream: Path | None = None
    into: Path | None = None
    stem: str | None = None
    why: str = ""


def sidecar(derived: Path) -> Path:
    return derived.with_name(derived.name + SIDECAR_SUFFIX)


def _stem(path: Path) -> str:
    return path.name.removesuffix(path.suffix)


def _identity(path: Path, digest: bool) -> dict[str, Any]:
    stat = path.stat()
    out: dict[str, Any] = {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if digest:
        out["sha256"] = file_sha256(path)
    return out


def record_derivation(source: Path, derived: Path, how: str) -> None:
    """Say, beside `derived`, that perfctl just made it from `source` (see the module docstring)."""
    write_json_atomic(
        sidecar(derived),
        {
            "written_by": f"perfctl {__version__}",
            "at": utc_now(),
            "how": how,
            "source": _identity(source, digest=True) | {"path": str(source.resolve())},
            "derived": _identity(derived, digest=False),
        },
    )


def _derivation(source: Path, derived: Path) -> str:
    """'fresh': perfctl made `derived` from `source` as it is now; 'ours': perfctl made `derived` (and it
    is unchanged since) from other bytes, so perfctl may replace it; 'foreign': nothing shows perfctl
    made it (no record, or the file changed since)."""
    record = read_record(sidecar(derived), SIDECAR_FIELDS)
    made = (record.data or {}).get("derived")
    came_from = (record.data or {}).get("source")
    if not isinstance(made, dict) or not isinstance(came_from, dict) or not derived.is_file():
        return "foreign"
    now = _identity(derived, digest=False)
    if (made.get("size"), made.get("mtime_ns")) != (now["size"], now["mtime_ns"]):
        return "foreign"
    if not source.is_file() or came_from.get("size") != source.stat().st_size:
        return "ours"
    return "fresh" if came_from.get("sha256") == file_sha256(source) else "ours"


def _capture_wrote(report: Path, sqlite: Path, manifest: RecordFile) -> bool:
    """In a run folder: `sqlite` is the export nsys profile wrote beside `report` in the capture, both at
    the sizes the manifest recorded when the capture ended."""
    data = manifest.data or {}
    files = data.get("files") or {}
    exported = "--export=sqlite" in ((data.get("nsys") or {}).get("command") or [])
    return (
        exported
        and manifest.path.parent == report.parent == sqlite.parent
        and (report, sqlite) == (RunFolder(report.parent).report, RunFolder(report.parent).export)
        and files.get(report.name) == report.stat().st_size
        and files.get(sqlite.name) == sqlite.stat().st_size
    )


def _names(source: Path, suffix: str, stem: str | None) -> list[str]:
    base = stem if stem is not None else _stem(source)
    return [f"{base}{suffix}", f"{base}{OWN_TAG}{suffix}"]


def _fresh(source: Path, suffix: str, into: Path | None, stem: str | None) -> Path | None:
    """An export (import) perfctl made of `source` as it is now: beside it, or in `into`."""
    folders = dict.fromkeys([source.parent, *([into] if into is not None else [])])
    for folder in folders:
        for name in _names(source, suffix, stem):
            candidate = folder / name
            if candidate.is_file() and _derivation(source, candidate) == "fresh":
                return candidate
    return None


def target_for(source: Path, suffix: str, into: Path | None, stem: str | None) -> tuple[Path, list[Path]]:
    """Where a new export (import) of `source` goes, and the files there that perfctl leaves alone: the
    plain name in `into` (else beside the source) when free or perfctl's, else perfctl's own name."""
    folder = into if into is not None else source.parent
    left: list[Path] = []
    for name in _names(source, suffix, stem):
        target = folder / name
        if not os.path.lexists(target) or _derivation(source, target) == "ours":
            return target, left
        left.append(target)
    raise BadInput(
        f"cannot export {source}: {' and '.join(map(str, left))} exist and perfctl did not write them; "
        "pass --out-dir to export elsewhere"
    )


def plan_export(found: FoundPath, manifest: RecordFile, out_dir: Path | None = None) -> ExportPlan:
    """The export behind PATH (a .sqlite, a .nsys-rep, a .qdstrm, or a run folder: `RunFolder.find`),
    without writing: BadInput when there is none. `manifest`: its run folder's manifest."""
    path = found.path
    if found.kind == "run_folder":
        return _plan_run_folder(found.folder, manifest, out_dir)
    if found.kind == "report":
        return _plan_report(path, manifest, out_dir)
    if found.kind == "stream":
        return _plan_stream(path, manifest, out_dir, None)
    return ExportPlan(sqlite=path, why=f"{path}, the export given")


def _plan_report(report: Path, manifest: RecordFile, into: Path | None) -> ExportPlan:
    beside = report.with_suffix(EXPORT_SUFFIX)
    if beside.is_file() and _capture_wrote(report, beside, manifest):
        why = (
            f"{beside}, the run's own export (nsys profile wrote it beside {report.name}; "
            "manifest.json records both at their sizes)"
        )
        return ExportPlan(sqlite=beside, why=why)
    fresh = _fresh(report, EXPORT_SUFFIX, into, None)
    if fresh is not None:
        why = f"{fresh}, exported by perfctl from {report} (its size and sha256 unchanged since)"
        return ExportPlan(sqlite=fresh, why=why)
    return ExportPlan(report=report, into=into)


def _plan_stream(stream: Path, manifest: RecordFile, into: Path | None, stem: str | None) -> ExportPlan:
    imported = _fresh(stream, REPORT_SUFFIX, into, stem)
    if imported is not None:
        return _plan_report(imported, manifest, into)
    return ExportPlan(stream=stream, into=into, stem=stem)


def _plan_run_folder(folder: RunFolder, manifest: RecordFile, out_dir: Path | None) -> ExportPlan:
    run_dir, sqlite, report, qdstrm = folder.path, folder.export, folder.report, folder.stream
    if report.is_file():
        return _plan_report(report, manifest, out_dir)
    if sqlite.is_file():
        return ExportPlan(sqlite=sqlite, why=f"{sqlite}, the run folder's export (no report beside it)")
    if qdstrm.is_file():
        return _plan_stream(qdstrm, manifest, out_dir, None)
    left = ((manifest.data or {}).get("nsys") or {}).get("stream_left_at")
    if left and Path(left).is_file():  # nsys could not move its stream into the run folder: import it there
        return _plan_stream(Path(left), manifest, out_dir or run_dir, REPORT_BASE)
    reports = [
        p
        for p in sorted(run_dir.glob(f"*{REPORT_SUFFIX}"))
        if not p.name.endswith(f"{OWN_TAG}{REPORT_SUFFIX}")
    ]
    if len(reports) == 1:
        return _plan_report(reports[0], manifest, out_dir)
    exports = sorted(run_dir.glob(f"*{EXPORT_SUFFIX}"))
    if not reports and len(exports) == 1:
        return ExportPlan(sqlite=exports[0], why=f"{exports[0]}, the folder's only export")
    status = (manifest.data or {}).get("status")
    if status not in (None, "ok"):
        why = (manifest.data or {}).get("reason") or "no reason recorded"
        raise BadInput(f"{run_dir} holds no nsys report to analyze: its capture {status}: {why}")
    unusable = (
        f"; its manifest.json is unusable ({manifest.problems[0]})" if manifest.state == "unusable" else ""
    )
    raise BadInput(
        f"{run_dir} holds no {sqlite.name} / {report.name} (is it a perfctl run folder?){unusable}"
    )


def make_export(plan: ExportPlan, nsys_path: str | None) -> tuple[Path, str]:
    """The export to read and how it was chosen, importing and exporting as the plan says. A file
    nsys refuses is bad input (exit 2); a full disk or a timeout is not (exit 1)."""
    if plan.sqlite is not None:
        return plan.sqlite, plan.why
    if plan.into is not None:
        try:
            plan.into.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputFailed(f"cannot create {plan.into}: {exc.strerror or exc}") from None
    try:
        report, said = plan.report, ""
        if report is None:
            assert plan.stream is not None
            report, left = target_for(plan.stream, REPORT_SUFFIX, plan.into, plan.stem)
            progress.step(f"import: {plan.stream.name} into {report}")
            find_nsys(nsys_path).import_qdstrm(plan.stream, report)
            record_derivation(plan.stream, report, "QdstrmImporter")
            said = f"{report} imported now from {plan.stream}{_left_alone(left)}; "
        sqlite, left = target_for(report, EXPORT_SUFFIX, plan.into, None)
        progress.step(f"export: {report.name} to SQLite ({sqlite})")
        nsys = find_nsys(nsys_path)
        nsys.export_sqlite(report, sqlite)
        record_derivation(report, sqlite, f"nsys export --type=sqlite (nsys {nsys.version})")
    except NsysCouldNotRead as exc:
        if exc.blames_input:
            raise BadInput(str(exc)) from None
        raise
    return sqlite, f"{said}{sqlite}, exported now from {report}{_left_alone(left)}"


def _left_alone(files: list[Path]) -> str:
    if not files:
        return ""
    return (
        f" ({', '.join(f.name for f in files)} there not read: nothing shows it was made from this "
        "file, and perfctl did not write it)"
    )
