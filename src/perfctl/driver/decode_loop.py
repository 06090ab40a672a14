"""What the driver needs around transformers' decode loop for `--decode static|compiled`.

* `token_processor`: a logits processor that calls the stage marker once per new token. generate
  calls its logits processors in Python on the calling thread after every forward (prefill's, then
  each decode step's), outside any compiled region, so decode steps are marked with no NVTX call
  inside a compiled forward (on an H200 such a probe kept one CUDA graph per step).
* `CacheProbe`: the class of the KV cache generate handed the model (DynamicCache, StaticCache):
  what transformers actually used, read once from the first forward call's keyword arguments (the
  name of the argument changed between transformers versions, so any `Cache` among them).
* `DynamoCounters`: torch._dynamo's own counters (graphs compiled, graph breaks, frame compile
  seconds), read before and after each generate: compilation belongs in the warm-up, and a measured
  page during which dynamo compiled again is named.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def token_processor(on_token: Callable[[], None]) -> Any:
    """A transformers LogitsProcessor that calls `on_token` and passes the scores through unchanged."""
    from transformers import LogitsProcessor

    class StageTokenMarker(LogitsProcessor):  # type: ignore[misc]  # transformers is untyped here
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            on_token()
            return scores

    return StageTokenMarker()


class CacheProbe:
    """Records the class of the KV cache of the first forward call after `attach`, then takes itself off."""

    def __init__(self) -> None:
        self.cache_class: str | None = None
        self._handle: Any = None

    def attach(self, top: Any) -> None:
        self._handle = top.register_forward_pre_hook(self._on_forward, with_kwargs=True)

    def _on_forward(self, _module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        from transformers.cache_utils import Cache

        found = [v for v in (*args, *kwargs.values()) if isinstance(v, Cache)]
        self.cache_class = type(found[0]).__name__ if found else "none"
        self.detach()

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


@dataclass(frozen=True)
class DynamoSnapshot:
    """torch._dynamo's counters at one moment, or (`since`) what it did between two moments."""

    graphs: int  # graphs dynamo compiled (counters["stats"]["unique_graphs"])
    graph_breaks: int  # graph breaks, all reasons (counters["graph_break"])
    compile_seconds: float | None  # dynamo's frame compile time; None: this torch does not say
    break_reasons: dict[str, int]

    def since(self, before: DynamoSnapshot) -> DynamoSnapshot:
        seconds = None
        if self.compile_seconds is not None and before.compile_seconds is not None:
            seconds = self.compile_seconds - before.compile_seconds
        reasons = {
            reason: n - before.break_reasons.get(reason, 0)
            for reason, n in self.break_reasons.items()
            if n > before.break_reasons.get(reason, 0)
        }
        return DynamoSnapshot(
            self.graphs - before.graphs, self.graph_breaks - before.graph_breaks, seconds, reasons
        )

    def record_json(self) -> dict[str, Any]:
        """A page record's `dynamo` object."""
        seconds = None if self.compile_seconds is None else round(self.compile_seconds, 3)
        return {"graphs_compiled": self.graphs, "graph_breaks": self.graph_breaks, "compile_seconds": seconds}

    def to_json(self) -> dict[str, Any]:
        """With the most frequent graph-break reasons (dynamo's own words)."""
        top = sorted(self.break_reasons.items(), key=lambda kv: -kv[1])[:BREAK_REASONS_KEPT]
        return self.record_json() | {"graph_break_reasons": dict(top)}


# graph-break reasons kept in driver-info.json: enough to name the causes, bounded whatever the model
BREAK_REASONS_KEPT = 10


def dynamo_snapshot() -> DynamoSnapshot:
    """torch._dynamo's counters now (all zero where dynamo was never imported: nothing compiled)."""
    dynamo_utils = sys.modules.get("torch._dynamo.utils")
    if dynamo_utils is None:
        return DynamoSnapshot(0, 0, 0.0, {})
    counters = dynamo_utils.counters
    breaks = {str(reason): int(n) for reason, n in counters["graph_break"].items()}
    seconds: float | None = None
    spent = getattr(dynamo_utils, "calculate_time_spent", None)
    if spent is not None:
        seconds = float(spent().get("entire_frame_compile", 0.0))
    return DynamoSnapshot(int(counters["stats"]["unique_graphs"]), sum(breaks.values()), seconds, breaks)


def cudagraph_skips() -> int:
    """How many compiled graphs inductor ran without CUDA graphs so far (counters["inductor"]
    ["cudagraph_skips"]; its reasons go to the log as "skipping cudagraphs due to ...")."""
    dynamo_utils = sys.modules.get("torch._dynamo.utils")
    return 0 if dynamo_utils is None else int(dynamo_utils.counters["inductor"]["cudagraph_skips"])


class CompileWatch:
    """torch._dynamo's counters around each generate of a static / compiled run: each page record gets
    a `dynamo` object (graphs compiled, graph breaks, compile seconds during it), a measured page
    during which dynamo compiled again `recompiled: true` and `recompilations`; `summary` is
    driver-info.json's `compile` object."""

    def __init__(self) -> None:
        self._start = dynamo_snapshot()
        self._start_skips = cudagraph_skips()
        self._warmup_walls: list[tuple[int, int]] = []  # (input shape, wall ns) of each warm-up run
        self._page_walls: dict[int, list[int]] = {}  # input shape -> measured pages' wall ns
        self._warmup = DynamoSnapshot(0, 0, 0.0, {})  # what dynamo did inside the warm-up runs
        self.recompiled_pages: list[int] = []  # measured pages' sequence numbers
        self.recompilations = 0

    def before(self) -> DynamoSnapshot:
        return dynamo_snapshot()

    def after(
        self, before: DynamoSnapshot, record: dict[str, Any], shape: int, wall_ns: int, warmup: bool
    ) -> dict[str, Any]:
        """The page record's additions for the generate that ran since `before`."""
        done = dynamo_snapshot().since(before)
        out: dict[str, Any] = {"dynamo": done.record_json()}
        if warmup:
            self._warmup_walls.append((shape, wall_ns))
            seconds = None
            if self._warmup.compile_seconds is not None and done.compile_seconds is not None:
                seconds = self._warmup.compile_seconds + done.compile_seconds
            self._warmup = DynamoSnapshot(
                self._warmup.graphs + done.graphs, self._warmup.graph_breaks + done.graph_breaks, seconds, {}
            )
        else:
            self._page_walls.setdefault(shape, []).append(wall_ns)
            if done.graphs:
                out |= {"recompiled": True, "recompilations": done.graphs}
                self.recompiled_pages.append(int(record["sequence"]))
                self.recompilations += done.graphs
        return out

    def summary(self) -> dict[str, Any]:
        """What dynamo did over the run (graphs, breaks and their reasons, compile seconds), how much of
        it fell in the warm-up, and how much longer the warm-up runs took than the median measured
        page of their shape (compilation and CUDA-graph capture both show there)."""
        beyond_ns = 0
        for shape, wall in self._warmup_walls:
            walls = sorted(self._page_walls.get(shape, []))
            if walls:
                beyond_ns += max(0, wall - walls[len(walls) // 2])
        warm = self._warmup.record_json()
        return dynamo_snapshot().since(self._start).to_json() | {
            "warmup_graphs_compiled": warm["graphs_compiled"],
            "warmup_compile_seconds": warm["compile_seconds"],
            "warmup_seconds_beyond_pages": round(beyond_ns / 1e9, 3),
            "recompiled_pages": self.recompiled_pages,
            "recompilations": self.recompilations,
            "cudagraph_skips": cudagraph_skips() - self._start_skips,
        }
