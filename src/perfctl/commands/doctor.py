"""`perfctl doctor`: can this machine make a trustworthy capture? Each check returns a record with a
status, what it found and how to fix it; the CLI only renders them.

Statuses: `ok`; `warn` (captures work, but something is missing: no GPU, no NVML, an unknown peak);
`fail` (a capture would fail or come back incomplete); `skip` (the check does not apply here, or was
not asked for). The doctor's exit code is 1 when any check failed, else 0.

The decisive check is live: a tiny program (perfctl.driver.selftest) runs under the same `nsys
profile` command a capture uses, pushes NVTX ranges in perfctl's domain and, on a GPU, launches
kernels; the export is read back with perfctl's own reader. That catches what no version table can:
an `nvtx` package this nsys does not see (ranges missing), and an nsys whose CUPTI is older than the
program's CUDA (NVTX present, kernels missing; ../shared/docs/nsys-facts.md).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from perfctl import __version__, progress
from perfctl.capture.nsys import DEFAULT_TRACE, INSTALL_HINT, Nsys, find_nsys
from perfctl.capture.nsys_lock import NsysSessionLock
from perfctl.capture.nsys_sessions import NsysProcess, SessionWatcher
from perfctl.driver.nvtx_compat import installed_nvtx_version, nvtx_problem
from perfctl.errors import PerfctlError
from perfctl.hardware.nvml import nvml_gpus
from perfctl.stages import DOMAIN

Status = Literal["ok", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail", "skip")
SELFTEST_TIMEOUT_S = 600
CUPTI_FIX = (
    "run scripts/install-nsys.sh on this host: it links the host's newer CUPTI (CUDA toolkit or the "
    "nvidia-cuda-cupti wheel) into nsys's folder {target} as libcupti.so.{major} and libcupti.so.{major}.0; "
    "or link it there yourself"
)
TRANSFORMERS_FIX = "pip install 'transformers>=5.17' (native deepseek_ocr2)"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    found: str
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Gpu:
    name: str
    sm_count: int | None


@dataclass(frozen=True)
class TorchInfo:
    """What the torch perfctl's driver would import sees."""

    version: str | None
    cuda_build: str | None  # torch.version.cuda: None for a CPU build
    cuda_available: bool
    gpus: tuple[Gpu, ...]
    error: str | None = None


def probe_torch() -> TorchInfo:
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install raising anything on import
        return TorchInfo(None, None, False, (), f"{type(exc).__name__}: {exc}")
    available = bool(torch.cuda.is_available())
    gpus: list[Gpu] = []
    for i in range(torch.cuda.device_count() if available else 0):
        props = torch.cuda.get_device_properties(i)
        gpus.append(Gpu(props.name, int(props.multi_processor_count)))
    return TorchInfo(torch.__version__, torch.version.cuda, available, tuple(gpus))


def cupti_libraries(nsys: Nsys) -> list[str]:
    """The CUPTI libraries nsys can load from its own folder (the CUDA versions it can trace kernels of)."""
    folder = nsys.path.resolve().parent
    return sorted(p.name for p in folder.glob("libcupti.so.*") if p.exists())


def cupti_missing_for(nsys: Nsys | None, cuda_build: str | None) -> str | None:
    """The CUDA major version (e.g. "13") nsys 2022.x has no CUPTI for, or None. Newer nsys releases
    bring their own CUPTI for the CUDA of their time, so only the measured 2022.4 case is predicted;
    the live self-test is the proof either way."""
    major = (cuda_build or "").split(".")[0]
    if nsys is None or not nsys.version.startswith("2022.") or not major.isdigit() or int(major) < 12:
        return None
    have = cupti_libraries(nsys)
    return None if any(n.startswith(f"libcupti.so.{major}") for n in have) else major


def _cupti_versions(names: list[str]) -> str:
    """'10.0-10.2, 11.0-11.8, 13' for nsys 2022.4 with CUDA 13's CUPTI linked in (as 13 and 13.0)."""
    by_major: dict[str, list[str]] = {}
    for name in names:
        version = name.removeprefix("libcupti.so.")
        by_major.setdefault(version.split(".")[0], []).append(version)
    spans = []
    for major, versions in sorted(by_major.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else -1):
        minors = sorted(
            (v for v in versions if v != major), key=lambda v: [int(p) for p in re.findall(r"\d+", v)]
        )
        if len(minors) <= 1:
            spans.append(major if not minors or minors[0] == f"{major}.0" else minors[0])
        else:
            spans.append(f"{minors[0]}-{minors[-1]}")
    return ", ".join(spans) or "none"


def check_nsys(explicit: str | None = None) -> tuple[CheckResult, Nsys | None]:
    """nsys found (--nsys, $NSYS, PATH), its version, its importer and the CUPTI it carries."""
    try:
        nsys = find_nsys(explicit)
    except PerfctlError as exc:
        found = str(exc).replace(f": {INSTALL_HINT}", "")
        return CheckResult("nsys", "fail", found, INSTALL_HINT), None
    importer = nsys.importer()
    cupti = cupti_libraries(nsys)
    details = {
        "path": str(nsys.path),
        "version": nsys.version,
        "importer": str(importer),
        "importer_found": importer.exists(),
        "cupti": cupti,
    }
    found = f"nsys {nsys.version} at {nsys.path}"
    if not importer.exists():
        fix = (
            f"nsys needs its importer at {importer} (Debian puts it in /usr/lib/nsight-systems/"
            f"host-linux-x64): ln -s /usr/lib/nsight-systems/host-linux-x64 {importer.parent}, "
            "or run scripts/install-nsys.sh"
        )
        return CheckResult(
            "nsys",
            "fail",
            f"{found}; importer QdstrmImporter missing: captures leave only a .qdstrm",
            fix,
            details,
        ), nsys
    found += f"; importer QdstrmImporter present; CUPTI beside it: {_cupti_versions(cupti)}"
    return CheckResult("nsys", "ok", found, None, details), nsys


def check_nvtx(nvtx_version: str | None, nsys: Nsys | None) -> CheckResult:
    """Whether this nsys records ranges from this `nvtx` package (perfctl.driver.nvtx_compat)."""
    details = {"version": nvtx_version, "nsys": nsys.version if nsys else None}
    if nvtx_version is None:
        fix = "pip install 'nvtx>=0.2.10,<0.2.12' (the driver marks stages with it)"
        return CheckResult("nvtx", "fail", "the nvtx package is not installed", fix, details)
    problem = nvtx_problem(nvtx_version, nsys.version if nsys else None)
    if problem:  # "<what goes wrong>; <what to install>"
        found, _, fix = problem.partition("; ")
        return CheckResult("nvtx", "fail", found, fix or problem, details)
    if nsys is None:
        return CheckResult("nvtx", "ok", f"nvtx {nvtx_version} (no nsys to check it against)", None, details)
    return CheckResult(
        "nvtx", "ok", f"nvtx {nvtx_version}: known to work with nsys {nsys.version}", None, details
    )


def check_torch(info: TorchInfo) -> CheckResult:
    details = {"version": info.version, "cuda_build": info.cuda_build}
    if info.version is None:
        fix = "run scripts/setup.sh (CPU build), or install your CUDA build of torch (README: On a GPU)"
        return CheckResult("torch", "fail", f"torch cannot be imported ({info.error})", fix, details)
    build = f"CUDA {info.cuda_build} build" if info.cuda_build else "CPU build"
    return CheckResult("torch", "ok", f"torch {info.version} ({build})", None, details)


def check_cuda(info: TorchInfo, nsys: Nsys | None) -> CheckResult:
    """A GPU torch can use, and (nsys 2022.4) whether nsys carries a CUPTI for torch's CUDA."""
    details: dict[str, Any] = {"available": info.cuda_available, "gpus": [asdict(g) for g in info.gpus]}
    if info.version is None:
        return CheckResult("cuda", "skip", "no torch to ask", None, details)
    if not info.cuda_available:
        why = "a CPU build of torch" if not info.cuda_build else f"torch's CUDA {info.cuda_build} sees no GPU"
        return CheckResult(
            "cuda",
            "warn",
            f"no CUDA GPU ({why}): captures run on the CPU, with NVTX wall times only (no kernels, no MFU)",
            "on a GPU host, install a CUDA build of torch that matches the driver (README: On a GPU)",
            details,
        )
    names = ", ".join(g.name for g in info.gpus)
    found = f"{len(info.gpus)} GPU(s) for torch's CUDA {info.cuda_build}: {names}"
    major = cupti_missing_for(nsys, info.cuda_build)
    if nsys is not None and major is not None:
        return CheckResult(
            "cuda",
            "warn",
            f"{found}; nsys {nsys.version} carries no CUPTI for CUDA {major}: kernels will be missing",
            CUPTI_FIX.format(target=nsys.path.resolve().parent, major=major),
            details,
        )
    return CheckResult("cuda", "ok", found, None, details)


def check_transformers() -> CheckResult:
    try:
        version = metadata.version("transformers")
        from transformers import CONFIG_MAPPING
    except Exception as exc:  # not installed, or a broken install
        return CheckResult(
            "transformers", "fail", f"transformers cannot be imported ({exc})", TRANSFORMERS_FIX
        )
    has_model = "deepseek_ocr2" in CONFIG_MAPPING
    details = {"version": version, "deepseek_ocr2": has_model}
    if not has_model:
        found = f"transformers {version} has no deepseek_ocr2 model"
        return CheckResult("transformers", "fail", found, TRANSFORMERS_FIX, details)
    return CheckResult("transformers", "ok", f"transformers {version} with deepseek_ocr2", None, details)


def check_nvml(nvml: list[dict[str, Any]] | str, cuda_available: bool) -> CheckResult:
    """NVML (clocks, power and GPU identity in the clean pass): needed on a GPU, irrelevant on a CPU.
    `nvml` is what perfctl.hardware.nvml.nvml_gpus returned: GPUs, or why there are none."""
    if isinstance(nvml, str):
        fix = (
            "pip install nvidia-ml-py"
            if "not installed" in nvml
            else "NVML comes with the NVIDIA driver (libnvidia-ml.so.1): check nvidia-smi works"
        )
        if cuda_available:
            found = f"{nvml}, but torch sees a GPU: the timing pass records no clocks, power or energy"
            return CheckResult("nvml", "fail", found, fix, {"gpus": []})
        return CheckResult(
            "nvml", "warn", f"{nvml} (expected on a machine without an NVIDIA GPU)", fix, {"gpus": []}
        )
    if not nvml:
        return CheckResult("nvml", "warn", "NVML runs but lists no GPU", "check nvidia-smi", {"gpus": []})
    driver = nvml[0].get("driver")
    names = ", ".join(str(g["name"]) for g in nvml)
    return CheckResult("nvml", "ok", f"NVML, driver {driver}: {names}", None, {"gpus": nvml})


def check_gpu_peaks(gpus: list[Gpu], dtype: str = "bf16") -> CheckResult:
    """Whether perfctl's dense-peak table knows every GPU (else MFU / MBU come out unknown)."""
    from perfctl.hardware.peaks import resolve_bandwidth, resolve_peak

    if not gpus:
        return CheckResult("gpu_peak", "skip", "no GPU on this machine: MFU and MBU do not apply")
    rows: list[dict[str, Any]] = []
    unknown: list[str] = []
    for gpu in gpus:
        peak = resolve_peak(gpu.name, gpu.sm_count, dtype)
        bandwidth = resolve_bandwidth(gpu.name, gpu.sm_count)
        rows.append(
            {
                **asdict(gpu),
                "dense_tflops": peak.value,
                "bandwidth_gbs": bandwidth.value,
                "source": peak.source,
            }
        )
        if not peak.known:
            unknown.append(f"{gpu.name}: {peak.reason}")
    details = {"dtype": dtype, "gpus": rows}
    if unknown:
        fix = (
            "pass --peak-tflops and --peak-bandwidth-gbs to perfctl analyze, or add the board to "
            "perfctl.hardware.peaks with its datasheet source (docs/gpu-peaks.md)"
        )
        return CheckResult("gpu_peak", "warn", "; ".join(unknown), fix, details)
    known = "; ".join(
        f"{r['name']}: {r['dense_tflops']:g} TFLOP/s {dtype}, {r['bandwidth_gbs']:g} GB/s" for r in rows
    )
    return CheckResult("gpu_peak", "ok", known, None, details)


def check_selftest(nsys: Nsys | None, timeout_s: float = SELFTEST_TIMEOUT_S) -> CheckResult:
    """The live capture: perfctl.driver.selftest under `nsys profile`, its export read back. It runs
    under the machine-wide nsys lock (perfctl.capture.nsys_lock), waiting for another session."""
    if nsys is None:
        return CheckResult("selftest", "skip", "needs a working nsys (see the nsys check)")
    try:
        session = NsysSessionLock("perfctl doctor, self-test")
        session.take(wait=True, report=progress.step)
    except PerfctlError as exc:
        fix = "run perfctl doctor outside that process, or set PERFCTL_NSYS_LOCK to a usable file"
        return CheckResult("selftest", "fail", f"the self-test cannot run nsys: {exc}", fix)
    with session, tempfile.TemporaryDirectory(prefix="perfctl-doctor-") as tmp:
        return _selftest_in(nsys, Path(tmp), timeout_s, session)


def _selftest_in(nsys: Nsys, folder: Path, timeout_s: float, session: NsysSessionLock) -> CheckResult:
    facts_path, base = folder / "facts.json", folder / "selftest"
    program = [sys.executable, "-m", "perfctl.driver.selftest", str(facts_path)]
    cmd = nsys.profile_command(base, DEFAULT_TRACE, program)
    progress.step(f"self-test: a tiny program under nsys profile --trace={DEFAULT_TRACE}")
    started = time.monotonic()
    log = folder / "nsys.log"
    env = dict(os.environ) | session.child_env()
    watcher = SessionWatcher(own_holder=os.getpid())
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=folder, env=env)
        try:
            exit_code = watcher.wait(proc, timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return CheckResult(
                "selftest", "fail", f"nsys profile did not finish in {timeout_s:g} s", _by_hand(nsys)
            )
        except BaseException:  # Ctrl-C: no nsys left behind, as subprocess.run would do
            proc.kill()
            proc.wait()
            raise
    watcher.scan()
    seconds = round(time.monotonic() - started, 1)
    details: dict[str, Any] = {
        "command": cmd,
        "nsys_exit_code": exit_code,
        "seconds": seconds,
        "session_lock": session.record(),
        "foreign_sessions_seen": [p.to_json() for p in watcher.seen],
    }
    report, sqlite = base.with_suffix(".nsys-rep"), base.with_suffix(".sqlite")
    if not report.is_file():
        if list(folder.glob("*.qdstrm")):
            found, fix = (
                "nsys wrote only a .qdstrm (its importer failed)",
                "see the nsys check; run scripts/install-nsys.sh",
            )
        else:
            found, fix = (
                f"nsys wrote no report (exit {exit_code}); its output ends: {_tail(log)}",
                _by_hand(nsys),
            )
        return CheckResult("selftest", "fail", found, fix, details)
    try:
        if not sqlite.is_file():
            nsys.export_sqlite(report, sqlite)
        facts = json.loads(facts_path.read_text()) if facts_path.is_file() else None
        if facts is None or "error" in facts:
            why = facts["error"] if facts else f"it left no facts; nsys's output ends: {_tail(log)}"
            return CheckResult(
                "selftest", "fail", f"the self-test program failed: {why}", _by_hand(nsys), details
            )
        ranges, kernels = read_back(sqlite)
    except (PerfctlError, OSError, ValueError, sqlite3.DatabaseError) as exc:
        return CheckResult(
            "selftest", "fail", f"the self-test export cannot be read: {exc}", _by_hand(nsys), details
        )
    details |= {"facts": facts, "nvtx_ranges": ranges, "kernels": kernels}
    return judge_selftest(facts, ranges, kernels, nsys, details)


def read_back(sqlite: Path) -> tuple[int, int]:
    """(NVTX ranges of perfctl's domain, distinct CUDA kernels) in an export, read by perfctl's reader."""
    import numpy as np

    from perfctl.analysis.analyze import load_export
    from perfctl.nsys_export.events import KERNEL
    from perfctl.nsys_export.windows import load_gpu_activities

    tables = load_export(sqlite)
    ranges = int((tables.ranges["domain"] == DOMAIN).sum())
    acts = load_gpu_activities(tables.schema)  # a self-test export is small: one window
    kernels = len(np.unique(acts.activity[acts.kind == KERNEL]))
    return ranges, kernels


def judge_selftest(
    facts: dict[str, Any], ranges: int, kernels: int, nsys: Nsys, details: dict[str, Any]
) -> CheckResult:
    """What the program did (facts) against what arrived in the export."""
    pushed = int(facts.get("ranges_pushed", 0))
    if ranges < pushed:
        problem = nvtx_problem(facts.get("nvtx"), nsys.version)
        foreign = details.get("foreign_sessions_seen") or []
        found = f"{ranges} of {pushed} NVTX ranges in domain '{DOMAIN}' arrived in the export"
        if problem:
            fix = problem
        elif foreign:  # evidence of another cause: two nsys sessions at once lose ranges at random
            found += (
                f"; another nsys session ran beside the self-test ({NsysProcess(**foreign[0]).describe()})"
            )
            fix = "run perfctl doctor again once no other nsys session runs on this machine"
        else:
            fix = (
                f"nsys {nsys.version} did not record ranges of nvtx {facts.get('nvtx')}: try nvtx 0.2.11 "
                "(pip install 'nvtx==0.2.11'), which every nsys perfctl was tried with reads"
            )
        return CheckResult("selftest", "fail", found, fix, details)
    found = f"{ranges} of {pushed} NVTX ranges in domain '{DOMAIN}' arrived"
    if not facts.get("launched_kernels"):
        return CheckResult(
            "selftest", "ok", f"{found}; kernels: not applicable on CPU (torch sees no GPU)", None, details
        )
    if kernels == 0:
        major = str(facts.get("torch_cuda") or "").split(".")[0] or "N"
        target = nsys.path.resolve().parent
        cupti = _cupti_versions(cupti_libraries(nsys))
        found += (
            f", but 0 of the kernels launched on {facts.get('gpu')} did: nsys {nsys.version} cannot trace "
            f"CUDA {facts.get('torch_cuda')} programs (CUPTI beside it: {cupti})"
        )
        return CheckResult("selftest", "fail", found, CUPTI_FIX.format(target=target, major=major), details)
    return CheckResult(
        "selftest", "ok", f"{found}; {kernels} CUDA kernels on {facts.get('gpu')} arrived", None, details
    )


def _tail(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.is_file() else []
    # nsys draws progress bars with carriage returns: keep the last frame
    return re.split(r"\r", lines[-1])[-1].strip()[:300] if lines else "(nothing)"


def _by_hand(nsys: Nsys) -> str:
    """The self-test's command, to run in a scratch folder and read nsys's whole output."""
    program = [sys.executable, "-m", "perfctl.driver.selftest", "facts.json"]
    return "run it by hand to see nsys's whole output: " + " ".join(
        nsys.profile_command(Path("selftest"), DEFAULT_TRACE, program)
    )


def run_checks(nsys_path: str | None = None, skip_capture: bool = False) -> list[CheckResult]:
    """Every check, in the order the doctor prints them (the slow live capture last)."""
    from perfctl.commands.doctor_ncu import check_ncu, check_ncu_report  # (it imports CheckResult)

    nsys_check, nsys = check_nsys(nsys_path)
    torch_info = probe_torch()
    nvml = nvml_gpus()
    gpus = list(torch_info.gpus)
    if not gpus and isinstance(nvml, list):  # a GPU host with a CPU torch: the names NVML reports
        gpus = [Gpu(str(g["name"]), None) for g in nvml]
    results = [
        nsys_check,
        check_nvtx(installed_nvtx_version(), nsys),
        check_torch(torch_info),
        check_cuda(torch_info, nsys),
        check_transformers(),
        check_nvml(nvml, torch_info.cuda_available),
        check_gpu_peaks(gpus),
        check_ncu(torch_info.cuda_available, skip_capture),
        check_ncu_report(),
    ]
    if skip_capture:
        results.append(CheckResult("selftest", "skip", "skipped (--skip-capture)"))
    else:
        results.append(check_selftest(nsys))
    return results


def exit_code(results: list[CheckResult]) -> int:
    """1 when any check failed, else 0 (warnings and skipped checks do not fail the doctor)."""
    return 1 if any(r.status == "fail" for r in results) else 0


def report_json(results: list[CheckResult]) -> dict[str, Any]:
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    return {
        "perfctl_version": __version__,
        "ok": exit_code(results) == 0,
        "exit_code": exit_code(results),
        "counts": counts,
        "checks": [r.to_json() for r in results],
    }
