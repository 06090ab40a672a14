"""`perfctl analyze PATH`: find the export behind PATH, analyze it, write analysis.json, report.html and
summary.md.

PATH may be a `.sqlite` export, a `.nsys-rep` (exported to SQLite first, which needs nsys), or a run
folder made by `perfctl capture` (its run.sqlite, or its run.nsys-rep). Which export is read, and when a
report is exported again, is perfctl.export_source's to decide. Outputs go beside the export unless
another folder is given (`--out-dir`: a new export goes there too); the export itself is opened
read-only and never changed.

The run folder's records (manifest.json, driver-info.json, timing/driver-info.json) are read through
perfctl.run_manifest: a damaged one costs what it held (a warning names the file and the fields), never
the analysis of the export. The three outputs are rendered first and then put in place together: all
three new files, or none changed (`write_all_or_none`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from perfctl import __version__, progress
from perfctl.analysis.analyze import analyze_export
from perfctl.analysis.completion import with_expected_pages
from perfctl.analysis.cost_centres import cost_centres
from perfctl.analysis.decode_loop import decode_loop
from perfctl.analysis.efficiency import analytic_stage_flops, efficiency
from perfctl.analysis.findings import findings
from perfctl.analysis.kernel_level import NcuPassInputs, ncu_pass_or_warning
from perfctl.analysis.lazy_loading import first_use_evidence
from perfctl.analysis.operators import join_operators_to_kernels, ranked_operators
from perfctl.analysis.repeatability import CleanPass, load_clean_pass, timing_statistics
from perfctl.analysis.result import Analysis, RunIdentity, RunManifestNote, dump_analysis
from perfctl.analysis.result_passes import Efficiency
from perfctl.analysis.telemetry import page_telemetry
from perfctl.analysis.throughput import throughput
from perfctl.commands.analyze_options import DEFAULT_OPTIONS, AnalyzeOptions
from perfctl.errors import BadInput, OutputFailed
from perfctl.export_source import make_export, plan_export
from perfctl.files import disk_note
from perfctl.hardware.calibrate import Calibration, load_calibration
from perfctl.nsys_export.events import kernel_mangled_names
from perfctl.nsys_export.names import bound_strings
from perfctl.nsys_export.schema import connect_readonly, read_schema
from perfctl.records import input_index, read_page_records
from perfctl.report.html import render_html
from perfctl.report.kernels_md import render_kernels_md
from perfctl.report.markdown import render_markdown
from perfctl.run_folder import (
    ANALYSIS_FILE,
    DRIVER_INFO_FILE,
    KERNELS_FILE,
    NSYS_PASS,
    OPERATORS_FILE,
    OUTPUT_NAMES,
    PAGES_FILE,
    REPORT_HTML_FILE,
    SUMMARY_FILE,
    TIMING_PASS,
    TORCH_PASS,
    PassName,
    RunFolder,
)
from perfctl.run_manifest import RecordFile, report_view
from perfctl.shipped import read_shipped_label
from perfctl.workloads.workload import profiled_page_count

OPERATORS_SOURCE = f"torch.profiler pass ({TORCH_PASS}/{OPERATORS_FILE})"  # analysis.json operators.source


@dataclass(frozen=True)
class AnalyzeResult:
    export: Path
    analysis: Analysis
    json_path: Path
    html_path: Path
    summary_path: Path
    run_dir: Path | None = None  # the perfctl run folder analyzed (its manifest usable), for the registry
    kernels_path: Path | None = None  # kernels.md, when the run has an Nsight Compute pass


def _fill_unfinished(manifest: dict[str, Any], run_dir: Path, warnings: list[str]) -> None:
    """A capture that never recorded its outcome (perfctl itself killed, or still running) left a
    manifest without it: take what the run folder shows instead (in memory; the file is not changed)."""
    workload = manifest.get("workload") or {}
    manifest.setdefault("reason", None)
    if "driver" not in manifest:
        info = RunFolder(run_dir).nsys_pass.read_driver_info()
        manifest["driver"] = info.data
        warnings += [w for w in [info.warning()] if w]
    manifest.setdefault("pages_completed", len(_page_records(RunFolder(run_dir).nsys_pass.pages, warnings)))
    manifest.setdefault("pages_expected", profiled_page_count(workload, len(manifest.get("pages") or [])))


def _driver_from_info(manifest: dict[str, Any], run_dir: Path, warnings: list[str]) -> None:
    """The manifest's driver record was unusable: the driver's own driver-info.json says the same (the
    capture copied it into the manifest), so it is used instead when it is there, and said so."""
    info = RunFolder(run_dir).nsys_pass.read_driver_info()
    warnings += [w for w in [info.warning()] if w]
    if info.data is not None:
        manifest["driver"] = info.data
        warnings.append(f"the driver's record is taken from {info.path} (the manifest's is unusable)")


def _page_records(path: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """A pass's page records; a damaged pages.jsonl is a warning and no records, not a failure."""
    try:
        return read_page_records(path)
    except (OSError, ValueError) as exc:
        warnings.append(f"{path} cannot be read ({' '.join(str(exc).split())}): its pages are left out")
        return []


PASSES: tuple[PassName, ...] = (NSYS_PASS, TIMING_PASS, TORCH_PASS)  # the passes that run the driver


def _pass_records(
    folder: RunFolder, name: PassName, warnings: list[str]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """A pass's driver-info.json (None: absent or unusable) and measured page records."""
    pass_folder = folder.pass_folder(name)
    return pass_folder.read_driver_info().data, _page_records(pass_folder.pages, warnings)


def checked_clean_pass(run_dir: Path, manifest: dict[str, Any]) -> tuple[CleanPass | None, list[str]]:
    """The run's clean timing pass (repeatability.load_clean_pass) with its driver-info.json checked
    (run_manifest), and the warnings about what was left out of it."""
    info = RunFolder(run_dir).timing.read_driver_info()
    warnings = [w for w in [info.warning()] if w]
    if info.state == "unusable":
        return None, [*warnings, "the clean timing pass is left out: what its driver saw is unknown"]
    try:
        clean = load_clean_pass(run_dir, manifest)
    except (OSError, ValueError) as exc:  # its pages.jsonl is damaged
        reason = " ".join(str(exc).split())
        return None, [*warnings, f"the clean timing pass is left out: {TIMING_PASS}/{PAGES_FILE}: {reason}"]
    return (None if clean is None else replace(clean, info=info.data or {})), warnings


def clean_efficiency(
    clean: CleanPass | None, manifest: dict[str, Any], run_dir: Path, **kwargs: Any
) -> Efficiency:
    """analysis.efficiency.efficiency, unless the clean pass's driver-info.json does not say which
    device it ran on (then MFU is unknown, not a CPU's)."""
    if clean is not None and not isinstance(clean.info.get("device"), str):
        return {
            "available": False,
            "reason": f"MFU not computed: {TIMING_PASS}/{DRIVER_INFO_FILE} does not say which device "
            "the clean pass ran on",
        }
    return efficiency(clean, manifest, run_dir=run_dir, **kwargs)


def manifest_note(manifest: RecordFile, warnings: list[str]) -> RunManifestNote:
    """analysis.json's `run_manifest`: the run folder's manifest.json, what became of it (`state`: ok,
    partial or unusable; `problems`: the fields left out), and every warning about the run folder's
    records (the manifest, driver-info.json, timing/, torch/operators.json), as in `warnings`."""
    return {
        "path": str(manifest.path),
        "state": manifest.state,
        "problems": manifest.problems,
        "record_warnings": list(warnings),
    }


def analyze_path(path: Path, options: AnalyzeOptions = DEFAULT_OPTIONS) -> AnalyzeResult:
    """Analyze an export, report or run folder and write analysis.json, report.html and summary.md.

    An export with nothing to attribute is refused (BadInput): no NVTX ranges at all, or no CUDA
    kernels -- unless kernels are not expected: `options.allow_no_kernels`, or the run's manifest says
    the workload ran on the CPU (then the report holds NVTX wall times only, and says so).
    `options.calibration`: a `perfctl calibrate` file for MFU/MBU against measured ceilings (default:
    the run folder's calibration.json, when capture --calibrate stored one).
    """
    given = RunFolder.find(path)
    run_dir = given.folder.path
    found = given.folder.read_manifest()
    manifest = found.data
    if given.kind == "run_folder" and manifest is not None and manifest.get("tool") == "torch":
        return _analyze_torch_run(path, found, options.out_dir)
    export, how = make_export(plan_export(given, found, options.out_dir), options.nsys_path)
    measured = _calibration(options.calibration, run_dir)
    progress.step(f"reading {export}")
    analysis = analyze_export(export, top_n=options.top_n)
    analysis["export"]["source"] = how
    warnings: list[str] = []  # what the run folder's records lacked (a damaged file, a field left out)
    if found.present:
        warnings += [w for w in [found.warning()] if w]
    if manifest is not None and manifest.get("status") == "running":
        _fill_unfinished(manifest, run_dir, warnings)
    elif manifest is not None and found.dropped("driver"):
        _driver_from_info(manifest, run_dir, warnings)
    _check_attributable(export, analysis, found, options.allow_no_kernels)
    if manifest is not None:
        analysis["run"] = _run_identity(manifest)
        shipped = read_shipped_label(given.folder)
        if shipped is not None:
            analysis["shipped"] = shipped
        analysis["warnings"] += with_expected_pages(analysis["completion"], manifest.get("pages_expected"))
        if manifest.get("status") == "running":
            analysis["warnings"].append(
                "a capture is still writing this run: what is analyzed is what it has written so far"
                if given.folder.capture_running()
                else "the capture ended without recording how (perfctl itself was killed): the manifest "
                "still says running"
            )
        clean, said = checked_clean_pass(run_dir, manifest)
        warnings += said
        first_use = first_use_evidence(export, run_dir, warnings)  # lazy kernel loading in pages
        analysis["first_use"] = first_use.to_json()
        if clean is not None:
            analysis["timing"] = {
                "pass": "clean",
                "statistics": timing_statistics(
                    clean.records, first_use=first_use, device=clean.info.get("device")
                ),
                "telemetry": page_telemetry(
                    given.folder.timing.telemetry,
                    clean.records,
                    clean.info.get("telemetry"),
                ),
            }
        nsys_records = _page_records(given.folder.nsys_pass.pages, warnings)
        rate = throughput(clean.records, "timing") if clean is not None else throughput(nsys_records, "nsys")
        if rate is not None:
            analysis["throughput"] = rate
        if (manifest.get("nsys") or {}).get("telemetry"):
            analysis["nsys_pass"] = {
                "telemetry": page_telemetry(
                    given.folder.nsys_pass.telemetry,
                    nsys_records,
                    (manifest.get("driver") or {}).get("telemetry"),
                )
            }
        loop = decode_loop(manifest, {name: _pass_records(given.folder, name, warnings) for name in PASSES})
        if loop is not None:  # --decode static / compiled: the cache used, and what dynamo compiled when
            analysis["decode_loop"] = loop
        operators = _operators(run_dir, manifest, warnings)
        if operators is not None:
            analysis["operators"] = {
                "source": OPERATORS_SOURCE,
                "stages": join_operators_to_kernels(operators, analysis["stages"], _mangled_names(export)),
            }
        pages = max(len(analysis["pages"]), 1)
        under_nsys = {s["stage"]: s["wall_ns"] / pages for s in analysis["stages"]}
        nsys_pages = {
            int(input_index(r))
            for r in nsys_records
            if not r.get("warmup") and isinstance(input_index(r), int)
        }
        try:
            analysis["efficiency"] = clean_efficiency(
                clean,
                manifest,
                run_dir,
                stages_under_nsys=under_nsys,
                peak_tflops=options.peak_tflops,
                bandwidth_gbs=options.peak_bandwidth_gbs,
                calibration=measured,
                nsys_page_indices=nsys_pages,
            )
        except ValueError as exc:  # an override that is not a positive number
            raise BadInput(str(exc)) from None
        if given.folder.ncu.ncu_report.is_file():
            progress.step(f"reading {given.folder.ncu.ncu_report}")
            driver = manifest.get("driver") or {}
            ncu_inputs = NcuPassInputs(
                given.folder,
                export,
                analytic_stage_flops(run_dir, manifest, nsys_records, driver),
                str(driver.get("dtype") or "bfloat16"),
                peak_tflops=options.peak_tflops,
                bandwidth_gbs=options.peak_bandwidth_gbs,
                run_gpu=driver.get("gpu_name") if isinstance(driver.get("gpu_name"), str) else None,
            )
            kernel_level = ncu_pass_or_warning(ncu_inputs, analysis)
            if kernel_level is not None:
                analysis["ncu"] = kernel_level
    analysis["warnings"] += warnings
    if found.present:
        analysis["run_manifest"] = manifest_note(found, warnings)
    analysis["cost_centres"] = cost_centres(analysis)
    analysis["findings"] = findings(analysis)
    target = export.parent if options.out_dir is None else options.out_dir
    progress.step(f"writing {target / ANALYSIS_FILE}, {REPORT_HTML_FILE} and {SUMMARY_FILE}")
    result = _write_outputs(export, analysis, _report_run(found, manifest), target)
    return replace(result, run_dir=run_dir if manifest is not None else None)


def _operators(run_dir: Path, manifest: dict[str, Any], warnings: list[str]) -> dict[str, Any] | None:
    """The torch.profiler pass's operators.json when that pass ended well; a damaged one is a warning."""
    path = RunFolder(run_dir).torch.operators
    if (manifest.get("torch") or {}).get("status") != "ok" or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        warnings.append(f"{path} cannot be read ({' '.join(str(exc).split())}): no operator tables")
        return None
    if not isinstance(data, dict):
        warnings.append(f"{path} is not a JSON object: no operator tables")
        return None
    bounded: dict[str, Any] = bound_strings(data)  # operator and kernel names of any length: bounded
    return bounded


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


def _run_identity(manifest: dict[str, Any]) -> RunIdentity:
    return cast(RunIdentity, {k: manifest.get(k) for k in RUN_IDENTITY_KEYS})


def _report_run(found: RecordFile, manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the HTML report's run identity is rendered from: the usable manifest (every field its
    template shows there, null when unknown), an empty identity for one that is there but unusable
    (the report's warnings say why), None when there is none."""
    driver_unknown = found.state == "unusable" or found.dropped("driver")
    if manifest is not None:
        return report_view(manifest, driver_unknown)
    return report_view({}, driver_unknown) if found.present else None


def _analyze_torch_run(run_dir: Path, found: RecordFile, out_dir: Path | None) -> AnalyzeResult:
    """A run captured with --tool torch: the operator tables of its torch.profiler pass, alone. There
    is no nsys export, so nothing is attributed to NVTX ranges and no kernel is joined to nsys."""
    manifest = found.data or {}
    torch_pass = manifest.get("torch") or {}
    path = RunFolder(run_dir).torch.operators
    if torch_pass.get("status") != "ok" or not path.is_file():
        why = (
            torch_pass.get("reason") or manifest.get("reason") or f"{TORCH_PASS}/{OPERATORS_FILE} is missing"
        )
        raise BadInput(f"{run_dir}: its torch.profiler pass did not finish: {why}")
    warnings = [w for w in [found.warning()] if w]
    operators = _operators(run_dir, manifest, warnings)
    if operators is None:  # the operator tables are all this run has
        raise BadInput(f"{run_dir}: nothing to analyze: {warnings[-1]}")
    if "driver" not in manifest:  # captured before capture recorded these
        info = RunFolder(run_dir).torch.read_driver_info()
        warnings += [w for w in [info.warning()] if w]
        if info.data is not None:
            manifest = manifest | {"driver": info.data}
    done = {k: torch_pass.get(k) for k in ("pages_completed", "pages_expected", "reason")}
    manifest = done | manifest
    analysis: Analysis = {
        "perfctl_version": __version__,
        "source": "torch.profiler pass alone (captured with --tool torch): operators per stage, no nsys "
        "export, so no kernel attribution to NVTX ranges",
        "run": _run_identity(manifest),
        "run_manifest": manifest_note(found, warnings),
        "operators": {"source": OPERATORS_SOURCE, "stages": ranked_operators(operators)},
        "trace": str(RunFolder(run_dir).torch.torch_trace_gz),
        "warnings": warnings,
    }
    analysis["findings"] = findings(analysis)
    result = _write_outputs(path, analysis, report_view(manifest), run_dir if out_dir is None else out_dir)
    return replace(result, run_dir=run_dir)


def _write_outputs(
    source: Path, analysis: Analysis, report_run: dict[str, Any] | None, target: Path
) -> AnalyzeResult:
    """analysis.json, report.html and summary.md into `target`: all three rendered first, then put in
    place together (all three new, or none changed)."""
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFailed(f"cannot create {target}: {exc.strerror or exc}") from None
    json_path, html_path, summary_path = (target / n for n in OUTPUT_NAMES)
    kernels_path = target / KERNELS_FILE if analysis.get("ncu") else None
    try:
        texts = {
            json_path: dump_analysis(analysis),
            html_path: render_html(analysis, report_run),
            summary_path: render_markdown(analysis),
        }
        if kernels_path is not None:
            texts[kernels_path] = render_kernels_md(analysis)
    except Exception as exc:  # a renderer's bug must not leave a half-updated set or a traceback
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise OutputFailed(
            f"could not render the outputs ({type(exc).__name__}: {reason}); nothing written in {target}"
        ) from None
    write_all_or_none(texts)
    return AnalyzeResult(source, analysis, json_path, html_path, summary_path, kernels_path=kernels_path)


def write_all_or_none(texts: dict[Path, str]) -> None:
    """Write several files so that either every one holds its new text or none changed.

    Each text goes to a temporary file beside its target (flushed to disk); then the targets that
    exist are kept under a second name (a hard link, so the target never disappears meanwhile) and the
    temporaries are renamed over them. A failure at any step renames the kept files back, removes the
    new ones and the temporaries, and raises OutputFailed naming the file and the reason."""
    temporaries: dict[Path, Path] = {}
    kept: dict[Path, Path] = {}
    placed: list[Path] = []
    current: Path | None = None
    try:
        for target, text in texts.items():
            current = target
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
            temporaries[target] = Path(name)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(name, 0o644)  # mkstemp makes 0600; outputs are shared read-only artefacts
        for target in texts:
            current = target
            if target.is_file() and not target.is_symlink():
                backup = target.with_name(f".{target.name}.previous")
                backup.unlink(missing_ok=True)
                os.link(target, backup)
                kept[target] = backup
        for target in texts:
            current = target
            os.replace(temporaries[target], target)
            del temporaries[target]
            placed.append(target)
    except OSError as exc:
        for target in placed:  # undo: the earlier files back, or no new one where there was none
            with contextlib.suppress(OSError):
                if target in kept:
                    os.replace(kept.pop(target), target)
                else:
                    target.unlink()
        where = current.parent if current is not None else Path()
        raise OutputFailed(
            f"cannot write {current}: {exc.strerror or exc}{disk_note(where)}; "
            "none of the analysis outputs was changed"
        ) from None
    finally:
        for leftover in [*temporaries.values(), *kept.values()]:
            with contextlib.suppress(OSError):
                leftover.unlink()


def _calibration(path: Path | None, run_dir: Path) -> tuple[Calibration, str] | None:
    """The measured ceilings to use and where they came from: the file given, else the run folder's."""
    if path is None and RunFolder(run_dir).calibration.is_file():
        path = RunFolder(run_dir).calibration
    return None if path is None else (load_calibration(path), str(path))


def _check_attributable(export: Path, analysis: Analysis, found: RecordFile, allow_no_kernels: bool) -> None:
    totals = analysis["totals"]
    if totals["nvtx_ranges"] == 0:
        raise BadInput(
            f"{export} holds no NVTX push/pop or start/end ranges, so there is nothing to attribute GPU "
            "work to (capture with --trace including nvtx; nsys 2022.4-2024.2 see only nvtx < 0.2.12)"
        )
    # the device the driver really used (`--device auto` resolves there), else the one asked for
    m = found.data or {}
    ran_on_cpu = ((m.get("driver") or {}).get("device") or (m.get("workload") or {}).get("device")) == "cpu"
    if totals["kernels"] == 0 and not (allow_no_kernels or ran_on_cpu):
        damaged = found.warning()
        raise BadInput(
            f"{export} holds no CUDA kernels (a CPU-only run, --trace without cuda, or an nsys whose "
            "CUPTI is older than the program's CUDA); --allow-no-kernels reports NVTX wall times alone"
            + (f" (the run's device is unknown: {damaged})" if damaged else "")
        )


def _mangled_names(export: Path) -> dict[str, str]:
    conn = connect_readonly(export)
    try:
        return kernel_mangled_names(conn, read_schema(conn, export))
    finally:
        conn.close()


def analyze(path: Path, profiles_root: Path, options: AnalyzeOptions) -> AnalyzeResult:
    """`perfctl analyze PATH`: analyze_path, then the run recorded in its profiles folder's registry
    when PATH is a perfctl run folder (its manifest.json usable)."""
    result = analyze_path(path, options)
    if result.run_dir is not None:
        from perfctl.registry import record_analysis

        record_analysis(result.run_dir, result.analysis, result.json_path, profiles_root)
    return result
