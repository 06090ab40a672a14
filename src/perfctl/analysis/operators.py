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


def join_operators_to_kernels(
    operators: dict[str, Any], stages: list[StageSummary], mangled: dict[str, str]
) -> dict[str, OperatorStage]:
    """`operators` (torch/operators.json) with `nsys_calls` and `nsys_time_ns` on every kernel of every
    top operator: the same kernel's count and time in that stage of the nsys capture, or None when
    the nsys pass did not record it under that stage. `mangled`: nsys demangled -> mangled names."""
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
        for op in table.get("top", []):
            for kernel in op.get("kernels", []):
                calls, time_ns = lookup.get(_key(kernel["name"]), (None, None))
                kernel["nsys_calls"], kernel["nsys_time_ns"] = calls, time_ns
    return cast(dict[str, OperatorStage], operators)  # (torch/operators.json's tables, now joined)
