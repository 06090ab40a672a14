"""The Nsight Compute CLI: where it is, which version, the command perfctl profiles its chosen kernels
with, and how long that replay should take.

perfctl's ncu command profiles, inside perfctl's stage ranges only (`--nvtx --nvtx-include`), the
kernels the nsys pass chose (analysis.kernel_selection; matched on their demangled names, which nsys
and ncu spell alike), a bounded number of instances of each launch configuration
(`--filter-mode per-launch-config --launch-count K`), kernels replayed from CUDA graphs as the nodes
they are (`--graph-profiling node`), with ncu's clock control stated (`--clock-control`: ncu locks
the base clock by default, while MFU divides by the boost clock's peak).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from perfctl.analysis.kernel_selection import DEFAULT_COVERAGE, DEFAULT_MAX_KERNELS, Selection, selected_names
from perfctl.capture.tool_cli import tool_version
from perfctl.ncu_rep.metrics import PERFCTL_METRICS, PERFCTL_SECTIONS, PERFCTL_SET
from perfctl.nsys_export.kernel_configs import StageKernelConfigs
from perfctl.stages import DOMAIN

DEFAULT_NCU = Path("/usr/local/cuda/bin/ncu")
INSTALL_HINT = (
    "install Nsight Compute (it comes with the CUDA toolkit, https://developer.nvidia.com/nsight-compute), "
    "then put ncu on PATH or set NCU=/path/to/ncu"
)
# The fix NVIDIA documents for ERR_NVGPUCTRPERM (counters restricted to administrators).
PERMISSION_HINT = (
    "the GPU's performance counters are restricted to administrators: run as root, or load the "
    "driver with NVreg_RestrictProfilingToAdminUsers=0 (https://developer.nvidia.com/ERR_NVGPUCTRPERM)"
)
DEFAULT_INSTANCES = 1  # per launch configuration: counters of one instance are those of the next

# Replay passes per kernel instance, and the seconds one profiled instance costs besides its own
# kernel's passes (saving and restoring the memory it writes, reprogramming the counters, writing the
# result), measured with ncu 2025.3.1 on an H200 by scripts/ncu_replay_cost.sh (ncu_known_work.py
# under each collection: 3 and 9 instances against none profiled, wall 9.06 s and 10.93 s against
# 6.56 s with perfctl's set, 26.67 s for 9 with the full set): perfctl's collection 14 passes, 0.31 s
# per instance; the full set 38 passes, 2.06 s; 1.6 s once per run. A set not measured is estimated
# as the full set (an upper bound), and the estimate says so.
PASSES = {PERFCTL_SET: 14, "full": 38}
SECONDS_PER_INSTANCE = {PERFCTL_SET: 0.31, "full": 2.06}
SECONDS_PER_RUN = 1.6


@dataclass(frozen=True)
class NcuSettings:
    section_set: str = PERFCTL_SET
    max_kernels: int = DEFAULT_MAX_KERNELS
    coverage: float = DEFAULT_COVERAGE
    instances: int = DEFAULT_INSTANCES
    clock_control: str = "base"


@dataclass(frozen=True)
class Ncu:
    path: Path
    version: str  # e.g. "2025.3.1.0"

    def profile_command(
        self, settings: NcuSettings, selection: Selection, output_base: Path, log: Path, program: list[str]
    ) -> list[str]:
        names = sorted(selected_names(selection))
        return [
            str(self.path),
            *collection_args(settings),
            "--nvtx",
            *(f"--nvtx-include={DOMAIN}@{stage}/" for stage in selection["stages"]),
            "--kernel-name-base=demangled",
            f"--kernel-name=regex:^({'|'.join(ecmascript_escape(n) for n in names)})$",
            "--filter-mode=per-launch-config",
            f"--launch-count={settings.instances}",
            "--graph-profiling=node",
            f"--clock-control={settings.clock_control}",
            f"--log-file={log}",
            "--force-overwrite",
            f"--export={output_base}",
            *program,
        ]


def collection_args(settings: NcuSettings) -> list[str]:
    """What ncu collects: perfctl's sections (or the set asked for) and always perfctl's metrics."""
    collect = (
        [f"--section={section}" for section in PERFCTL_SECTIONS]
        if settings.section_set == PERFCTL_SET
        else [f"--set={settings.section_set}"]
    )
    return [*collect, f"--metrics={','.join(PERFCTL_METRICS)}"]


def ecmascript_escape(text: str) -> str:
    """`text` as a literal in ncu's regular expressions (ECMAScript syntax): its syntax characters
    escaped, nothing else (an escaped letter or `_` would be an error or a class there)."""
    return re.sub(r"([\\^$.*+?()\[\]{}|/])", r"\\\1", text)


def ncu_candidate() -> str | None:
    """Where to look for ncu: $NCU, then PATH, then the CUDA toolkit's default place."""
    return (
        os.environ.get("NCU") or shutil.which("ncu") or (str(DEFAULT_NCU) if DEFAULT_NCU.is_file() else None)
    )


def find_ncu() -> Ncu:
    """The ncu to use, or BadInput with the install hint."""
    path, version = tool_version(
        ncu_candidate(), "ncu", "Nsight Compute CLI", INSTALL_HINT, r"Version (\d{4}\.\d+(?:\.\d+)*)"
    )
    return Ncu(path=path, version=version)


@dataclass(frozen=True)
class ReplayEstimate:
    instances: int  # kernel instances ncu will profile (at most)
    passes_per_instance: int
    seconds: float
    basis: str  # what the figure rests on


def estimate_replay(
    selection: Selection, configs: StageKernelConfigs, settings: NcuSettings
) -> ReplayEstimate:
    """How many kernel instances the ncu pass profiles and about how long their replay takes: each
    launch configuration of a chosen kernel, up to `instances` times, each instance `passes` times
    its own duration plus the overheads measured above. (The driver's own run under ncu comes on top.)"""
    measured = settings.section_set in PASSES
    passes = PASSES[settings.section_set if measured else "full"]
    per_instance = SECONDS_PER_INSTANCE[settings.section_set if measured else "full"]
    basis = (
        f"{passes} passes and {per_instance} s per instance, measured for --ncu-set {settings.section_set}"
        if measured
        else f"the full set's {passes} passes and {per_instance} s per instance, an upper bound "
        f"({settings.section_set} not measured)"
    )
    seen: set[tuple[object, ...]] = set()
    instances, seconds = 0, SECONDS_PER_RUN
    for stage, chosen in selection["stages"].items():
        names = {k["name"] for k in chosen["kernels"]}
        for key, figures in configs.stages.get(stage, {}).items():
            if key[0] not in names or key in seen:
                continue
            seen.add(key)  # (ncu's launch count is per configuration over the whole run)
            n = min(settings.instances, figures.count)
            mean_s = figures.time_ns / max(figures.count, 1) / 1e9
            instances += n
            seconds += n * (passes * mean_s + per_instance)
    return ReplayEstimate(instances, passes, seconds, basis)


PROFILED_LINE = re.compile(r"^==PROF== Profiling ")


def profiled_so_far(log: Path) -> int:
    """Kernel instances ncu has profiled, from its log (one ==PROF== Profiling line each)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if PROFILED_LINE.match(line))
