"""Stage markers: NVTX ranges for vision / prefill / decode on any HF model, from module hooks and
generate's own loop, not edits of model code, so the same driver works on models perfctl did not write:
  * a forward pre-hook on each vision module (vision tower, projector) opens `vision`;
  * a forward pre-hook on the decoder opens `prefill` on the page's first decoder call, and a forward
    hook on the top-level model closes it (so the LM head belongs to prefill); both hooks are put on
    at each page's start and take themselves off when prefill ends;
  * every decode step is opened and closed by `on_token`, which generate's loop calls once per new
    token from a logits processor (driver.decode_loop; `logits_processors()`), in Python between two
    forward calls: token k closes decode step k-1 and opens step k (payload: k), the last token opens
    nothing.
A decode step therefore spans generate's whole loop iteration (the top-level forward with its
embedding lookup and per-step work before the decoder, the LM head, token selection, the stop check,
input preparation), one token's logits to the next's, whatever the decode loop (eager, static,
compiled): what a caller waits per token. No NVTX call runs inside a compiled forward (dynamo would
trace a module hook's NVTX calls into the compiled region). Runs whose driver-info.json has no
`decode_step_span` marked eager decode steps from the decoder's pre-hook to the top-level forward
hook (the decoder and the LM head alone: stages.DECODE_STEP_SPAN_FORWARD); compare refuses to set the two
spans side by side.
Opening a stage closes the previous one, so exactly one stage is open at a time and NVTX push/pop
stays balanced on the thread (generate runs the forward passes on the calling thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from perfctl.stages import DECODE, DOMAIN, PREFILL, VISION


class RangeEmitter(Protocol):
    def push(self, name: str, payload: int | None = None) -> None: ...
    def pop(self) -> None: ...


# ARGB values (names other than nvtx's few built-ins would need matplotlib).
_COLORS = {
    "page": 0xFF9E9E9E,
    "vision": 0xFF1F77B4,
    "prefill": 0xFFFF7F0E,
    "decode": 0xFF2CA02C,
    "load": 0xFF9467BD,
    "warmup": 0xFFBCBD22,
}


class NvtxEmitter:
    """Push/pop ranges in perfctl's NVTX domain through the `nvtx` package. `pushed` counts the ranges
    handed to an enabled nvtx (the capture's evidence when none arrive: zero is the driver's side);
    `enabled` is False when NVTX_DISABLE in the environment turns every nvtx call into a no-op."""

    def __init__(self, domain: str = DOMAIN) -> None:
        import nvtx  # imported here so that analysis-only installs never need it

        self._nvtx = nvtx
        self._domain = domain
        self.enabled = bool(getattr(nvtx, "enabled", lambda: True)())
        self.pushed = 0

    def push(self, name: str, payload: int | None = None) -> None:
        self._nvtx.push_range(name, color=_COLORS.get(name, 0xFFFFFFFF), domain=self._domain, payload=payload)
        if self.enabled:
            self.pushed += 1

    def pop(self) -> None:
        self._nvtx.pop_range(domain=self._domain)


@dataclass
class StageTimes:
    """Host-side clock of one page's stages (perf_counter_ns), kept beside the NVTX ranges: per stage,
    each decode step, and the time to first token (page start to the end of prefill, which yields
    the first new token)."""

    wall_ns: dict[str, int] = field(default_factory=lambda: {VISION: 0, PREFILL: 0, DECODE: 0})
    decode_steps: int = 0
    decoder_calls: int = 0
    decode_step_ns: list[int] = field(default_factory=list)
    first_token_ns: int | None = None
    started_at: int = 0
    # time the page spent inside perfctl's hooks (NVTX calls, clocks, and in the clean pass the
    # synchronizations and CUDA events): what the instrumentation itself costs the page, at most
    hooks_ns: int = 0


class StageProbe(Protocol):
    """Measures each stage between synchronized edges (driver.stage_probes.CudaStageProbe)."""

    def begin_page(self) -> None: ...
    def begin(self, stage: str) -> None: ...
    def end(self, stage: str) -> None: ...


class StageMarker:
    """`sync`, when given, runs at every stage edge before the clock is read (the clean timing pass
    passes torch.cuda.synchronize, so a stage's host time covers its GPU work); the profiled pass
    leaves it out so as not to change the timeline it records. `probe` (only with `sync`) is told
    of every stage edge right after the GPU is idle at its start and right before the wait at its
    end: CUDA events and peak memory per stage."""

    def __init__(
        self,
        emitter: RangeEmitter,
        clock: Callable[[], int] = time.perf_counter_ns,
        sync: Callable[[], None] | None = None,
        probe: StageProbe | None = None,
    ) -> None:
        if probe is not None and sync is None:
            raise ValueError("a stage probe needs synchronized stage edges")
        self._emit = emitter
        self._clock = clock
        self._sync = sync
        self._probe = probe
        self._open: str | None = None
        self._opened_at = 0
        self.active = False  # off while loading: no stage ranges there
        self._ranges = True  # NVTX stage ranges for this page (not for warm-up pages)
        self.page = StageTimes()
        self._handles: list[Any] = []
        self._prefill_handles: list[Any] = []  # the hooks on for a page's prefill only
        self._modules: tuple[Any, Any] | None = None  # (top, decoder) for those
        self._new_tokens = 0  # tokens per page (decode steps: one fewer)
        self._tokens_seen = 0

    def attach(self, top: Any, decoder: Any, vision_modules: Iterable[Any], new_tokens: int) -> None:
        """Hook the model for pages of `new_tokens` new tokens each; generate must run with
        `logits_processors()`, which marks the decode steps (see the module docstring)."""
        for module in vision_modules:
            self._handles.append(module.register_forward_pre_hook(self._on_vision))
        self._modules = (top, decoder)
        self._new_tokens = new_tokens

    def logits_processors(self) -> Any:
        """What generate's `logits_processor` argument must hold for the decode steps to be marked."""
        from transformers import LogitsProcessorList

        from perfctl.driver.decode_loop import token_processor

        return LogitsProcessorList([token_processor(self.on_token)])

    def detach(self) -> None:
        self._unhook_prefill()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook_prefill(self) -> None:
        if self._modules is not None and not self._prefill_handles:
            top, decoder = self._modules
            self._prefill_handles = [
                decoder.register_forward_pre_hook(self._on_decoder),
                top.register_forward_hook(self._on_top_done),
            ]

    def _unhook_prefill(self) -> None:
        # torch runs a module's hooks from a copy of its hook dicts: a hook may take itself off
        for handle in self._prefill_handles:
            handle.remove()
        self._prefill_handles.clear()

    def begin_page(self, ranges: bool = True) -> None:
        """Start timing a page's stages; `ranges=False` (warm-up pages) times them without NVTX
        ranges, so profiled stage figures never include warm-up work."""
        if self._sync is not None:
            self._sync()
        if self._probe is not None:
            self._probe.begin_page()
        self.page = StageTimes(started_at=self._clock())
        self.active = True
        self._ranges = ranges
        self._tokens_seen = 0
        self._hook_prefill()

    def end_page(self) -> StageTimes:
        began = time.perf_counter_ns()
        self._close()
        self._unhook_prefill()
        self.active = False
        self.page.hooks_ns += time.perf_counter_ns() - began
        return self.page

    def _on_vision(self, _module: Any, _args: Any) -> None:
        if self.active and self._open != VISION:
            began = time.perf_counter_ns()
            self._enter(VISION)
            self.page.hooks_ns += time.perf_counter_ns() - began

    def _on_decoder(self, _module: Any, _args: Any) -> None:
        if not self.active or self.page.decoder_calls:  # prefill is the page's first decoder call
            return
        began = time.perf_counter_ns()
        self._enter(PREFILL)
        self.page.decoder_calls += 1
        self.page.hooks_ns += time.perf_counter_ns() - began

    def _on_top_done(self, _module: Any, _args: Any, _output: Any) -> None:
        if self.active:
            began = time.perf_counter_ns()
            self._close()
            self._unhook_prefill()  # prefill is done: decode steps are marked by on_token
            self.page.hooks_ns += time.perf_counter_ns() - began

    def on_token(self) -> None:
        """generate's loop has the logits of a new token (prefill's, then each decode step's): close
        the step that made it, open the next unless this was the page's last token."""
        if not self.active:
            return
        began = time.perf_counter_ns()
        self._close()
        self._tokens_seen += 1
        if self._tokens_seen < self._new_tokens:
            self.page.decode_steps += 1
            self._enter(DECODE, payload=self.page.decode_steps)
        self.page.hooks_ns += time.perf_counter_ns() - began

    def _enter(self, stage: str, payload: int | None = None) -> None:
        self._close()
        if self._sync is not None:
            self._sync()
        if self._ranges:
            self._emit.push(stage, payload)
        if self._probe is not None:
            self._probe.begin(stage)
        self._open, self._opened_at = stage, self._clock()

    def _close(self) -> None:
        if self._open is not None:
            if self._probe is not None:
                self._probe.end(self._open)
            if self._sync is not None:
                self._sync()
            if self._ranges:
                self._emit.pop()
            now = self._clock()
            self.page.wall_ns[self._open] += now - self._opened_at
            if self._open == DECODE:
                self.page.decode_step_ns.append(now - self._opened_at)
            elif self._open == PREFILL and self.page.first_token_ns is None:
                self.page.first_token_ns = now - self.page.started_at
            self._open = None
