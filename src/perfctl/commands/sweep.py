"""`perfctl sweep`: one capture per batch size into a sweep folder, each analyzed, then the sweep's
analysis and report (perfctl.sweep_folder says what the folder holds).

Every point is a whole `perfctl capture` (same options, its own run folder, the sweep folder as its
profiles folder) of `calls` generate calls of its batch size, the profiled passes running the first
`profile_calls` of them; then `perfctl analyze` of it. A point whose capture or analysis fails is
recorded with its reason and the sweep goes on with the next batch size; an interrupt (Ctrl-C,
SIGTERM) ends the sweep: the point it stopped is recorded interrupted, the sweep's outputs are
written for the points done, and the sweep's status is interrupted (exit 1). The sweep's analysis
reads only the points' analyses (perfctl.analysis.sweep).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from perfctl import __version__, progress
from perfctl.analysis.result import Analysis
from perfctl.analysis.result_sweep import SweepAnalysis
from perfctl.capture.processes import Interrupted, interrupts_raise
from perfctl.capture.run import CaptureOptions, capture_run, resolve_driver_and_model, validate_numbers
from perfctl.commands.analyze_options import DEFAULT_OPTIONS, AnalyzeOptions
from perfctl.errors import BadInput, PerfctlError
from perfctl.files import utc_now
from perfctl.sweep_folder import (
    SWEEP_ANALYSIS_FILE,
    SWEEP_KIND,
    SWEEP_REPORT_FILE,
    SWEEP_SUMMARY_FILE,
    SweepFolder,
    point_name,
)
from perfctl.workloads.batching import BATCH_SIZE_LIMIT
from perfctl.workloads.pages import list_pages

MAX_POINTS = 32  # batch sizes per sweep: more is a typo (a sweep of 32 full captures takes hours already)
MAX_CALLS = 1_000  # generate calls per point in the clean pass


@dataclass(frozen=True)
class SweepOptions:
    capture: CaptureOptions  # every capture option; batch size, pages, run folder are set per point
    batch_sizes: list[int]
    calls: int = 2  # generate calls per point in the clean timing pass (its CV needs two at least)
    profile_calls: int = 1  # of them, the calls the profiled passes (nsys, torch.profiler) run
    sweep_id: str | None = None
    out: Path | None = None
    force: bool = False
    analyze: AnalyzeOptions = DEFAULT_OPTIONS


@dataclass(frozen=True)
class SweepResult:
    folder: Path
    status: str
    analysis: SweepAnalysis
    outputs: list[Path]


def parse_batch_sizes(text: str) -> list[int]:
    """`--batch-sizes 1,4,16,64`: distinct whole numbers from 1 to BATCH_SIZE_LIMIT, in rising order."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t.isdigit() for t in items):
        raise BadInput(f"--batch-sizes takes whole numbers separated by commas (1,4,16,64), got {text!r}")
    sizes = [int(t) for t in items]
    if len(set(sizes)) != len(sizes):
        raise BadInput(f"--batch-sizes names a batch size twice: {text!r}")
    if any(not 1 <= s <= BATCH_SIZE_LIMIT for s in sizes):
        raise BadInput(f"--batch-sizes must be between 1 and {BATCH_SIZE_LIMIT}, got {text!r}")
    if len(sizes) > MAX_POINTS:
        raise BadInput(f"--batch-sizes names {len(sizes)} batch sizes; a sweep takes {MAX_POINTS} at most")
    return sorted(sizes)


def _check(opts: SweepOptions) -> None:
    if not 1 <= opts.calls <= MAX_CALLS:
        raise BadInput(f"--calls must be between 1 and {MAX_CALLS}, got {opts.calls}")
    if not 1 <= opts.profile_calls <= opts.calls:
        raise BadInput(
            f"--profile-calls must be between 1 and --calls ({opts.calls}), got {opts.profile_calls}"
        )
    if opts.capture.tool not in ("all", "nsys", "ncu"):
        raise BadInput(f"a sweep needs an nsys pass: --tool all, nsys or ncu, not {opts.capture.tool}")
    largest = replace(opts.capture, batch_size=max(opts.batch_sizes), out=None, run_id=None)
    validate_numbers(largest)  # the capture options' own refusals, before any folder is made


def _folder_path(opts: SweepOptions) -> Path:
    if opts.out is not None:
        return opts.out
    from perfctl.capture.claim import check_run_id, new_run_id

    if opts.sweep_id is not None:
        check_run_id(opts.sweep_id)
        return opts.capture.profiles_root / opts.sweep_id
    return opts.capture.profiles_root / f"sweep-{new_run_id(opts.capture.model)}"


def _link_pages(folder: SweepFolder, opts: SweepOptions) -> list[str]:
    """pages/: the source folder's pages in order, gone through again until the largest point has
    its calls x batch size; each a link named by its position. Returns the sources, in that order."""
    from perfctl.workloads.models import takes_page_images

    _, spec = resolve_driver_and_model(opts.capture)
    sources = list_pages(opts.capture.pages_dir, None, text=not takes_page_images(spec.model_type))
    needed = opts.calls * max(opts.batch_sizes)
    folder.pages.mkdir()
    order = [sources[i % len(sources)].resolve() for i in range(needed)]
    for i, source in enumerate(order):
        os.symlink(source, folder.pages / f"page-{i:06d}{source.suffix.lower()}")
    return [str(p) for p in order]


def _point_options(opts: SweepOptions, folder: SweepFolder, batch: int, argv: list[str]) -> CaptureOptions:
    calls, profiled = opts.calls, opts.profile_calls
    return replace(
        opts.capture,
        batch_size=batch,
        pages_dir=folder.pages,
        num_pages=calls * batch,
        profile_pages=None if profiled == calls else profiled * batch,
        profiles_root=folder.path,
        out=folder.point(batch),
        run_id=None,
        force=False,
        argv=argv,
    )


def _options_record(capture: CaptureOptions) -> dict[str, Any]:
    keep = ("model", "random_weights", "max_new_tokens", "decode", "tiles", "mode", "warmup", "device")
    return {k: getattr(capture, k) for k in keep} | {
        "dtype": capture.dtype,
        "tool": capture.tool,
        "repeats": capture.repeats,
        "pages_dir": str(capture.pages_dir) if capture.pages_dir else None,
    }


def run_sweep(opts: SweepOptions, argv: list[str]) -> SweepResult:
    """Capture and analyze every point, then the sweep (see the module's docstring)."""
    _check(opts)
    path = _folder_path(opts)
    folder = SweepFolder.claim(path, opts.capture.profiles_root, opts.force)
    manifest: dict[str, Any] = {
        "kind": SWEEP_KIND,
        "perfctl_version": __version__,
        "sweep_id": path.name,
        "status": "running",
        "reason": None,
        "started_at": utc_now(),
        "finished_at": None,
        "perfctl_command": argv,
        "batch_sizes": opts.batch_sizes,
        "calls": opts.calls,
        "profile_calls": opts.profile_calls,
        "options": _options_record(opts.capture),
        "points": [],
    }
    folder.write_manifest(manifest)
    manifest["pages"] = _link_pages(folder, opts)
    analyses: dict[int, Analysis] = {}
    stopped: str | None = None  # why the sweep ended before its last point (a stop signal)
    with interrupts_raise():  # SIGTERM / SIGHUP between points too: recorded, not a silent death
        try:
            for i, batch in enumerate(opts.batch_sizes):
                progress.step(f"sweep: batch {batch} ({i + 1} of {len(opts.batch_sizes)})")
                entry: dict[str, Any] = {"batch_size": batch, "run": point_name(batch)}
                manifest["points"].append(entry | {"status": "running", "reason": None})
                folder.write_manifest(manifest)
                analysis = _capture_point(opts, folder, batch, argv, manifest["points"][-1])
                if analysis is not None:
                    analyses[batch] = analysis
                folder.write_manifest(manifest)
                if manifest["points"][-1]["status"] == "interrupted":  # the capture caught the signal
                    stopped = f"batch {batch}: {manifest['points'][-1]['reason']}"
                    break
        except (Interrupted, KeyboardInterrupt) as exc:  # a signal outside a capture (its analysis)
            stopped = f"stopped by {exc}" if isinstance(exc, Interrupted) else "interrupted (Ctrl-C)"
            if manifest["points"] and manifest["points"][-1]["status"] == "running":
                manifest["points"][-1] |= {"status": "interrupted", "reason": stopped}
    ok = sum(e["status"] == "ok" for e in manifest["points"])
    if stopped is not None:
        manifest |= {"status": "interrupted", "reason": stopped}
    else:
        manifest["status"] = "ok" if ok == len(opts.batch_sizes) else ("partial" if ok else "failed")
        failed = [
            f"batch {e['batch_size']}: {e['status']}" for e in manifest["points"] if e["status"] != "ok"
        ]
        manifest["reason"] = "; ".join(failed) or None
    manifest["finished_at"] = utc_now()
    folder.write_manifest(manifest)
    result, outputs = write_sweep_outputs(folder, manifest, analyses)
    return SweepResult(path, manifest["status"], result, outputs)


def _capture_point(
    opts: SweepOptions, folder: SweepFolder, batch: int, argv: list[str], entry: dict[str, Any]
) -> Analysis | None:
    """Capture and analyze one point; `entry` gets how it ended. An error of the point's own (its
    capture failed or was refused, its analysis failed) is recorded, not raised."""
    from perfctl.commands.analyze import analyze as analyze_command

    try:
        captured = capture_run(_point_options(opts, folder, batch, argv))
    except PerfctlError as exc:
        entry |= {"status": "failed", "reason": " ".join(str(exc).split())}
        return None
    entry |= {"status": captured.status, "reason": captured.reason}
    if captured.status != "ok":
        return None
    try:
        options = replace(opts.analyze, nsys_path=opts.analyze.nsys_path or opts.capture.nsys)
        return analyze_command(folder.point(batch), folder.path, options).analysis
    except PerfctlError as exc:
        entry |= {"status": "analysis failed", "reason": " ".join(str(exc).split())}
        return None


def write_sweep_outputs(
    folder: SweepFolder,
    manifest: dict[str, Any],
    analyses: dict[int, Analysis],
    warnings: list[str] | None = None,
) -> tuple[SweepAnalysis, list[Path]]:
    """The sweep's analysis and its report and summary, written all or none."""
    from perfctl.analysis.sweep import analyze_sweep
    from perfctl.commands.analyze import write_all_or_none
    from perfctl.report.sweep import render_sweep_html, render_sweep_markdown

    result = analyze_sweep(manifest, str(folder.path), analyses, warnings or [])
    texts = {
        folder.output(SWEEP_ANALYSIS_FILE): json.dumps(result, indent=2) + "\n",
        folder.output(SWEEP_REPORT_FILE): render_sweep_html(result),
        folder.output(SWEEP_SUMMARY_FILE): render_sweep_markdown(result),
    }
    write_all_or_none(texts)
    return result, list(texts)


def analyze_sweep_folder(path: Path, options: AnalyzeOptions) -> SweepResult:
    """`perfctl analyze SWEEP`: analyze every point that has a run folder again, then the sweep."""
    from perfctl.commands.analyze import analyze as analyze_command

    folder = SweepFolder(path)
    found = folder.read_manifest()
    if found.data is None or found.data.get("kind") != SWEEP_KIND:
        raise BadInput(f"{folder.manifest_path} is no sweep manifest perfctl wrote")
    manifest = found.data
    warnings = [w for w in [found.warning()] if w]
    analyses: dict[int, Analysis] = {}
    for entry in manifest.get("points") or []:
        batch = int(entry["batch_size"])
        if entry.get("status") not in ("ok", "analysis failed"):
            continue
        try:
            analyses[batch] = analyze_command(folder.point(batch), folder.path, options).analysis
            entry |= {"status": "ok", "reason": None}
        except PerfctlError as exc:
            warnings.append(f"batch {batch}: {' '.join(str(exc).split())}")
    result, outputs = write_sweep_outputs(folder, manifest, analyses, warnings)
    return SweepResult(path, str(manifest.get("status")), result, outputs)
