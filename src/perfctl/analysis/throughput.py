"""Throughput and per-request latency of a run: what a server would deliver at the run's batch size.

From the clean timing pass's records (no profiler; the nsys pass's when there is no clean pass, said
in `source`). A generate call of B rows delivers B pages; every row of a call gets its first token
when the call's prefill ends (`first_token_ns`, from the call's start) and its later tokens with the
call's decode steps, so each page's time to first token and time per output token are its call's.
Tokens per second count generated tokens of every row, over the calls' wall time (load, warm-up and
the gaps between calls are not a call's time); decode tokens per second count the rows' decode steps
over the decode stage's own time (CUDA events on a GPU, as the stage times MFU divides by).
"""

from __future__ import annotations

import statistics
from typing import Any

from perfctl.analysis.result_passes import LatencySpread, Throughput
from perfctl.records import stage_time_key
from perfctl.stages import DECODE


def _rows(record: dict[str, Any]) -> int:
    return int(record.get("batch_size", 1))


def _spread(values_ns: list[float]) -> LatencySpread:
    return {
        "mean_ms": statistics.fmean(values_ns) / 1e6,
        "p50_ms": statistics.median(values_ns) / 1e6,
        "max_ms": max(values_ns) / 1e6,
    }


def throughput(records: list[dict[str, Any]], source: str) -> Throughput | None:
    """The run's throughput over a pass's measured records; None without any."""
    calls = [r for r in records if not r.get("warmup") and r.get("wall_ns")]
    if not calls:
        return None
    pages = sum(_rows(r) for r in calls)
    wall_s = sum(int(r["wall_ns"]) for r in calls) / 1e9
    key = stage_time_key(calls)
    decode_s = sum(int((r.get(key) or {}).get(DECODE, 0)) for r in calls) / 1e9
    decode_tokens = sum(_rows(r) * int(r.get("decode_steps", 0)) for r in calls)
    first = [float(r["first_token_ns"]) for r in calls for _ in range(_rows(r)) if r.get("first_token_ns")]
    per_token = [
        (int(r["wall_ns"]) - int(r["first_token_ns"])) / (int(r["new_tokens"]) - 1)
        for r in calls
        for _ in range(_rows(r))
        if r.get("first_token_ns") and int(r.get("new_tokens", 0)) > 1
    ]
    positions = sum(_rows(r) * int(r.get("prompt_tokens", 0)) for r in calls)
    padding = sum(int(r.get("padding_tokens", 0)) for r in calls)
    return {
        "source": source,
        "batch_size": max(_rows(r) for r in calls),
        "generate_calls": len(calls),
        "pages": pages,
        "pages_per_s": pages / wall_s,
        "tokens_per_s": sum(_rows(r) * int(r.get("new_tokens", 0)) for r in calls) / wall_s,
        "decode_tokens_per_s": decode_tokens / decode_s if decode_s > 0 and decode_tokens else None,
        "time_to_first_token": _spread(first) if first else None,
        "time_per_output_token": _spread(per_token) if per_token else None,
        "padding_share": padding / positions if positions else 0.0,
    }
