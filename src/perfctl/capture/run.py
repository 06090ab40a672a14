"""`perfctl capture --tool nsys`: the driver under `nsys profile`, into a self-describing run folder.

A run folder holds:
  workload.json     the exact workload the driver ran (rerun it: python -m perfctl.driver workload.json)
  model-config.json the model's config.json as run (the FLOP model reads it, not the model folder)
  manifest.json     identity and outcome: commands, versions, host/GPU, pages, times, status
  run.nsys-rep      the Nsight Systems report (opens in the GUI)
  run.sqlite        its SQLite export, which `perfctl analyze` reads
  pages.jsonl       one record per page the driver finished (host-side stage clocks), warm-up pages
                    included and marked "warmup": true
  driver-info.json  what the driver saw: device, dtype, versions, parameter and token counts
  driver.log        the driver's output;  nsys.log: nsys's own output
  timing/           with --tool all: the clean timing pass, the same workload run again without a
                    profiler, synchronizing at stage edges (its own workload.json, pages.jsonl,
                    driver-info.json, driver.log, telemetry.jsonl: NVML samples on a GPU, and
                    model-config.resolved.json: the config as its transformers resolved it);
                    its stage times are the ones MFU divides by
  torch/            with --tool all: the torch.profiler pass (operators.json per stage, trace.json.gz)
  calibration.json  with --calibrate: the device's measured matmul rate and bandwidth (perfctl calibrate)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfctl import __version__, progress, registry
from perfctl.capture.driver_pass import (
    CaptureResult,
    last_line,
    last_text_line,
    run_driver_pass,
    run_ncu_pass,
    signal_of,
)
from perfctl.capture.driver_python import DriverPython, driver_command, probe_interpreter
from perfctl.capture.ncu import Ncu, NcuSettings, find_ncu
from perfctl.capture.nsys import (
    DEFAULT_TRACE,
    Nsys,
    find_nsys,
    importer_present,
    nsys_log_error,
    sqlite_problem,
    stream_left_elsewhere,
)
from perfctl.capture.nsys_lock import NsysSessionLock, no_wait_refusal
from perfctl.capture.nsys_sessions import SessionWatcher, sessions_seen_note
from perfctl.capture.nvtx_evidence import explain_missing_ranges, gather_evidence, read_export_nvtx
from perfctl.capture.processes import (
    Interrupted,
    deferred_interrupts,
    describe_signal,
    exit_description,
    interrupts_raise,
    new_token,
    stop_child,
    stop_processes,
    wait_until_gone,
)
from perfctl.capture.processes import start as start_child
from perfctl.errors import BadInput, CaptureFailed, PerfctlError
from perfctl.files import disk_note, file_sha256, utc_now, write_text_atomic
from perfctl.hardware.host import host_identity, package_versions
from perfctl.records import read_page_records
from perfctl.run_folder import (
    DRIVER_INFO_FILE,
    DRIVER_LOG_FILE,
    EXPORT_SUFFIX,
    MODEL_CONFIG_FILE,
    NSYS_LOG_FILE,
    PAGES_FILE,
    REPORT_BASE,
    REPORT_SUFFIX,
    STREAM_SUFFIX,
    WORKLOAD_FILE,
    RunFolder,
)
from perfctl.run_manifest import read_driver_info
from perfctl.workloads.batching import check_batching
from perfctl.workloads.decode import DECODE_MODES, EAGER, cpu_refusal
from perfctl.workloads.deepseek_ocr_v1 import check_capture_mode
from perfctl.workloads.models import ModelSpec, is_v1_spec, resolve_model, takes_page_images
from perfctl.workloads.pages import list_pages
from perfctl.workloads.workload import DriverOutputs, Workload, runs_unit

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
TOOLS = ("nsys", "torch", "all", "ncu")
PACKAGES = ["perfctl", "torch", "transformers", "nvtx", "pandas", "nvidia-ml-py"]
NSYS_FINALIZE_S = 600  # how long nsys may take to write its report after a stop signal


@dataclass
class CaptureOptions:
    model: str = "deepseek-ocr2-tiny"
    random_weights: bool = False
    pages_dir: Path | None = None
    num_pages: int | None = 4
    repeats: int = 1
    max_new_tokens: int = 16
    decode: str = EAGER  # --decode: eager, static or compiled (perfctl.workloads.decode)
    batch_size: int = 1  # --batch-size: pages per generate call (perfctl.workloads.batching)
    tiles: int = 0  # DeepSeek-OCR-2 local 768² views per page, besides the global view
    mode: str | None = None  # DeepSeek-OCR v1 resolution mode (tiny ... gundam); default base
    driver_python: str | None = None  # the interpreter that runs the driver; default perfctl's own
    warmup: int = 1  # warm-up runs of each distinct input shape of the measured pages (workloads.shapes)
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0
    profiles_root: Path = Path("profiles")
    run_id: str | None = None
    out: Path | None = None
    force: bool = False
    nsys: str | None = None
    trace: str = DEFAULT_TRACE
    # nsys: the nsys pass; all: then the clean timing pass and the torch.profiler pass; torch: only
    # the torch.profiler pass (operators per stage; no export, so no kernel attribution)
    tool: str = "nsys"
    nsys_telemetry: bool = False  # NVML sampled during the nsys pass too (telemetry.jsonl)
    # the profiled passes (nsys, torch.profiler) run only the first N pages, once each: a profile
    # explains where the time goes, the clean pass's pages x repeats measure it (None: all of them)
    profile_pages: int | None = None
    calibrate: bool = False  # after the passes: perfctl calibrate into the run folder
    # another nsys session on the machine (perfctl's, under the nsys lock, or a foreign one): refuse
    # at once (BadInput) instead of waiting for it
    no_wait: bool = False
    # the Nsight Compute pass after the others (--tool ncu: after the nsys pass alone; --tool all --ncu)
    ncu: NcuSettings | None = None
    argv: list[str] = field(default_factory=list)


def validate_numbers(opts: CaptureOptions) -> None:
    checks = [
        ("--repeats", opts.repeats, 1, 10_000),
        ("--max-new-tokens", opts.max_new_tokens, 1, 100_000),
        ("--warmup", opts.warmup, 0, 1_000),
        ("--tiles", opts.tiles, 0, 6),
        ("--seed", opts.seed, 0, 2**32 - 1),
    ]
    for flag, value, low, high in checks:
        if not low <= value <= high:
            raise BadInput(f"{flag} must be between {low} and {high}, got {value}")
    if opts.device not in DEVICES and not re.fullmatch(r"cuda:\d+", opts.device):
        raise BadInput(f"--device must be one of {', '.join(DEVICES)} or cuda:N, got {opts.device!r}")
    if "nvtx" not in opts.trace.split(","):
        raise BadInput(f"--trace {opts.trace!r} lacks nvtx: perfctl's stages are NVTX ranges")
    if opts.tool not in TOOLS:
        raise BadInput(f"--tool must be one of {', '.join(TOOLS)}, got {opts.tool!r}")
    if opts.nsys_telemetry and opts.tool == "torch":
        raise BadInput("--nsys-telemetry samples NVML during the nsys pass, which --tool torch does not run")
    if opts.decode not in DECODE_MODES:
        raise BadInput(f"--decode must be one of {', '.join(DECODE_MODES)}, got {opts.decode!r}")
    refusal = cpu_refusal(opts.decode, opts.device)
    if refusal is not None:
        raise BadInput(refusal)
    if opts.dtype not in DTYPES:
        raise BadInput(f"--dtype must be one of {', '.join(DTYPES)}, got {opts.dtype!r}")
    if opts.out is not None or opts.run_id is not None:  # refused here, before nsys or the driver runs
        RunFolder.check_choice(opts.profiles_root, opts.run_id, opts.out, opts.force)
    if opts.profile_pages is not None and opts.profile_pages < 1:
        raise BadInput(f"--profile-pages must be at least 1, got {opts.profile_pages}")


def resolve_driver_and_model(opts: CaptureOptions) -> tuple[DriverPython, ModelSpec]:
    """The interpreter that runs the driver (probed), and the model it is to load."""
    with tempfile.TemporaryDirectory(prefix="perfctl-probe-") as scratch:
        driver = probe_interpreter(opts.driver_python or sys.executable, Path(scratch))
    return driver, resolve_model(opts.model, opts.random_weights, driver)


def capture_run(opts: CaptureOptions) -> CaptureResult:
    """Run the passes `opts.tool` names into a new run folder; the result says how it ended."""
    # the user's inputs first, then the tools: a bad page is named even where nsys is missing
    validate_numbers(opts)
    driver, spec = resolve_driver_and_model(opts)
    if opts.tiles and spec.model_type != "deepseek_ocr2":
        raise BadInput(f"--tiles is for DeepSeek-OCR-2 pages; {opts.model} is {spec.model_type}")
    if is_v1_spec(spec):
        opts.mode = check_capture_mode(opts.mode)
    elif opts.mode is not None:
        raise BadInput(f"--mode is for DeepSeek-OCR v1; {opts.model} is {spec.model_type}")
    pages = list_pages(opts.pages_dir, opts.num_pages, text=not takes_page_images(spec.model_type))
    if opts.profile_pages is not None and opts.profile_pages > len(pages):
        raise BadInput(f"--profile-pages {opts.profile_pages} is more than the {len(pages)} pages given")
    check_batching(opts.batch_size, len(pages), opts.profile_pages, is_v1_spec(spec))
    if opts.tool == "ncu" and opts.ncu is None:
        opts.ncu = NcuSettings()
    if opts.ncu is not None and opts.tool not in ("ncu", "all"):
        raise BadInput(
            f"--ncu is for --tool all (or use --tool ncu); --tool {opts.tool} runs no nsys pass to "
            "choose the kernels from"
        )
    if opts.ncu is not None and opts.device == "cpu":
        raise BadInput(
            "the Nsight Compute pass profiles CUDA kernels: it needs --device cuda (or auto on a GPU)"
        )
    ncu = find_ncu() if opts.ncu is not None else None
    nsys = find_nsys(opts.nsys) if opts.tool != "torch" else None
    if nsys is None:
        return _claim_and_capture(opts, nsys, spec, pages, driver, None, ncu)
    # the nsys lock is tried before the run folder is claimed: --no-wait refuses with nothing made;
    # a capture that has to wait claims its folder first (a clash of names is refused at once) and
    # waits at its nsys pass, the manifest saying for whom (nsys.session_lock)
    with NsysSessionLock(NSYS_PASS_WHAT) as session:
        busy = session.try_take()
        if busy is not None and opts.no_wait:
            raise no_wait_refusal(busy)
        return _claim_and_capture(opts, nsys, spec, pages, driver, session, ncu)


NSYS_PASS_WHAT = "perfctl capture, nsys pass"


def _claim_and_capture(
    opts: CaptureOptions,
    nsys: Nsys | None,
    spec: ModelSpec,
    pages: list[Path],
    driver: DriverPython,
    session: NsysSessionLock | None,
    ncu: Ncu | None,
) -> CaptureResult:
    with interrupts_raise():
        run_dir = RunFolder.claim(
            opts.profiles_root, opts.model, opts.run_id, opts.out, opts.force
        ).path.resolve()
        lock = RunFolder(run_dir).lock()
        if session is not None:  # waiters read which run holds (or waits for) the nsys lock
            session.name_run(run_dir.name)
        manifest: dict[str, Any] = {"run_id": run_dir.name, "status": "running", "started_at": utc_now()}
        try:
            return _capture(opts, nsys, spec, pages, run_dir, manifest, driver, session, ncu)
        except (KeyboardInterrupt, Interrupted) as exc:
            with deferred_interrupts():
                result = _record_interrupted(run_dir, manifest, signal_of(exc))
                registry.record_capture(run_dir, result.manifest, opts.profiles_root)
                return result
        finally:
            RunFolder(run_dir).unlock(lock)


def _capture(
    opts: CaptureOptions,
    nsys: Nsys | None,
    spec: ModelSpec,
    pages: list[Path],
    run_dir: Path,
    manifest: dict[str, Any],
    driver: DriverPython,
    session: NsysSessionLock | None = None,
    ncu: Ncu | None = None,
) -> CaptureResult:
    # the nsys pass's outputs are the run folder's own; the later passes write into their folders
    workload = Workload(
        model=spec,
        pages=tuple(p.resolve() for p in pages),
        repeats=opts.repeats,
        max_new_tokens=opts.max_new_tokens,
        tiles=opts.tiles,
        mode=opts.mode,
        warmup=opts.warmup,
        device=opts.device,
        dtype=opts.dtype,
        seed=opts.seed,
        outputs=DriverOutputs.in_folder(run_dir, telemetry=opts.nsys_telemetry),
        decode=opts.decode,
        batch_size=opts.batch_size,
    )
    # the profiled passes' own workload: with --profile-pages, its first pages once each
    profiled = workload.profiled(opts.profile_pages)
    write_text_atomic(run_dir / MODEL_CONFIG_FILE, (spec.folder / "config.json").read_text())
    manifest.update(
        {
            "perfctl_version": __version__,
            "tool": opts.tool,
            "perfctl_command": opts.argv,
            "workload": workload.manifest_json(opts.profile_pages),
            "model_spec": spec.to_json(),
            "model_config": MODEL_CONFIG_FILE,
            "pages": [{"file": p.name, "path": str(p.resolve()), "sha256": file_sha256(p)} for p in pages],
            "host": host_identity(),
            "packages": package_versions(PACKAGES),
            "driver_python": driver.to_json(),
        }
    )
    profiled_expected = profiled.page_runs
    passes = {"timing": workload, "torch": profiled}
    try:
        if nsys is None or session is None:  # --tool torch: the torch.profiler pass alone
            workload.save(run_dir / WORKLOAD_FILE)
            RunFolder(run_dir).write_manifest(manifest)
            registry.record_capture(run_dir, manifest, opts.profiles_root, started=True)
            result = CaptureResult(run_dir, "ok", None, manifest)
            later = ["torch"]
        else:
            profiled.save(run_dir / WORKLOAD_FILE)
            driver_cmd, driver_env = driver_command(run_dir, manifest, run_dir / WORKLOAD_FILE)
            nsys_cmd = nsys.profile_command(run_dir / REPORT_BASE, opts.trace, driver_cmd)
            manifest["nsys"] = {
                "path": str(nsys.path),
                "version": nsys.version,
                "command": nsys_cmd,
                "importer_found": importer_present(nsys),
                "telemetry": opts.nsys_telemetry,
            }
            RunFolder(run_dir).write_manifest(manifest)
            registry.record_capture(run_dir, manifest, opts.profiles_root, started=True)
            _take_nsys_turn(session, run_dir, manifest, opts.no_wait)
            progress.step(
                f"nsys pass: {profiled_expected} {runs_unit(profiled.batch_size)} under nsys profile "
                f"(log: {run_dir / DRIVER_LOG_FILE})"
            )
            try:
                env = driver_env | session.child_env()
                result = _run_and_finalize(nsys, nsys_cmd, run_dir, manifest, profiled_expected, env)
            finally:  # the later passes run no nsys: another capture's nsys pass may run beside them
                session.release()
            later = ["timing", "torch"] if opts.tool == "all" else []
        for name in later:
            if result.status == "ok":
                result = run_driver_pass(run_dir, passes[name], result.manifest, name)
        if ncu is not None and opts.ncu is not None and result.status == "ok":
            result = run_ncu_pass(run_dir, profiled, result.manifest, ncu, opts.ncu)
        if result.manifest["status"] == "running":  # no nsys pass to conclude it: every pass went well
            result.manifest["status"], result.manifest["reason"] = "ok", None
            RunFolder(run_dir).write_manifest(result.manifest)
            result = CaptureResult(run_dir, "ok", None, result.manifest)
        if opts.calibrate and result.status == "ok":
            seen = result.manifest.get("driver") or {}
            result = run_calibration(run_dir, result.manifest, seen.get("device"), seen.get("dtype"))
    except BaseException as exc:  # the registry learns how the run ended, whatever ended it
        registry.record_capture_failure(run_dir, manifest, exc, opts.profiles_root)
        raise
    registry.record_capture(run_dir, result.manifest, opts.profiles_root)
    return result


def run_calibration(
    run_dir: Path, manifest: dict[str, Any], device: str | None, dtype: str | None
) -> CaptureResult:
    """`perfctl calibrate` on the device the driver used, into the run folder's calibration.json: on
    the CPU in the run's dtype (the only peak a CPU run has), on a GPU in calibrate's bf16 (the
    datasheet's dtype; analyze leaves the matmul rate out for a run in another dtype)."""
    out = RunFolder(run_dir).calibration
    cmd = [sys.executable, "-m", "perfctl", "calibrate", "--device", device or "cuda", "--out", str(out)]
    if device == "cpu" and dtype:
        cmd[-2:-2] = ["--dtype", dtype]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    ok = proc.returncode == 0 and out.is_file()
    reason = None if ok else f"perfctl calibrate exited {proc.returncode}: {last_text_line(proc.stderr)}"
    manifest["calibration"] = {"command": cmd, "status": "ok" if ok else "failed", "reason": reason}
    if not ok:
        manifest["status"], manifest["reason"] = "failed", reason
    RunFolder(run_dir).write_manifest(manifest)
    return CaptureResult(run_dir, manifest["status"], manifest.get("reason"), manifest)


def _take_nsys_turn(session: NsysSessionLock, run_dir: Path, manifest: dict[str, Any], no_wait: bool) -> None:
    """Hold the nsys lock before the nsys pass, waiting for it where the capture could not take it at
    its start: the manifest says meanwhile whom it waits for, and afterwards how long it waited."""
    manifest["nsys"]["session_lock"] = session.record()

    def waiting(line: str) -> None:
        progress.step(line)
        manifest["nsys"]["session_lock"] = session.record() | {"waiting": True}
        RunFolder(run_dir).write_manifest(manifest)

    try:
        session.take(wait=not no_wait, report=waiting)
    except PerfctlError as exc:  # a wait that could never end (the lock went to an ancestor)
        manifest["status"], manifest["reason"] = "failed", str(exc)
        manifest["finished_at"] = utc_now()
        raise
    except (KeyboardInterrupt, Interrupted) as exc:
        manifest["status"] = "interrupted"
        manifest["reason"] = (
            f"stopped by {describe_signal(signal_of(exc))} while waiting for "
            f"{session.waited_for[-1] if session.waited_for else 'the nsys lock'}"
        )
        raise
    finally:
        manifest["nsys"]["session_lock"] = session.record()
    RunFolder(run_dir).write_manifest(manifest)


def _record_interrupted(run_dir: Path, manifest: dict[str, Any], signum: int) -> CaptureResult:
    """A stop signal outside the passes' own handling (between them, or while one's outcome was being
    recorded): the run is kept, marked interrupted unless it had failed already."""
    if manifest.get("status") in ("running", "ok"):
        manifest["status"] = "interrupted"
        manifest["reason"] = f"stopped by {describe_signal(signum)} while the capture ran"
    manifest["finished_at"] = utc_now()
    RunFolder(run_dir).write_manifest(manifest)
    return CaptureResult(run_dir, manifest["status"], manifest.get("reason"), manifest)


def _run_and_finalize(
    nsys: Nsys,
    cmd: list[str],
    run_dir: Path,
    manifest: dict[str, Any],
    expected_pages: int,
    env: dict[str, str] | None = None,
) -> CaptureResult:
    token = new_token()
    interrupted_by = None
    # any other nsys session that runs beside this one is noted: evidence if ranges go missing
    watcher = SessionWatcher(own_holder=os.getpid())
    manifest["nsys"]["started_at"] = utc_now()
    with (run_dir / NSYS_LOG_FILE).open("w") as log:
        proc = start_child(cmd, token, signal.SIGINT, run_dir, stdout=log, set_env=env)
        try:
            exit_code = watcher.wait(proc)
            if exit_code < 0:
                # nsys's own process was killed; its agent carries on, and writes the report once
                # the driver has finished: wait for the rest of the run to end by itself
                wait_until_gone(token, tick=watcher.tick)
        except (KeyboardInterrupt, Interrupted) as exc:
            # one SIGINT: nsys stops the driver and writes the report of what ran (a second one, or
            # the user's second Ctrl-C, makes it quit at once without a report)
            interrupted_by = signal_of(exc)
            exit_code = stop_child(proc, signal.SIGINT, NSYS_FINALIZE_S)
    with deferred_interrupts():  # the outcome is recorded whole; a signal meanwhile counts after
        # whatever of the run is still there (a driver nsys left behind, its agent) is stopped
        manifest["nsys"]["exit_code"] = exit_code
        manifest["nsys"]["leftover_processes_stopped"] = len(stop_processes(token))
        manifest["nsys"]["ended_at"] = utc_now()
        watcher.scan()  # one last look: a session that started since the last scan
        manifest["nsys"]["foreign_sessions_seen"] = [p.to_json() for p in watcher.seen]
        return _finalize(nsys, run_dir, manifest, expected_pages, exit_code, interrupted_by)


def _finalize(
    nsys: Nsys,
    run_dir: Path,
    manifest: dict[str, Any],
    expected_pages: int,
    exit_code: int,
    interrupted_by: int | None,
) -> CaptureResult:
    report, sqlite = run_dir / f"{REPORT_BASE}{REPORT_SUFFIX}", run_dir / f"{REPORT_BASE}{EXPORT_SUFFIX}"
    driver_info = read_driver_info(run_dir / DRIVER_INFO_FILE)  # a damaged one: no driver record
    if driver_info.data is not None:
        manifest["driver"] = driver_info.data
    pages_done = len(read_page_records(run_dir / PAGES_FILE))
    manifest["pages_completed"] = pages_done
    manifest["pages_expected"] = expected_pages
    unit = runs_unit(int((manifest.get("workload") or {}).get("batch_size", 1)))

    progress.step("export: the report to SQLite, then its NVTX ranges counted")
    status, reason = "ok", None
    if interrupted_by is not None:
        status = "interrupted"
        reason = (
            f"stopped by {describe_signal(interrupted_by)} during the nsys pass, after {pages_done} of "
            f"{expected_pages} {unit}; "
            + ("nsys wrote the report of what ran" if report.is_file() else "nsys wrote no report")
        )
    try:
        if report.is_file() and sqlite_problem(sqlite):
            # nsys exits 0 after an export that failed (a full disk leaves an empty run.sqlite):
            # that file is not kept as the run's export; exporting again says what went wrong
            sqlite.unlink(missing_ok=True)
            nsys.export_sqlite(report, sqlite)
        if not report.is_file() and exit_code < 0:  # nsys died by a signal, and its agent wrote nothing
            raise CaptureFailed(
                f"nsys was {exit_description(exit_code)} and wrote no report: the profile is lost; "
                f"pages.jsonl keeps the host-side clocks of the {pages_done} of {expected_pages} {unit} "
                "that finished"
            )
        if not report.is_file():
            qdstrm = run_dir / f"{REPORT_BASE}{STREAM_SUFFIX}"
            if qdstrm.is_file():
                raise CaptureFailed(
                    f"nsys wrote {qdstrm.name} but no report: its importer {nsys.importer()} is missing "
                    f"(run scripts/install-nsys.sh); `perfctl analyze {run_dir}` imports it once it is there"
                )
            said = (
                nsys_log_error(run_dir / NSYS_LOG_FILE)
                or f"nsys.log ends: {last_line(run_dir / NSYS_LOG_FILE)}"
            )
            stream = stream_left_elsewhere(run_dir / NSYS_LOG_FILE, run_dir)
            if stream is not None:  # it could not move its stream into the run folder (a full disk)
                manifest["nsys"]["stream_left_at"] = str(stream)
                raise CaptureFailed(
                    f"nsys wrote no report into the run folder ({said}){disk_note(run_dir)}; its raw stream "
                    f"is kept at {stream}: once there is room, `perfctl analyze {run_dir}` imports it"
                )
            raise CaptureFailed(
                f"nsys wrote no .nsys-rep (nsys {exit_description(exit_code)}; {said}){disk_note(run_dir)}"
            )
        if status == "ok" and pages_done < expected_pages:
            tail = last_line(run_dir / DRIVER_LOG_FILE)
            raise CaptureFailed(
                f"the driver finished {pages_done} of {expected_pages} {unit} "
                f"({_driver_end(exit_code)}); driver.log ends: {tail}"
            )
        exported = read_export_nvtx(sqlite)
        manifest["perfctl_nvtx_ranges"] = exported.perfctl_ranges
        if exported.perfctl_ranges == 0 and pages_done:
            evidence = gather_evidence(exported, manifest)
            manifest["nvtx_evidence"] = evidence.to_json()
            raise CaptureFailed(explain_missing_ranges(evidence, pages_done))
    except CaptureFailed as exc:
        if status == "ok":
            status, reason = "failed", str(exc)
            if "nvtx_evidence" not in manifest:  # that explanation weighs the foreign sessions itself
                reason += sessions_seen_note(manifest["nsys"].get("foreign_sessions_seen") or [])
    if exit_code < 0 and report.is_file():
        manifest["nsys"]["note"] = (
            f"nsys's command-line process was {exit_description(exit_code)}; its agent wrote the report "
            "once the driver had ended"
        )

    manifest["status"], manifest["reason"] = status, reason
    manifest["finished_at"] = utc_now()
    manifest["files"] = {
        p.name: p.stat().st_size
        for p in sorted(run_dir.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }
    RunFolder(run_dir).write_manifest(manifest)
    return CaptureResult(run_dir, status, reason, manifest)


def _driver_end(nsys_exit: int) -> str:
    """How the driver ended, from nsys's exit status (nsys passes on its program's status)."""
    killed = exit_description(nsys_exit)
    if killed.startswith("killed"):
        return f"the driver was {killed}, nsys exit {nsys_exit}"
    return f"nsys exit {nsys_exit}"
