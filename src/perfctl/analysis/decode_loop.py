"""analysis.json's `decode_loop`: what a `--decode static|compiled` run's driver recorded of
transformers' decode loop (the cache class, whether the compiled forward ran) and of torch._dynamo's
compilation per pass (perfctl.driver.decode_loop writes it): compile seconds, graph breaks, and the
measured pages during which dynamo compiled again. Pure functions over the run's records."""

from __future__ import annotations

from typing import Any

from perfctl.analysis.result_passes import DecodeCompile, DecodeLoop
from perfctl.workloads.decode import EAGER


def decode_mode(manifest: dict[str, Any]) -> str:
    """The run's --decode; a manifest without one (runs before --decode, and eager ones) is eager."""
    mode = (manifest.get("workload") or {}).get("decode")
    return mode if isinstance(mode, str) and mode else EAGER


def decode_loop(
    manifest: dict[str, Any], passes: dict[str, tuple[dict[str, Any] | None, list[dict[str, Any]]]]
) -> DecodeLoop | None:
    """None for an eager run. `passes`: pass name -> (its driver-info.json, its measured page records)."""
    mode = decode_mode(manifest)
    if mode == EAGER:
        return None
    driver = manifest.get("driver") or {}
    out: DecodeLoop = {
        "mode": mode,
        "kv_cache": _text(driver.get("kv_cache")),
        "compiled_forward": driver.get("compiled_forward")
        if isinstance(driver.get("compiled_forward"), bool)
        else None,
        "passes": {},
    }
    for name, (info, records) in passes.items():
        compiled = (info or {}).get("compile")
        if isinstance(compiled, dict) or records:
            out["passes"][name] = _pass_compile(compiled if isinstance(compiled, dict) else {}, records)
    return out


def _pass_compile(compiled: dict[str, Any], records: list[dict[str, Any]]) -> DecodeCompile:
    # the page records say it page by page even where driver-info.json was not finished (a crash)
    recompiled = [r for r in records if r.get("recompiled") and isinstance(r.get("sequence"), int)]
    reasons = compiled.get("graph_break_reasons")
    return {
        "graphs_compiled": _count(compiled.get("graphs_compiled")),
        "graph_breaks": _count(compiled.get("graph_breaks")),
        "graph_break_reasons": {str(k): int(v) for k, v in reasons.items()}
        if isinstance(reasons, dict)
        else {},
        "compile_seconds": _seconds(compiled.get("compile_seconds")),
        "warmup_compile_seconds": _seconds(compiled.get("warmup_compile_seconds")),
        "warmup_seconds_beyond_pages": _seconds(compiled.get("warmup_seconds_beyond_pages")),
        "recompiled_pages": [int(r["sequence"]) for r in recompiled],
        "cudagraph_skips": _count(compiled.get("cudagraph_skips")),
        "recompilations": sum(_count(r.get("recompilations")) or 0 for r in recompiled),
    }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
