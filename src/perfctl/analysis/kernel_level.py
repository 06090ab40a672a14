"""A run folder's Nsight Compute pass, read and set beside its nsys pass: analysis.json's `ncu`.

The report (ncu/run.ncu-rep) gives each profiled kernel instance's counters (ncu_rep.reader); the
nsys pass's export says how often each launch configuration of those kernels ran per stage
(nsys_export.kernel_configs); the FLOP model gives the analytic FLOPs per stage (from the clean
pass's efficiency when the run has one, else from the nsys pass's own pages); measured_work puts
them together, stage by stage, with the roofs the charts are drawn against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from perfctl.analysis.measured_work import roofs_for, stage_measured_work
from perfctl.analysis.result import Analysis
from perfctl.analysis.result_ncu import NcuPass
from perfctl.errors import BadInput
from perfctl.ncu_rep.reader import read_ncu_report
from perfctl.nsys_export.kernel_configs import kernel_configs_by_stage
from perfctl.run_folder import RunFolder
from perfctl.run_manifest import NCU_COMMAND_FIELDS, NCU_SELECTION_FIELDS, read_record


@dataclass(frozen=True)
class NcuPassInputs:
    """What an Nsight Compute pass is set against, beside the analysis so far: one record, so that
    ncu_pass_or_warning hands analyze_ncu_pass all of it."""

    folder: RunFolder  # the run folder whose ncu/ holds the report
    export: Path  # the nsys pass's export: how often each launch configuration ran, per stage
    analytic_flops_per_page: dict[str, float] | None  # the FLOP model's per stage (None: unknown)
    dtype: str  # the run's compute dtype, for the table's peaks
    peak_tflops: float | None = None  # the user's dense peak TFLOP/s for the roofs (None: the table's)
    bandwidth_gbs: float | None = None  # the user's peak memory GB/s for the roofs (None: the table's)
    run_gpu: str | None = None  # the GPU the run's driver reported, which the report's must be


def analyze_ncu_pass(inputs: NcuPassInputs, analysis: Analysis) -> NcuPass:
    """analysis.json's `ncu` for a run folder whose ncu/ holds a report (BadInput when it cannot be
    read: the caller turns that into a warning, the rest of the analysis stands)."""
    analytic_flops_per_page, run_gpu = inputs.analytic_flops_per_page, inputs.run_gpu
    ncu = inputs.folder.ncu
    report = read_ncu_report(ncu.ncu_report)
    warnings = list(report["warnings"])
    command_file = read_record(ncu.ncu_command, NCU_COMMAND_FIELDS)
    selection_file = read_record(ncu.ncu_selection, NCU_SELECTION_FIELDS)
    warnings += [w for w in (command_file.warning(), selection_file.warning()) if w]
    command = command_file.data or {}  # (its fields checked against the schema: right-typed or absent)
    selection = selection_file.data
    kernels = report["kernels"]
    outside = sum(1 for k in kernels if k["stage"] is None)
    if outside:
        warnings.append(f"{outside} profiled kernels ran outside perfctl's stage ranges: not in any stage")
    names = {k["name"] for k in kernels if k["stage"] is not None}
    configs = kernel_configs_by_stage(inputs.export, names)
    stage_time = {s["stage"]: float(s["kernel_time_ns"]) for s in analysis.get("stages", [])}
    if analytic_flops_per_page is None:
        warnings.append("analytic FLOPs unknown for this run (see efficiency): measured FLOPs stand alone")
    device = report["devices"][0] if report["devices"] else None
    if run_gpu and device and device["name"] and device["name"] != run_gpu:
        warnings.append(
            f"the Nsight Compute report ran on {device['name']}, this run on {run_gpu}: it is not this "
            "run's report (copied in from elsewhere?), its figures are not this run's"
        )
    roofs = roofs_for(
        kernels,
        device["name"] if device else None,
        device["sm_count"] if device else None,
        inputs.dtype,
        inputs.peak_tflops,
        inputs.bandwidth_gbs,
    )
    result: NcuPass = {
        "report": str(ncu.ncu_report),
        "command": command.get("command"),
        "clock_control": command.get("clock_control"),
        "kernels": kernels,
        "stages": stage_measured_work(kernels, configs, stage_time, analytic_flops_per_page),
        "roofs": roofs,
        "warnings": warnings,
    }
    if selection is not None and "stages" in selection:
        result["selection"] = {
            stage: [str(k.get("name")) for k in s.get("kernels", [])]
            for stage, s in selection["stages"].items()
        }
    return result


def ncu_pass_or_warning(inputs: NcuPassInputs, analysis: Analysis) -> NcuPass | None:
    """analyze_ncu_pass, or None with a warning in the analysis when the report cannot be read."""
    try:
        return analyze_ncu_pass(inputs, analysis)
    except BadInput as exc:
        analysis["warnings"].append(f"the Nsight Compute pass is left out: {exc}")
        return None
