"""`perfctl analyze PATH`: find the export behind PATH, analyze it, write analysis.json, report.html and
summary.md.

PATH may be a `.sqlite` export, a `.nsys-rep` (exported to SQLite beside it first, which needs nsys),
or a run folder made by `perfctl capture` (its run.sqlite, or its run.nsys-rep). Outputs go beside
the export unless another folder is given; the export itself is opened read-only and never changed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfctl import __version__, progress
from perfctl.analysis.analyze import analyze_export
from perfctl.analysis.completion import with_expected_pages
from perfctl.analysis.efficiency import efficiency
from perfctl.analysis.findings import cost_centres, findings
from perfctl.analysis.lazy_loading import first_use_evidence
from perfctl.analysis.operators import join_operators_to_kernels
from perfctl.analysis.repeatability import CLEAN_PASS_DIR, load_clean_pass, timing_statistics
from perfctl.analysis.telemetry import page_telemetry
from perfctl.capture.manifest import write_json_atomic, write_text_atomic
from perfctl.capture.nsys import find_nsys
from perfctl.capture.run import REPORT_BASE, profiled_page_count
from perfctl.capture.run_folder import capture_running_in
from perfctl.errors import BadInput, OutputFailed
from perfctl.hardware.calibrate import CALIBRATION_FILE, Calibration, load_calibration
from perfctl.nsys_export.events import kernel_mangled_names
from perfctl.nsys_export.schema import connect_readonly, read_schema
from perfctl.records import read_page_records
from perfctl.report.html import render_html
from perfctl.report.markdown import render_markdown


@dataclass(frozen=True)
class AnalyzeResult:
    export: Path
    analysis: dict[str, Any]
    json_path: Path
    html_path: Path
    summary_path: Path


def locate_export(path: Path, nsys_path: str | None = None) -> Path:
    """The SQLite export to read for PATH, exporting a .nsys-rep first when that is all there is (and
    importing nsys's raw stream, .qdstrm, first when nsys could not: its importer was missing)."""
    if not path.exists():
        raise BadInput(f"no such file or folder: {path}")
    if path.is_dir():
        sqlite, report = path / f"{REPORT_BASE}.sqlite", path / f"{REPORT_BASE}.nsys-rep"
        qdstrm = path / f"{REPORT_BASE}.qdstrm"
        if sqlite.is_file():
            return sqlite
        if report.is_file():
            return _export(report, nsys_path)
        stream = _stream_left_elsewhere(path)
        if qdstrm.is_file() or stream is not None:
            find_nsys(nsys_path).import_qdstrm(qdstrm if qdstrm.is_file() else stream or qdstrm, report)
            return _export(report, nsys_path)
        found = sorted(path.glob("*.sqlite")) or sorted(path.glob("*.nsys-rep"))
        if len(found) == 1:
            return found[0] if found[0].suffix == ".sqlite" else _export(found[0], nsys_path)
        failed = _failed_capture(path)
        if failed:
            raise BadInput(f"{path} holds no nsys report to analyze: its capture {failed}")
        raise BadInput(
            f"{path} holds no {REPORT_BASE}.sqlite / {REPORT_BASE}.nsys-rep (is it a perfctl run folder?)"
        )
    if path.suffix == ".nsys-rep":
        return _export(path, nsys_path)
    if path.suffix == ".qdstrm":
        report = path.with_suffix(".nsys-rep")
        find_nsys(nsys_path).import_qdstrm(path, report)
        return _export(report, nsys_path)
    return path


def _stream_left_elsewhere(run_dir: Path) -> Path | None:
    """The raw stream nsys could not move into the run folder, where the capture found it (manifest)."""
    left = ((read_manifest(run_dir / "manifest.json") or {}).get("nsys") or {}).get("stream_left_at")
    return Path(left) if left and Path(left).is_file() else None


def _failed_capture(run_dir: Path) -> str | None:
    """'failed: <reason>' from a run folder's manifest when its capture did not end well, else None."""
    manifest = read_manifest(run_dir / "manifest.json")
    if manifest is None or manifest.get("status") in (None, "ok"):
        return None
    return f"{manifest['status']}: {manifest.get('reason') or 'no reason recorded'}"


def _export(report: Path, nsys_path: str | None) -> Path:
    sqlite = report.with_suffix(".sqlite")
    if sqlite.is_file() and sqlite.stat().st_mtime >= report.stat().st_mtime:
        return sqlite
    progress.step(f"export: {report.name} to SQLite")
    find_nsys(nsys_path).export_sqlite(report, sqlite)
    return sqlite


def read_manifest(export: Path) -> dict[str, Any] | None:
    """The manifest.json beside an export (or `export` itself when it is one); None when absent."""
    return _json_object(export if export.name == "manifest.json" else export.parent / "manifest.json")


def _fill_unfinished(manifest: dict[str, Any], run_dir: Path) -> None:
    """A capture that never recorded its outcome (perfctl itself killed, or still running) left a
    manifest without it: take what the run folder shows instead (in memory; the file is not changed)."""
    workload = manifest.get("workload") or {}
    manifest.setdefault("reason", None)
    manifest.setdefault("driver", _json_object(run_dir / "driver-info.json"))
    manifest.setdefault("pages_completed", len(read_page_records(run_dir / "pages.jsonl")))
    manifest.setdefault("pages_expected", profiled_page_count(workload, len(manifest.get("pages") or [])))


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def analyze_path(
    path: Path,
    nsys_path: str | None = None,
    top_n: int = 10,
    out_dir: Path | None = None,
    allow_no_kernels: bool = False,
    peak_tflops: float | None = None,
    peak_bandwidth_gbs: float | None = None,
    calibration: Path | None = None,
) -> AnalyzeResult:
    """Analyze an export, report or run folder and write analysis.json, report.html and summary.md.

    An export with nothing to attribute is refused (BadInput): no NVTX ranges at all, or no CUDA
    kernels -- unless kernels are not expected: `allow_no_kernels`, or the run's manifest says the
    workload ran on the CPU (then the report holds NVTX wall times only, and says so).
    `calibration`: a `perfctl calibrate` file for MFU/MBU against measured ceilings (default: the run
    folder's calibration.json, when capture --calibrate stored one).
    """
    check_peaks(peak_tflops, peak_bandwidth_gbs)
    if (
        path.is_dir()
        and (run_manifest := read_manifest(path / "manifest.json"))
        and run_manifest.get("tool") == "torch"
    ):
        return _analyze_torch_run(path, run_manifest, out_dir)
    export = locate_export(path, nsys_path)
    measured = _calibration(calibration, export.parent)
    progress.step(f"reading {export}")
    analysis = analyze_export(export, top_n=top_n)
    manifest = read_manifest(export)
    if manifest is not None and manifest.get("status") == "running":
        _fill_unfinished(manifest, export.parent)
    _check_attributable(export, analysis, manifest, allow_no_kernels)
    if manifest is not None:
        analysis["run"] = _run_identity(manifest)
        analysis["warnings"] += with_expected_pages(analysis["completion"], manifest.get("pages_expected"))
        if manifest.get("status") == "running":
            analysis["warnings"].append(
                "a capture is still writing this run: what is analyzed is what it has written so far"
                if capture_running_in(export.parent)
                else "the capture ended without recording how (perfctl itself was killed): the manifest "
                "still says running"
            )
        clean = load_clean_pass(export.parent, manifest)
        first_use = first_use_evidence(export, analysis["warnings"])  # lazy kernel loading in pages
        analysis["first_use"] = first_use.to_json()
        if clean is not None:
            analysis["timing"] = {
                "pass": "clean",
                "statistics": timing_statistics(clean.records, first_use=first_use),
                "telemetry": page_telemetry(
                    export.parent / CLEAN_PASS_DIR / "telemetry.jsonl",
                    clean.records,
                    clean.info.get("telemetry"),
                ),
            }
        if (manifest.get("nsys") or {}).get("telemetry"):
            analysis["nsys_pass"] = {
                "telemetry": page_telemetry(
                    export.parent / "telemetry.jsonl",
                    read_page_records(export.parent / "pages.jsonl"),
                    (manifest.get("driver") or {}).get("telemetry"),
                )
            }
        operators = export.parent / "torch" / "operators.json"
        if (manifest.get("torch") or {}).get("status") == "ok" and operators.is_file():
            analysis["operators"] = {
                "source": "torch.profiler pass (torch/operators.json)",
                "stages": join_operators_to_kernels(
                    json.loads(operators.read_text()), analysis["stages"], _mangled_names(export)
                ),
            }
        pages = max(len(analysis["pages"]), 1)
        under_nsys = {s["stage"]: s["wall_ns"] / pages for s in analysis["stages"]}
        nsys_pages = {
            int(r["page_index"])
            for r in read_page_records(export.parent / "pages.jsonl")
            if not r.get("warmup") and "page_index" in r
        }
        try:
            analysis["efficiency"] = efficiency(
                clean,
                manifest,
                under_nsys,
                peak_tflops,
                peak_bandwidth_gbs,
                export.parent,
                measured,
                nsys_pages,
            )
        except ValueError as exc:  # an override that is not a positive number
            raise BadInput(str(exc)) from None
    analysis["cost_centres"] = cost_centres(analysis)
    analysis["findings"] = findings(analysis)
    target = export.parent if out_dir is None else out_dir
    progress.step(f"writing {target / 'analysis.json'}, report.html and summary.md")
    return _write_outputs(export, analysis, manifest, target)


RUN_IDENTITY_KEYS = (
    "run_id",
    "tool",
    "status",
    "reason",
    "pages_completed",
    "pages_expected",
    "model_spec",
    "workload",
    "driver",
)


def _run_identity(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: manifest.get(k) for k in RUN_IDENTITY_KEYS}


def _analyze_torch_run(run_dir: Path, manifest: dict[str, Any], out_dir: Path | None) -> AnalyzeResult:
    """A run captured with --tool torch: the operator tables of its torch.profiler pass, alone. There
    is no nsys export, so nothing is attributed to NVTX ranges and no kernel is joined to nsys."""
    torch_pass = manifest.get("torch") or {}
    operators = run_dir / "torch" / "operators.json"
    if torch_pass.get("status") != "ok" or not operators.is_file():
        why = torch_pass.get("reason") or manifest.get("reason") or "torch/operators.json is missing"
        raise BadInput(f"{run_dir}: its torch.profiler pass did not finish: {why}")
    info = run_dir / "torch" / "driver-info.json"
    if "driver" not in manifest and info.is_file():  # captured before capture recorded these
        manifest = manifest | {"driver": json.loads(info.read_text())}
    done = {k: torch_pass.get(k) for k in ("pages_completed", "pages_expected", "reason")}
    manifest = done | manifest
    analysis: dict[str, Any] = {
        "perfctl_version": __version__,
        "source": "torch.profiler pass alone (captured with --tool torch): operators per stage, no nsys "
        "export, so no kernel attribution to NVTX ranges",
        "run": _run_identity(manifest),
        "operators": {
            "source": "torch.profiler pass (torch/operators.json)",
            "stages": json.loads(operators.read_text()),
        },
        "trace": str(run_dir / "torch" / "trace.json.gz"),
        "warnings": [],
    }
    analysis["findings"] = findings(analysis)
    return _write_outputs(operators, analysis, manifest, run_dir if out_dir is None else out_dir)


def _write_outputs(
    source: Path, analysis: dict[str, Any], manifest: dict[str, Any] | None, target: Path
) -> AnalyzeResult:
    """analysis.json, report.html and summary.md into `target`, each complete or not at all."""
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFailed(f"cannot create {target}: {exc.strerror or exc}") from None
    json_path, html_path, summary_path = (target / n for n in ("analysis.json", "report.html", "summary.md"))
    write_json_atomic(json_path, analysis)
    write_text_atomic(html_path, render_html(analysis, manifest))
    write_text_atomic(summary_path, render_markdown(analysis))
    return AnalyzeResult(source, analysis, json_path, html_path, summary_path)


def _calibration(path: Path | None, run_dir: Path) -> tuple[Calibration, str] | None:
    """The measured ceilings to use and where they came from: the file given, else the run folder's."""
    if path is None and (run_dir / CALIBRATION_FILE).is_file():
        path = run_dir / CALIBRATION_FILE
    return None if path is None else (load_calibration(path), str(path))


# What an override may be: above any GPU's dense peak by far is a typo, not a GPU (B200: ~2,250 dense
# bf16 TFLOP/s, 8 TB/s).
PEAK_LIMITS = {"--peak-tflops": 100_000.0, "--peak-bandwidth-gbs": 1_000_000.0}


def check_peaks(peak_tflops: float | None, peak_bandwidth_gbs: float | None) -> None:
    """Refuse a peak override that is not a positive, finite, believable number, before any work."""
    for flag, value in (("--peak-tflops", peak_tflops), ("--peak-bandwidth-gbs", peak_bandwidth_gbs)):
        if value is not None and not (math.isfinite(value) and 0 < value <= PEAK_LIMITS[flag]):
            raise BadInput(
                f"{flag} must be a number above 0 and at most {PEAK_LIMITS[flag]:,.0f}, got {value}"
            )


def _check_attributable(
    export: Path, analysis: dict[str, Any], manifest: dict[str, Any] | None, allow_no_kernels: bool
) -> None:
    totals = analysis["totals"]
    if totals["nvtx_ranges"] == 0:
        raise BadInput(
            f"{export} holds no NVTX push/pop or start/end ranges, so there is nothing to attribute GPU "
            "work to (capture with --trace including nvtx; nsys 2022.4-2024.2 see only nvtx < 0.2.12)"
        )
    # the device the driver really used (`--device auto` resolves there), else the one asked for
    m = manifest or {}
    ran_on_cpu = ((m.get("driver") or {}).get("device") or (m.get("workload") or {}).get("device")) == "cpu"
    if totals["kernels"] == 0 and not (allow_no_kernels or ran_on_cpu):
        raise BadInput(
            f"{export} holds no CUDA kernels (a CPU-only run, --trace without cuda, or an nsys whose "
            "CUPTI is older than the program's CUDA); --allow-no-kernels reports NVTX wall times alone"
        )


def _mangled_names(export: Path) -> dict[str, str]:
    conn = connect_readonly(export)
    try:
        return kernel_mangled_names(conn, read_schema(conn, export))
    finally:
        conn.close()
