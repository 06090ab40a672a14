"""The Nsight Compute pass's planning, on a real H200 export (tests/fixtures/h200-tiny-ocr2.sqlite.xz):
which kernels each stage hands to ncu, how often each launch configuration of them ran (against the
engine's own per-stage kernel counts and times), the estimate, and the ncu command. And what the
capture does without a GPU or without ncu: refuse in one line (exit 2), nothing made."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import decompress_fixture, run_perfctl
from ncu_reference import stage_config_counts
from perfctl.analysis.analyze import analyze_export
from perfctl.analysis.kernel_selection import select_kernels, selected_names
from perfctl.capture.ncu import (
    PASSES,
    SECONDS_PER_INSTANCE,
    SECONDS_PER_RUN,
    Ncu,
    NcuSettings,
    ecmascript_escape,
    estimate_replay,
)
from perfctl.nsys_export.kernel_configs import kernel_configs_by_stage


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return decompress_fixture("h200-tiny-ocr2.sqlite.xz", tmp_path_factory.mktemp("ncu-plan"))


def test_each_stage_hands_ncu_its_largest_kernels_until_the_goal(export: Path) -> None:
    analysis = analyze_export(export, top_n=20)
    selection = select_kernels(analysis, max_kernels=10, coverage=0.8)
    for stage in analysis["stages"]:
        chosen = selection["stages"][stage["stage"]]
        shares = [k["share_of_stage_kernel_time"] for k in chosen["kernels"]]
        top = [k["name"] for k in stage["top_kernels"][: len(shares)]]
        assert [k["name"] for k in chosen["kernels"]] == top  # largest first, none skipped
        assert chosen["coverage"] == pytest.approx(sum(shares))
        # stopped at 10 kernels or at 80 %, whichever came first; not before
        assert len(shares) == 10 or chosen["coverage"] >= 0.8
        assert len(shares) < 10 or sum(shares[:-1]) < 0.8
    few = select_kernels(analysis, max_kernels=2, coverage=0.99)
    assert all(len(s["kernels"]) == 2 for s in few["stages"].values())


def test_launch_configurations_add_up_to_the_engines_kernel_counts(export: Path) -> None:
    analysis = analyze_export(export, top_n=20)
    selection = select_kernels(analysis, max_kernels=20, coverage=1.0)
    configs = kernel_configs_by_stage(export, selected_names(selection))
    assert configs.pages == len(analysis["pages"]) == 2
    for stage in analysis["stages"]:
        by_name: dict[str, tuple[int, int]] = {}
        for (name, _grid, _block), figures in configs.stages[stage["stage"]].items():
            count, time_ns = by_name.get(name, (0, 0))
            by_name[name] = (count + figures.count, time_ns + figures.time_ns)
        for kernel in stage["top_kernels"]:
            assert by_name[kernel["name"]] == (kernel["count"], kernel["time_ns"]), kernel["short_name"]


def test_launch_configurations_equal_a_plain_sql_count(export: Path) -> None:
    reference = stage_config_counts(export)
    names = {key[0] for stage in reference.values() for key in stage}
    mine = kernel_configs_by_stage(export, names)
    for stage, counts in reference.items():
        assert {key: f.count for key, f in mine.stages[stage].items()} == dict(counts), stage
    assert sum(map(len, reference.values())) == 181  # (84 vision, 57 prefill, 40 decode configurations)


def test_the_estimate_counts_each_configuration_once(export: Path) -> None:
    analysis = analyze_export(export, top_n=10)
    selection = select_kernels(analysis, max_kernels=10, coverage=0.8)
    configs = kernel_configs_by_stage(export, selected_names(selection))
    one = estimate_replay(selection, configs, NcuSettings(instances=1))
    # ncu's launch count is per configuration over the whole run: a configuration two stages ran is
    # profiled once (in the first stage that runs it)
    first_seen = {}
    for stage, chosen in selection["stages"].items():
        names = {k["name"] for k in chosen["kernels"]}
        for key, figures in configs.stages[stage].items():
            if key[0] in names:
                first_seen.setdefault(key, figures)
    assert one.instances == len(first_seen) and one.passes_per_instance == PASSES["perfctl"]
    per_instance = [
        SECONDS_PER_INSTANCE["perfctl"] + PASSES["perfctl"] * f.time_ns / f.count / 1e9
        for f in first_seen.values()
    ]
    assert one.seconds == pytest.approx(SECONDS_PER_RUN + sum(per_instance))
    full = estimate_replay(selection, configs, NcuSettings(section_set="full", instances=1))
    assert full.seconds > one.seconds and "measured" in full.basis
    unmeasured = estimate_replay(selection, configs, NcuSettings(section_set="detailed"))
    assert unmeasured.passes_per_instance == PASSES["full"] and "not measured" in unmeasured.basis


def test_the_ncu_command_profiles_the_chosen_kernels_in_perfctls_stages(export: Path, tmp_path: Path) -> None:
    analysis = analyze_export(export, top_n=10)
    selection = select_kernels(analysis, max_kernels=3, coverage=0.8)
    ncu = Ncu(Path("/usr/local/cuda/bin/ncu"), "2025.3.1.0")
    cmd = ncu.profile_command(
        NcuSettings(instances=2, clock_control="none"),
        selection,
        tmp_path / "run",
        tmp_path / "ncu.log",
        ["python", "-m", "x"],
    )
    assert cmd[0] == str(ncu.path) and cmd[-3:] == ["python", "-m", "x"]
    assert {f"--nvtx-include=perfctl@{s}/" for s in ("vision", "prefill", "decode")} <= set(cmd)
    assert "--launch-count=2" in cmd and "--clock-control=none" in cmd and "--graph-profiling=node" in cmd
    assert "--filter-mode=per-launch-config" in cmd and "--kernel-name-base=demangled" in cmd
    (regex,) = [a.removeprefix("--kernel-name=regex:") for a in cmd if a.startswith("--kernel-name=")]
    names = selected_names(selection)
    # the pattern is every chosen name, escaped, and Python's regex reads the escapes as ncu's does
    assert regex == "^(" + "|".join(ecmascript_escape(n) for n in sorted(names)) + ")$"
    assert all(re.fullmatch(regex, n) for n in names)
    assert not re.fullmatch(regex, "void at::native::some_other_kernel(int)")


def test_without_a_gpu_or_ncu_the_capture_is_refused_at_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cpu = run_perfctl("capture", "--tool", "ncu", "--device", "cpu", "--out", str(out))
    assert cpu.returncode == 2 and "needs --device cuda" in cpu.stderr and not out.exists()
    env = {**os.environ, "NCU": str(tmp_path / "no-ncu-here")}
    missing = run_perfctl("capture", "--tool", "all", "--ncu", "--out", str(out), env=env)
    assert missing.returncode == 2 and "ncu at" in missing.stderr and not out.exists()
    assert "Traceback" not in cpu.stderr + missing.stderr
    torch = run_perfctl("capture", "--tool", "torch", "--ncu", "--out", str(out))
    assert torch.returncode == 2 and "--ncu is for --tool all" in torch.stderr and not out.exists()


def test_ncus_own_errors_are_read_from_its_log(tmp_path: Path) -> None:
    from perfctl.capture.ncu import PERMISSION_HINT, profiled_so_far
    from perfctl.capture.ncu_pass import ncu_failure

    log = tmp_path / "ncu.log"
    assert ncu_failure(log) is None and profiled_so_far(log) == 0  # (no log yet)
    # ==PROF== lines as ncu 2025.3.1 wrote them in the H200 probes' logs
    log.write_text(
        "==PROF== Connected to process 582 (/usr/bin/python3.12)\n"
        '==PROF== Profiling "nvjet_sm90_tst_256x128_64x4_1..." - 0 (1/1): 0%....50%....100% - 14 passes\n'
        '==PROF== Profiling "vectorized_elementwise_kernel" - 1 (1/1): 0%....50%....100% - 14 passes\n'
    )
    assert profiled_so_far(log) == 2 and ncu_failure(log) is None
    # the permission error is recognised by its code, ERR_NVGPUCTRPERM, as NVIDIA documents it
    log.write_text(
        "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU Performance "
        "Counters on the target device 0.\n"
    )
    assert ncu_failure(log) == PERMISSION_HINT
    log.write_text("==ERROR== Failed to prepare kernel for profiling\n")
    assert ncu_failure(log) == "Failed to prepare kernel for profiling"
