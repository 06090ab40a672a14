"""`perfctl compare RUN_A RUN_B`: find each run's analysis, compare them, gate on slower stages.

A RUN may be:
  - an analysis.json (what `perfctl analyze` wrote), used as it is;
  - a run folder holding an analysis.json, used as it is;
  - a run folder (or export, or .nsys-rep) without one: analyzed now with `perfctl analyze`'s
    defaults into a temporary folder (a .nsys-rep without a provably fresh export is exported there
    too): nothing is written into the run folder;
  - a run folder that kept only its small files (manifest.json and the clean pass's timing/, the
    export deleted): its clean-pass statistics and MFU, computed as `perfctl analyze` computes them;
    kernel figures are then unavailable.
Inputs are only read, never changed. A run folder's damaged manifest.json or driver-info.json costs
what it held (perfctl.run_manifest); the comparison's warnings name the file.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from perfctl import progress
from perfctl.analysis.compare import compare_analyses
from perfctl.analysis.compare_power import gate
from perfctl.analysis.repeatability import timing_statistics
from perfctl.analysis.result import Analysis, read_analysis
from perfctl.analysis.result_compare import Comparison
from perfctl.analysis.result_passes import Efficiency
from perfctl.errors import BadInput, PerfctlError
from perfctl.run_folder import ANALYSIS_FILE, RunFolder


@dataclass(frozen=True)
class LoadedRun:
    analysis: Analysis
    label: str  # how the run is named in the output: its run id, else the path given
    origin: str  # where the analysis came from, in words


def clean_pass_only(run_dir: Path) -> Analysis | None:
    """A run folder without its export: the parts of an analysis its clean timing pass gives (run
    identity, `timing`, `efficiency`), or None when it has no usable manifest or no clean pass."""
    from perfctl.commands.analyze import checked_clean_pass, clean_efficiency, manifest_note

    found = RunFolder(run_dir).read_manifest()
    manifest = found.data
    if manifest is None:
        return None
    if manifest.get("tool") == "torch":
        raise BadInput(f"{run_dir} holds no stage times to compare (a --tool torch run has operators only)")
    clean, warnings = checked_clean_pass(run_dir, manifest)
    if clean is None:
        return None
    eff: Efficiency
    try:
        eff = clean_efficiency(clean, manifest, run_dir, stages_under_nsys={})
    except (PerfctlError, ValueError, OSError) as exc:  # e.g. the model folder is not on this host
        eff = {"available": False, "reason": f"MFU not computed: {exc}"}
    said = [w for w in [found.warning(), *warnings] if w]
    partial = {  # an analysis without perfctl_version (never written) and with the whole manifest as run
        "run": manifest,
        "run_manifest": manifest_note(found, said),
        "timing": {"pass": "clean", "statistics": timing_statistics(clean.records)},
        "efficiency": eff,
        "warnings": said,
    }
    return cast(Analysis, partial)


def load_run(path: Path) -> LoadedRun:
    """The analysis behind one RUN argument (see the module docstring)."""
    from perfctl.commands.analyze import analyze_path
    from perfctl.commands.analyze_options import AnalyzeOptions
    from perfctl.export_source import plan_export

    given = RunFolder.find(path)
    if given.kind == "analysis":
        analysis, origin = read_analysis(path), str(path)
    elif given.kind == "run_folder" and given.folder.analysis.is_file():
        analysis, origin = read_analysis(given.folder.analysis), str(given.folder.analysis)
    else:
        found = given.folder.read_manifest()
        try:
            plan_export(given, found)  # is there an export (or a report to export)? nothing is written
        except BadInput as no_export:
            partial = clean_pass_only(path) if given.kind == "run_folder" else None
            if partial is None:
                damaged = found.warning()
                if damaged:
                    raise BadInput(f"{no_export}; {damaged}") from None
                raise
            analysis, origin = partial, f"{path}: clean timing pass only (no nsys export)"
        else:
            progress.step(f"{path} has no {ANALYSIS_FILE}: analyzing it")
            with tempfile.TemporaryDirectory(prefix="perfctl-compare-") as tmp:
                analysis = analyze_path(path, AnalyzeOptions(out_dir=Path(tmp))).analysis
            origin = f"{path}, analyzed now (not written)"
    run = analysis.get("run")
    run_id = run.get("run_id") if run else None
    return LoadedRun(analysis, str(run_id or path), origin)


def _run_warnings(run: LoadedRun, label: str) -> list[str]:
    """What a run folder's own records lacked (a damaged manifest.json or driver-info.json, each
    naming its file), for the comparison's warnings."""
    note = run.analysis.get("run_manifest")
    return [f"run {label}: {w}" for w in (note.get("record_warnings") if note else None) or []]


def compare_paths(
    run_a: Path,
    run_b: Path,
    top: int = 5,
    fail_if_slower_pct: float | None = None,
    allow_different: bool = False,
) -> Comparison:
    """Load both runs, compare B against A and, with a threshold, add the gate's verdict. Runs of
    different workloads (analysis.compare.REFUSED) are bad input unless `allow_different`."""
    return compare_loaded(load_run(run_a), load_run(run_b), top, fail_if_slower_pct, allow_different)


def compare_loaded(
    a: LoadedRun,
    b: LoadedRun,
    top: int = 5,
    fail_if_slower_pct: float | None = None,
    allow_different: bool = False,
) -> Comparison:
    """compare_paths for runs already loaded (load_run)."""
    try:
        result = compare_analyses(
            a.analysis, b.analysis, a.label, b.label, top=top, allow_different=allow_different
        )
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    result["a"]["origin"], result["b"]["origin"] = a.origin, b.origin
    result["warnings"] += _run_warnings(a, "A") + _run_warnings(b, "B")
    if fail_if_slower_pct is not None:
        result["gate"] = gate(result, fail_if_slower_pct)
    return result
