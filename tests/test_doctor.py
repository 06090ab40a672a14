"""`perfctl doctor` on this machine, through the command line as a user runs it.

The self-test runs the real nsys under perfctl's machine-wide nsys lock, which the doctor takes itself
(waiting for another session), as a capture does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import run_perfctl
from perfctl.capture.nsys import find_nsys
from perfctl.capture.nsys_lock import LOCK_PATH_VAR, NsysSessionLock
from perfctl.capture.nsys_sessions import NsysProcess
from perfctl.commands.doctor import STATUSES, Gpu, check_gpu_peaks, check_nvml, judge_selftest, read_back
from perfctl.hardware.nvml import nvml_gpus

CHECKS = [
    "nsys",
    "nvtx",
    "torch",
    "cuda",
    "transformers",
    "nvml",
    "gpu_peak",
    "ncu",
    "ncu-report",
    "selftest",
]


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _assert_schema(report: dict[str, Any], returncode: int) -> dict[str, dict[str, Any]]:
    assert set(report) == {"perfctl_version", "ok", "exit_code", "counts", "checks"}
    assert report["exit_code"] == returncode and report["ok"] == (returncode == 0)
    assert [c["name"] for c in report["checks"]] == CHECKS
    for check in report["checks"]:
        assert set(check) == {"name", "status", "found", "fix", "details"}, check
        assert check["status"] in STATUSES and check["found"], check
        assert isinstance(check["details"], dict)
        if check["status"] in ("warn", "fail"):
            assert check["fix"], check  # every problem says how to fix it
    assert report["counts"] == {s: sum(c["status"] == s for c in report["checks"]) for s in STATUSES}
    return {c["name"]: c for c in report["checks"]}


@pytest.mark.nsys
def test_doctor_on_this_machine(nsys_bin: str) -> None:
    """The real doctor, live self-test included: nsys is fine, NVTX ranges arrive through it; on a GPU
    kernels arrive too, on a CPU they are not applicable."""
    proc = run_perfctl("doctor", "--nsys", nsys_bin, "--format", "json")
    checks = _assert_schema(json.loads(proc.stdout), proc.returncode)
    assert proc.returncode == 0, proc.stdout
    assert checks["nsys"]["status"] == "ok" and checks["nsys"]["details"]["importer_found"] is True
    assert checks["nsys"]["details"]["version"] == find_nsys(nsys_bin).version
    assert "QdstrmImporter present" in checks["nsys"]["found"]
    assert checks["nvtx"]["status"] == "ok"
    assert checks["torch"]["status"] == "ok" and checks["transformers"]["details"]["deepseek_ocr2"] is True
    selftest = checks["selftest"]
    assert selftest["status"] == "ok", selftest
    lock = selftest["details"]["session_lock"]
    assert lock["path"] and lock["acquired_at"]  # the self-test's nsys ran under the lock
    facts = selftest["details"]["facts"]
    assert selftest["details"]["nvtx_ranges"] == facts["ranges_pushed"] > 0
    if _cuda_available():
        assert selftest["details"]["kernels"] > 0
    else:
        assert "kernels: not applicable on CPU" in selftest["found"]
        assert selftest["details"]["kernels"] == 0
        assert checks["cuda"]["status"] == "warn" and checks["gpu_peak"]["status"] == "skip"
        assert checks["ncu"]["status"] in ("warn", "skip")  # no ncu here, or one that cannot look
        assert checks["nvml"]["status"] in ("warn", "ok")  # a CPU box may still have the NVIDIA driver


def test_the_self_test_goes_through_the_nsys_lock(nsys_bin: str, tmp_path: Path) -> None:
    """The self-test takes perfctl's nsys lock before it starts nsys: held by the doctor's own parent
    (a lock file of this test's own), it would wait forever, so the check fails saying so, with its fix."""
    lock = tmp_path / "nsys-session.lock"
    env = dict(os.environ, **{LOCK_PATH_VAR: str(lock)})
    with NsysSessionLock("pytest, the doctor's parent", path=lock) as held:
        held.try_take()
        assert held.has_flock
        proc = run_perfctl("doctor", "--nsys", nsys_bin, "--format", "json", env=env)
    checks = _assert_schema(json.loads(proc.stdout), proc.returncode)
    assert proc.returncode == 1
    selftest = checks["selftest"]
    assert selftest["status"] == "fail" and selftest["found"].startswith("the self-test cannot run nsys: ")
    # (its record may say it waits for a foreign session: another perfctl's nsys, on another lock file)
    assert f"held by perfctl pid {os.getpid()} (" in selftest["found"]
    assert "pytest, the doctor's parent" in selftest["found"]
    assert "PERFCTL_NSYS_LOCK" in selftest["fix"]


def test_broken_nsys_fails_with_its_fix() -> None:
    """An --nsys that is not nsys: that check fails with the install hint, the self-test cannot run,
    the doctor exits 1 (and does not stop at the first failure)."""
    proc = run_perfctl("doctor", "--nsys", "/bin/true", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    checks = _assert_schema(json.loads(proc.stdout), proc.returncode)
    assert checks["nsys"]["status"] == "fail" and "does not look like nsys" in checks["nsys"]["found"]
    assert "install-nsys.sh" in checks["nsys"]["fix"]
    assert checks["selftest"]["status"] == "skip" and "nsys" in checks["selftest"]["found"]
    assert checks["torch"]["status"] == "ok"  # the other checks still ran


def test_text_output_missing_nsys_and_skip_capture(tmp_path: Path) -> None:
    missing = tmp_path / "no-nsys-here"
    proc = run_perfctl("doctor", "--nsys", str(missing), "--skip-capture")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    nsys_line = next(i for i, line in enumerate(lines) if line.split()[:2] == ["fail", "nsys"])
    assert str(missing) in lines[nsys_line] and "not an executable file" in lines[nsys_line]
    assert lines[nsys_line + 1].strip().startswith("fix:") and "install-nsys.sh" in lines[nsys_line + 1]
    assert any(line.split()[:2] == ["skip", "selftest"] and "--skip-capture" in line for line in lines)
    assert {line.split()[1] for line in lines if line.split()[0] in STATUSES} == set(CHECKS)
    assert "1 fail" in lines[-1]


def test_read_back_counts_ranges_and_kernels_of_a_real_gpu_export(matmul_export: Path, nsys_bin: str) -> None:
    """The self-test's reader on a real H200 export: perfctl-domain ranges and distinct kernels, and
    the verdict on them for a program that launched kernels on a GPU."""
    ranges, kernels = read_back(matmul_export)
    assert ranges > 0 and kernels > 0
    facts = {"ranges_pushed": ranges, "launched_kernels": True, "gpu": "NVIDIA H200", "torch_cuda": "13.0"}
    result = judge_selftest(facts, ranges, kernels, find_nsys(nsys_bin), {})
    assert result.status == "ok" and f"{kernels} CUDA kernels on NVIDIA H200" in result.found


def test_kernels_missing_on_a_gpu_is_a_failure_with_the_cupti_fix(nsys_bin: str) -> None:
    """What the doctor concludes when the program launched kernels on a GPU and the export holds its
    ranges but no kernel: the CUDA 13 / old CUPTI case (nsys-facts.md). The live case needs a GPU;
    here the verdict on those counts is checked, with this machine's real nsys."""
    nsys = find_nsys(nsys_bin)
    facts = {"ranges_pushed": 2, "launched_kernels": True, "gpu": "NVIDIA H200", "torch_cuda": "13.0"}
    result = judge_selftest(facts, 2, 0, nsys, {})
    assert result.status == "fail" and "0 of the kernels" in result.found
    assert result.fix and "install-nsys.sh" in result.fix and "libcupti.so.13" in result.fix
    invisible = judge_selftest(facts | {"nvtx": "0.2.14"}, 0, 0, nsys, {})
    assert invisible.status == "fail" and "0 of 2 NVTX ranges" in invisible.found
    if nsys.version.startswith("2022."):
        assert invisible.fix and "nvtx==0.2.11" in invisible.fix


def test_ranges_lost_beside_another_nsys_session_say_so(nsys_bin: str) -> None:
    """Ranges missing while the watcher saw a foreign nsys session: the doctor names the session and
    says to run it again, instead of blaming a pair of versions known to work."""
    nsys = find_nsys(nsys_bin)
    beside = NsysProcess(4242, "root", "/usr/bin/nsys profile -o other python work.py", None, True)
    facts = {"ranges_pushed": 1, "launched_kernels": False, "nvtx": "0.2.11"}
    result = judge_selftest(facts, 0, 0, nsys, {"foreign_sessions_seen": [beside.to_json()]})
    assert result.status == "fail" and result.found.startswith("0 of 1 NVTX ranges")
    assert "another nsys session ran beside the self-test (pid 4242 (user root, not started by perfctl)" in (
        result.found
    )
    assert result.fix == "run perfctl doctor again once no other nsys session runs on this machine"


def test_gpu_peak_check_against_the_peak_table() -> None:
    """Known boards give their dense peak; an unknown one warns with the override as fix; none skips."""
    known = check_gpu_peaks([Gpu("NVIDIA H100 80GB HBM3", 132)])
    assert known.status == "ok" and "989.5 TFLOP/s bf16" in known.found
    unknown = check_gpu_peaks([Gpu("NVIDIA H100 80GB HBM3", 132), Gpu("NVIDIA Imaginary 9000", 7)])
    assert (
        unknown.status == "warn" and "Imaginary 9000" in unknown.found and "--peak-tflops" in str(unknown.fix)
    )
    assert [g["dense_tflops"] for g in unknown.details["gpus"]] == [989.5, None]
    assert check_gpu_peaks([]).status == "skip"


def test_nvml_missing_fails_only_where_torch_sees_a_gpu() -> None:
    reason = nvml_gpus()  # this machine's real answer
    if not isinstance(reason, str):
        pytest.skip("NVML works here")
    assert check_nvml(reason, cuda_available=False).status == "warn"
    assert check_nvml(reason, cuda_available=True).status == "fail"


def test_the_ncu_check_without_a_gpu(tmp_path: Path) -> None:
    """Missing ncu: a warning with the install fix (only the ncu pass needs it); an ncu on a machine
    without a GPU: found, its counters not checked."""
    from perfctl.commands.doctor_ncu import check_ncu

    missing = check_ncu(cuda_available=False, skip_capture=False)
    if missing.status == "warn":  # (an ncu may be on this machine's PATH)
        assert "needed only by capture --tool ncu" in missing.found and missing.fix
    fake = tmp_path / "ncu"
    fake.write_text(
        "#!/bin/sh\n"
        "echo 'NVIDIA (R) Nsight Compute Command Line Profiler'\n"
        "echo 'Version 2025.3.1.0 (build 1)'\n"
    )
    fake.chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NCU", str(fake))
        found = check_ncu(cuda_available=False, skip_capture=False)
    assert found.status == "skip" and "ncu 2025.3.1.0" in found.found and "no CUDA GPU" in found.found
