"""Operators of the torch.profiler pass joined to the kernels of the nsys pass.

The torch pass knows which kernels each operator launched (the profiler's own correlation); the nsys
pass knows every kernel of a stage with its count and time. They are separate runs of the same
workload, so kernels are matched by name within the stage. The two tools demangle differently
(nsys: `elementwise_kernel<(int)128, ...[lambda() (instance 3)]`; the profiler, through the C++ ABI:
`elementwise_kernel<128, ...{lambda()#3}`; or the raw mangled name when that fails), so each nsys
kernel is also known by its mangled name and by that name demangled the C++ ABI way.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any, cast

from perfctl.analysis.result import StageSummary
from perfctl.analysis.result_passes import OperatorStage


def _key(name: str) -> str:
    return "".join(name.split())


@functools.cache
def _cxa_demangle() -> Any:
    try:
        demangle = ctypes.CDLL("libstdc++.so.6").__cxa_demangle
    except (OSError, AttributeError):
        return None
    demangle.restype = ctypes.c_void_p
    demangle.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    return demangle


def cxx_demangle(mangled: str) -> str | None:
    """`mangled` demangled by the C++ ABI (libstdc++), as PyTorch's profiler names kernels; None when
    it is not a mangled name or no libstdc++ is at hand."""
    demangle = _cxa_demangle()
    if demangle is None or not mangled.startswith("_Z"):
        return None
    status = ctypes.c_int()
    pointer = demangle(mangled.encode(), None, None, ctypes.byref(status))
    if status.value != 0 or not pointer:
        return None
    try:
        return ctypes.string_at(pointer).decode(errors="replace")
    finally:
        ctypes.CDLL(None).free(ctypes.c_void_p(pointer))


# Self and total times are sums of float microseconds over many calls: a total below its self time by
# less than this is rounding; by more, the total is wrong (an operator's total holds its self time).
TOTAL_BELOW_SELF_SLACK_US = 0.01


def _withhold_short_totals(top: list[dict[str, Any]]) -> int:
    """Totals below their own self time (torch passes before the one-pass event reader wrote 0 for the
    total of calls they did not walk) set to None; how many were."""
    withheld = 0
    for op in top:
        for own, total in (("self_cpu_us", "cpu_total_us"), ("self_device_us", "device_total_us")):
            if op.get(total) is not None and op[total] < op[own] - TOTAL_BELOW_SELF_SLACK_US:
                op[total] = None
                withheld += 1
    return withheld


def ranked_operators(operators: dict[str, Any]) -> dict[str, OperatorStage]:
    """`operators` (torch/operators.json) with each stage's top operators ranked by self device time
    where the stage has any (then self CPU time), else by self CPU time, and `ranked_by`,
    `top_self_device_share` set. Torch passes before the device ranking kept and ordered their top
    operators by self CPU time, which put runtime calls with no device time (cudaLaunchKernel) first;
    ranked again here, a file of any age reads the same (among the operators it kept)."""
    for table in operators.values():
        top = table.get("top", [])
        table["totals_withheld"] = _withhold_short_totals(top)
        device_us = float(table.get("self_device_us") or 0)
        if device_us > 0:
            top.sort(key=lambda op: (-op["self_device_us"], -op["self_cpu_us"]))
            table["ranked_by"] = "self_device_us"
            table["top_self_device_share"] = sum(op["self_device_us"] for op in top) / device_us
        else:
            top.sort(key=lambda op: -op["self_cpu_us"])
            table["ranked_by"] = "self_cpu_us"
            table["top_self_device_share"] = None
    return cast(dict[str, OperatorStage], operators)  # (torch/operators.json's tables, now ranked)


def join_operators_to_kernels(
    operators: dict[str, Any], stages: list[StageSummary], mangled: dict[str, str]
) -> dict[str, OperatorStage]:
    """`operators` (torch/operators.json), ranked (`ranked_operators`), with `nsys_calls` and
    `nsys_time_ns` on every kernel of every top operator: the same kernel's count and time in that
    stage of the nsys capture, or None when the nsys pass did not record it under that stage; and per
    stage how many of those kernels were found (`kernels_matched` of `kernels_listed`). `mangled`:
    nsys demangled -> mangled names."""
    ranked_operators(operators)
    by_stage: dict[str, dict[str, Any]] = {}
    for s in stages:
        lookup = by_stage.setdefault(s["stage"], {})
        for name, value in s.get("kernel_time_by_name", {}).items():
            raw = mangled.get(name)
            for alias in (name, raw, cxx_demangle(raw) if raw else None):
                if alias:
                    lookup.setdefault(_key(alias), value)
    for stage, table in operators.items():
        lookup = by_stage.get(stage, {})
        listed = matched = 0
        for op in table.get("top", []):
            for kernel in op.get("kernels", []):
                calls, time_ns = lookup.get(_key(kernel["name"]), (None, None))
                kernel["nsys_calls"], kernel["nsys_time_ns"] = calls, time_ns
                listed += 1
                matched += time_ns is not None
        table["kernels_listed"], table["kernels_matched"] = listed, matched
    return cast(dict[str, OperatorStage], operators)  # (torch/operators.json's tables, now joined)
