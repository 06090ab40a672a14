"""Why a capture's export holds no perfctl NVTX range, said from evidence, for real: a live capture whose
driver's nvtx is disabled (NVTX_DISABLE, a real setting of the nvtx package) through the command line;
real exports made by nsys itself (the driver profiled without NVTX tracing; a program whose ranges are
all in another domain) read by the capture's own evidence reader; and the diagnosis over the evidence
of those real captures, varied one fact at a time. A pair the table knows to work, or does not know,
is never blamed."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import run_perfctl
from faults_support import own_nsys_session
from perfctl.capture.nsys import find_nsys
from perfctl.capture.nsys_sessions import NsysProcess
from perfctl.capture.nvtx_evidence import (
    NvtxEvidence,
    explain_missing_ranges,
    gather_evidence,
    read_export_nvtx,
)
from perfctl.driver.nvtx_compat import installed_nvtx_version, pair_verdict

pytestmark = [pytest.mark.nsys, pytest.mark.slow]

TINY = ("--device", "cpu", "--num-pages", "1", "--max-new-tokens", "2", "--warmup", "0")
NO_RANGES = "no NVTX ranges of domain 'perfctl' arrived in the export although the driver ran 1 page: "


@pytest.fixture(scope="module")
def disabled_nvtx_run(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, Any]:
    """`NVTX_DISABLE=1 perfctl capture`: the variable reaches the driver through nsys, and the nvtx
    package turns every call into a no-op."""
    root = tmp_path_factory.mktemp("nvtx-disabled")  # the profiles folder: the registry is written there
    env = dict(os.environ, NVTX_DISABLE="1")
    proc = run_perfctl(
        "capture", "--profiles", str(root), "--run-id", "run", *TINY, "--nsys", nsys_bin, env=env
    )
    run = root / "run"
    return run, proc


def test_a_driver_with_nvtx_disabled_is_named_as_the_cause(disabled_nvtx_run: tuple[Path, Any]) -> None:
    run, proc = disabled_nvtx_run
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    reason = manifest["reason"]
    assert manifest["status"] == "failed" and f"status: failed ({reason})" in proc.stdout
    assert reason.startswith(
        NO_RANGES + "the driver pushed no NVTX range, its nvtx package disabled by NVTX_DISABLE in its "
        "environment. Evidence: "
    ), reason
    nvtx, nsys = manifest["driver"]["nvtx"], manifest["nsys"]["version"]
    assert f"nvtx {nvtx} under nsys {nsys} is known to record ranges" in reason  # not blamed
    assert "does not see" not in reason and "known to lose" not in reason
    evidence = manifest["nvtx_evidence"]
    assert evidence["ranges_pushed"] == 0 and evidence["nvtx_enabled"] is False
    assert (
        evidence["pair"] == "records ranges" and evidence["export"]["ranges_by_domain"].get("perfctl", 0) == 0
    )
    assert manifest["perfctl_nvtx_ranges"] == 0 and manifest["pages_completed"] == 1
    # the registry keeps the same reason
    runs = run_perfctl("runs", "--profiles", str(run.parent), "--format", "json")
    assert runs.returncode == 0, runs.stderr
    row = next(r for r in json.loads(runs.stdout) if r["run_id"] == run.name)
    assert (row["status"], row["reason"]) == ("failed", reason)


def _profile(nsys: str, out: Path, trace: str, program: list[str]) -> Path:
    """A real `nsys profile` of `program` (under perfctl's nsys lock); its SQLite export."""
    with own_nsys_session("a diagnosis test's export") as env:
        proc = subprocess.run(
            [nsys, "profile", f"--trace={trace}", "--sample=none", "--cpuctxsw=none", "--export=sqlite",
             "--force-overwrite=true", "-o", str(out), *program],
            capture_output=True, text=True, env=env, timeout=600, check=False,
        )  # fmt: skip
    export = out.with_suffix(".sqlite")
    assert proc.returncode == 0 and export.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return export


@pytest.fixture(scope="module")
def untraced_driver(
    disabled_nvtx_run: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory, nsys_bin: str
) -> tuple[Path, dict[str, Any]]:
    """The driver itself, its nvtx enabled, profiled by nsys without NVTX tracing (--trace=osrt): it
    pushes every range, and nsys records none. Returns the export and the driver's driver-info.json."""
    run, _ = disabled_nvtx_run
    folder = tmp_path_factory.mktemp("untraced")
    workload = json.loads((run / "workload.json").read_text()) | {
        "records": str(folder / "pages.jsonl"),
        "driver_info": str(folder / "driver-info.json"),
        "log": str(folder / "driver.log"),
    }
    (folder / "workload.json").write_text(json.dumps(workload))
    program = [sys.executable, "-m", "perfctl.driver", str(folder / "workload.json")]
    export = _profile(nsys_bin, folder / "run", "osrt", program)
    return export, json.loads((folder / "driver-info.json").read_text())


def _evidence(export: Path, driver: dict[str, Any], nsys_bin: str) -> NvtxEvidence:
    manifest = {
        "nsys": {"version": find_nsys(nsys_bin).version, "foreign_sessions_seen": []},
        "driver": driver,
        "packages": {"nvtx": installed_nvtx_version()},
    }
    return gather_evidence(read_export_nvtx(export), manifest)


def test_ranges_pushed_and_none_recorded_with_a_working_pair_is_cause_unknown(
    untraced_driver: tuple[Path, dict[str, Any]], nsys_bin: str
) -> None:
    export, driver = untraced_driver
    evidence = _evidence(export, driver, nsys_bin)
    assert evidence.ranges_pushed == driver["nvtx_ranges_pushed"] > 0 and evidence.nvtx_enabled is True
    assert not evidence.export.has_table and evidence.pair == "records ranges"
    reason = explain_missing_ranges(evidence, 1)
    assert reason == (
        NO_RANGES + f"cause unknown. Evidence: the driver pushed {driver['nvtx_ranges_pushed']} ranges; "
        f"nvtx {evidence.nvtx_version} under nsys {evidence.nsys_version} is known to record ranges; "
        "no other nsys session was seen during the pass; the export has no NVTX_EVENTS table (nsys "
        "recorded no NVTX event of any domain)"
    )


def test_the_diagnosis_follows_each_fact(untraced_driver: tuple[Path, dict[str, Any]], nsys_bin: str) -> None:
    """The real evidence above, one fact changed at a time."""
    export, driver = untraced_driver
    real = _evidence(export, driver, nsys_bin)
    # a pair the table knows to lose the ranges is named, with its fix
    losing = dataclasses.replace(real, nvtx_version="0.2.12", pair=pair_verdict("0.2.12", real.nsys_version))
    said = explain_missing_ranges(losing, 1)
    assert said.startswith(NO_RANGES + f"nvtx 0.2.12 under nsys {real.nsys_version} is known to lose every")
    assert "pip install 'nvtx==0.2.11'" in said
    # a pair nobody measured is not blamed
    unknown = dataclasses.replace(
        real, nsys_version="2025.3.1.90", pair=pair_verdict(real.nvtx_version, "2025.3.1")
    )
    said = explain_missing_ranges(unknown, 1)
    assert said.startswith(NO_RANGES + "cause unknown. Evidence: ")
    assert f"nvtx {real.nvtx_version} under nsys 2025.3.1.90 is not in the known table" in said
    # another session seen during the pass is named as a cause
    beside = NsysProcess(4242, "root", "/usr/bin/nsys profile -o other python work.py", None, True)
    foreign = dataclasses.replace(real, foreign_sessions=[beside.describe()])
    said = explain_missing_ranges(foreign, 1)
    assert said.startswith(
        NO_RANGES + "another nsys session ran during the pass (pid 4242 (user root, not started by perfctl): "
        "/usr/bin/nsys profile -o other python work.py), and two at once lose NVTX ranges at random"
    )
    assert "no other nsys session was seen" not in said
    # a driver that did not say how many ranges it pushed (an older driver): said as such
    silent = dataclasses.replace(real, ranges_pushed=None, nvtx_enabled=None)
    assert "the driver did not record how many ranges it pushed" in explain_missing_ranges(silent, 3)
    assert "although the driver ran 3 pages: cause unknown" in explain_missing_ranges(silent, 3)


OTHER_DOMAIN_PROGRAM = """
import nvtx
nvtx.get_domain("perfctl")  # perfctl's domain created, none of its ranges pushed
for _ in range(3):
    nvtx.push_range("cub::DeviceScan::InclusiveScan", domain="CCCL")
    nvtx.pop_range(domain="CCCL")
"""


def test_ranges_of_other_domains_are_evidence(tmp_path: Path, nsys_bin: str) -> None:
    """A real export whose NVTX ranges are all of another domain: nsys recorded NVTX, just not ours."""
    export = _profile(nsys_bin, tmp_path / "other", "nvtx", [sys.executable, "-c", OTHER_DOMAIN_PROGRAM])
    exported = read_export_nvtx(export)
    assert exported.has_table and exported.perfctl_ranges == 0
    assert exported.ranges_by_domain == {"CCCL": 3} and "perfctl" in exported.domains_created
    evidence = gather_evidence(
        exported, {"nsys": {"version": find_nsys(nsys_bin).version}, "driver": {"nvtx_ranges_pushed": 5}}
    )
    assert explain_missing_ranges(evidence, 1).endswith(
        "the export holds NVTX ranges of other domains (CCCL: 3); domain 'perfctl' created"
    )
