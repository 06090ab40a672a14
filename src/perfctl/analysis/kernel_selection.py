"""Which kernels the Nsight Compute pass profiles: per stage, from the nsys pass's analysis, the
kernels that cover most of the stage's kernel time.

Replaying a kernel under ncu costs tens of passes, so profiling every kernel of a page is out of reach
on a real model; a stage's time is held by few kernels. Per stage, kernels are taken in order of
their time until `max_kernels` are taken or they cover `coverage` of the stage's kernel time,
whichever comes first; the coverage reached is kept, and the report states it.
"""

from __future__ import annotations

from typing import TypedDict

from perfctl.analysis.result import Analysis

DEFAULT_MAX_KERNELS = 10
DEFAULT_COVERAGE = 0.8


class SelectedKernel(TypedDict):
    name: str
    short_name: str
    count: int  # in the nsys pass, in this stage
    time_ns: int
    share_of_stage_kernel_time: float


class StageSelection(TypedDict):
    kernels: list[SelectedKernel]
    coverage: float  # the selected kernels' share of the stage's kernel time in the nsys pass
    stage_kernel_time_ns: int


class Selection(TypedDict):
    max_kernels: int
    coverage_goal: float
    export: str
    stages: dict[str, StageSelection]


def select_kernels(analysis: Analysis, max_kernels: int, coverage: float) -> Selection:
    """Per stage of the nsys pass's analysis (run with top_n >= max_kernels), the kernels to profile."""
    stages: dict[str, StageSelection] = {}
    for stage in analysis.get("stages", []):
        chosen: list[SelectedKernel] = []
        covered = 0.0
        for kernel in stage["top_kernels"]:
            if len(chosen) >= max_kernels or covered >= coverage:
                break
            share = float(kernel["share_of_range_kernel_time"])
            chosen.append(
                {
                    "name": kernel["name"],
                    "short_name": kernel["short_name"],
                    "count": kernel["count"],
                    "time_ns": kernel["time_ns"],
                    "share_of_stage_kernel_time": share,
                }
            )
            covered += share
        if chosen:
            stages[stage["stage"]] = {
                "kernels": chosen,
                "coverage": covered,
                "stage_kernel_time_ns": stage["kernel_time_ns"],
            }
    return {
        "max_kernels": max_kernels,
        "coverage_goal": coverage,
        "export": analysis.get("export", {}).get("path", ""),
        "stages": stages,
    }


def selected_names(selection: Selection) -> set[str]:
    return {k["name"] for s in selection["stages"].values() for k in s["kernels"]}
