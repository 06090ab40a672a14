"""The torch.profiler pass's CPU events, read once from the profiler's kineto results.

`prof.events()` would build a FunctionEvent per event with some forty fields (stacks, strides,
concrete inputs, metadata...), and FunctionEvent's self and total times are properties that walk the
children again on every read: for a full-size model decoding a few hundred tokens (hundreds of
thousands of operators, kernels and launches) that took minutes. Here each event keeps only what the
operator table reads, and its figures are computed once. The arithmetic is torch's own
(torch/autograd/profiler.py `_parse_kineto_results`, profiler_util.py `EventList._build_tree` and the
FunctionEvent properties), done step by step in the same order, so every figure is the same float:
tests/test_torch_pass.py checks the table against one computed from `prof.events()` on a real profile.
"""

from __future__ import annotations

import bisect
import gc
import itertools
from typing import Any

# torch's device types by role (FunctionEvent: kernels of these devices count as device time;
# memory records of these devices are CPU / device memory)
_KERNEL_DEVICES = ("CUDA", "PrivateUse1", "XPU")
_CPU_MEMORY_DEVICES = ("CPU", "MKLDNN", "IDEEP")
_DEVICE_MEMORY_DEVICES = ("CUDA", "PrivateUse1", "HIP", "XPU")


class CpuEvent:
    """One CPU event (operator, runtime call, record_function range or top-level memory record) with
    the figures torch's FunctionEvent would give it. Times in microseconds, memory in bytes."""

    __slots__ = (
        "children",
        "cpu_memory",
        "cpu_total_us",
        "device_memory",
        "device_total_us",
        "end_us",
        "input_shapes",
        "is_async",
        "kernels",
        "legacy",
        "name",
        "parent",
        "self_cpu_memory",
        "self_cpu_us",
        "self_device_memory",
        "self_device_us",
        "start_us",
        "thread",
    )

    def __init__(
        self, name: str, start_us: float, end_us: float, thread: int, is_async: bool, input_shapes: Any
    ) -> None:
        self.name = name
        self.start_us = start_us
        self.end_us = end_us
        self.thread = thread
        self.is_async = is_async
        self.input_shapes = input_shapes
        self.legacy = False
        self.kernels: list[tuple[str, Any]] = []  # (kernel name, device microseconds), launch order
        self.parent: CpuEvent | None = None
        self.children: list[CpuEvent] = []
        # set by read_cpu_events: bytes allocated inside the event, then the figures
        self.cpu_memory = self.device_memory = 0
        self.cpu_total_us: Any = 0
        self.self_cpu_us: Any = 0
        self.device_total_us: Any = 0
        self.self_device_us: Any = 0
        self.self_cpu_memory = self.self_device_memory = 0


def read_cpu_events(prof: Any) -> list[CpuEvent]:
    """The CPU events of a stopped `torch.profiler.profile`, in the order `prof.events()` lists them,
    with parents, children, the kernels each one launched and its self / total figures."""
    # Hundreds of thousands of new objects, none of them garbage: the cyclic collector would walk them
    # all again and again while they are built (a third of the time), for nothing to collect.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _read_cpu_events(prof)
    finally:
        if collecting:
            gc.enable()


def _read_cpu_events(prof: Any) -> list[CpuEvent]:
    from torch._C import _get_privateuse1_backend_name
    from torch._C._autograd import _KinetoEvent
    from torch.autograd.profiler_util import (
        MEMORY_EVENT_NAME,
        OUT_OF_MEMORY_EVENT_NAME,
        _filter_name,
        _rewrite_name,
    )
    from torch.profiler import DeviceType

    profiler = prof.profiler
    results = profiler.kineto_results
    if not results:
        return []
    use_device = profiler.use_device
    legacy_elapsed = (
        "privateuse1_elapsed_us"
        if use_device == _get_privateuse1_backend_name()
        else ("cuda_elapsed_us" if use_device == "cuda" else None)
    )
    cpu = DeviceType.CPU
    kernel_devices = {getattr(DeviceType, d) for d in _KERNEL_DEVICES if hasattr(DeviceType, d)}
    cpu_memory_devices = {getattr(DeviceType, d) for d in _CPU_MEMORY_DEVICES if hasattr(DeviceType, d)}
    device_memory_devices = {getattr(DeviceType, d) for d in _DEVICE_MEMORY_DEVICES if hasattr(DeviceType, d)}
    trace_start_ns = results.trace_start_ns()
    kineto = _KinetoEvent  # its accessors, looked up once: they run a dozen times per event
    name_of, start_of, end_of, device_of = kineto.name, kineto.start_ns, kineto.end_ns, kineto.device_type
    linked_of, correlation_of, shapes_of = kineto.linked_correlation_id, kineto.correlation_id, kineto.shapes
    async_of, thread_of, end_thread_of = kineto.is_async, kineto.start_thread_id, kineto.end_thread_id
    hidden_of = getattr(kineto, "is_hidden_event", None)  # torch >= 2.5 hides some events
    legacy_of = None if legacy_elapsed is None else getattr(kineto, legacy_elapsed)

    names: dict[str, str | None] = {}  # kineto name -> torch's name, None where torch drops the event
    kept: list[tuple[str, Any]] = []
    memory_records: list[Any] = []
    oom_records: list[Any] = []
    for kineto_event in results.events():
        kineto_name = name_of(kineto_event)
        if kineto_name not in names:
            names[kineto_name] = (
                None if _filter_name(kineto_name) else _rewrite_name(name=kineto_name, with_wildcard=True)
            )
        name = names[kineto_name]
        if name is not None:
            kept.append((name, kineto_event))
        elif kineto_name == MEMORY_EVENT_NAME:
            memory_records.append(kineto_event)
        elif kineto_name == OUT_OF_MEMORY_EVENT_NAME:
            oom_records.append(kineto_event)
    memory = _MemoryRecords(memory_records, cpu_memory_devices, device_memory_devices)

    events: list[CpuEvent] = []
    frontend: list[tuple[CpuEvent, int]] = []  # CPU operators by correlation id (their launches link to it)
    linked: dict[int, list[tuple[str, Any, CpuEvent | None]]] = {}
    for name, kineto_event in kept:
        if hidden_of is not None and hidden_of(kineto_event):
            continue
        start_ns, end_ns = start_of(kineto_event), end_of(kineto_event)
        start_us, end_us = (start_ns - trace_start_ns) / 1000, (end_ns - trace_start_ns) / 1000
        correlation = linked_of(kineto_event)
        device = device_of(kineto_event)
        if device != cpu:  # a kernel, memcpy or memset: device time of the operator that launched it
            if correlation > 0:
                duration = (end_us - start_us) if device in kernel_devices else None
                linked.setdefault(correlation, []).append((name, duration, None))
            continue
        thread = thread_of(kineto_event)
        is_async = async_of(kineto_event) or thread != end_thread_of(kineto_event)
        event = CpuEvent(name, start_us, end_us, thread, is_async, shapes_of(kineto_event))
        event.cpu_memory, event.device_memory = memory.inside(start_ns, end_ns)
        if not is_async and legacy_of is not None:
            elapsed = legacy_of(kineto_event)
            if elapsed > 0:  # an event the profiler timed on the device itself: one kernel of its name
                event.kernels.append((name, elapsed))
                event.legacy = True
        events.append(event)
        if correlation > 0:
            linked.setdefault(correlation, []).append((name, None, event))
        elif correlation == 0 and not is_async:
            frontend.append((event, correlation_of(kineto_event)))
    for operator, correlation in frontend:
        for name, duration, runtime_call in linked.get(correlation, ()):
            if duration is not None:
                operator.kernels.append((name, duration))
            elif runtime_call is not None:  # a runtime call (cudaLaunchKernel...) nests in its operator
                runtime_call.thread = operator.thread
    for record in memory.unused():  # memory records outside every CPU event: events of their own
        events.append(_memory_event(record, trace_start_ns, memory))
    events.extend(_memory_event(record, trace_start_ns, memory) for record in oom_records)
    events.sort(key=lambda e: (e.start_us, -e.end_us))
    _nest(events)
    events = _merge_repeated_names(events)
    _compute_figures(events, device_timed=bool(use_device))
    return events


class _MemoryRecords:
    """The profiler's memory records by start time: bytes allocated inside an interval, summed by
    prefix sums, and which records fell inside some CPU event."""

    def __init__(self, records: list[Any], cpu_devices: set[Any], device_devices: set[Any]) -> None:
        self._cpu_devices, self._device_devices = cpu_devices, device_devices
        ordered = sorted((r.start_ns(), i) for i, r in enumerate(records))
        self._records = records
        self._start_ns = [start for start, _ in ordered]
        self._order = [i for _, i in ordered]
        self._cpu = [0, *itertools.accumulate(self.cpu_bytes(records[i]) for i in self._order)]
        self._device = [0, *itertools.accumulate(self.device_bytes(records[i]) for i in self._order)]
        self._covered = [0] * (len(records) + 1)  # +1 / -1 at interval edges: a record inside any if > 0

    def cpu_bytes(self, record: Any) -> int:
        return int(record.nbytes()) if record.device_type() in self._cpu_devices else 0

    def device_bytes(self, record: Any) -> int:
        return int(record.nbytes()) if record.device_type() in self._device_devices else 0

    def inside(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        first = bisect.bisect_left(self._start_ns, start_ns)
        last = bisect.bisect_right(self._start_ns, end_ns)
        if first >= last:
            return 0, 0
        self._covered[first] += 1
        self._covered[last] -= 1
        return self._cpu[last] - self._cpu[first], self._device[last] - self._device[first]

    def unused(self) -> list[Any]:
        """Records no CPU event covered, in the profiler's order."""
        covered = set()
        for position, depth in enumerate(itertools.accumulate(self._covered[:-1])):
            if depth > 0:
                covered.add(self._order[position])
        return [r for i, r in enumerate(self._records) if i not in covered]


def _memory_event(record: Any, trace_start_ns: int, memory: _MemoryRecords) -> CpuEvent:
    at_us = (record.start_ns() - trace_start_ns) / 1000
    event = CpuEvent(record.name(), at_us, at_us, record.start_thread_id(), False, [])
    event.cpu_memory, event.device_memory = memory.cpu_bytes(record), memory.device_bytes(record)
    return event


def _nest(events: list[CpuEvent]) -> None:
    """Parent and children per thread: an event's parent is the innermost earlier one on its thread
    whose interval holds it (async events take no part)."""
    open_by_thread: dict[int, list[CpuEvent]] = {}
    for event in events:  # already by start, longest first
        if event.is_async:
            continue
        stack = open_by_thread.setdefault(event.thread, [])
        while stack:
            parent = stack[-1]
            if event.start_us >= parent.end_us or event.end_us > parent.end_us:
                stack.pop()
            else:
                parent.children.append(event)
                event.parent = parent
                break
        stack.append(event)


def _merge_repeated_names(events: list[CpuEvent]) -> list[CpuEvent]:
    """An event that is the only child of an event of the same name is folded into it, as torch does:
    the parent takes over its children and its kernels."""
    while True:
        merged: set[int] = set()
        for index, event in enumerate(events):
            parent = event.parent
            if parent is not None and parent.name == event.name and len(parent.children) == 1:
                parent.children = event.children
                parent.kernels = event.kernels
                for child in event.children:
                    child.parent = parent
                merged.add(index)
        if not merged:
            return events
        events = [e for i, e in enumerate(events) if i not in merged]


def _compute_figures(events: list[CpuEvent], device_timed: bool) -> None:
    # children come after their parent in `events`, so backwards every child is done before its parent
    for event in reversed(events):
        event.cpu_total_us = event.end_us - event.start_us
        if event.is_async:
            continue  # torch gives async events no self figures and no device time
        event.self_cpu_us = event.cpu_total_us - sum(c.end_us - c.start_us for c in event.children)
        event.self_cpu_memory = event.cpu_memory - sum(c.cpu_memory for c in event.children)
        event.self_device_memory = event.device_memory - sum(c.device_memory for c in event.children)
        if device_timed:
            if event.legacy:
                event.device_total_us = sum(duration for _, duration in event.kernels)
            else:
                event.device_total_us = sum(duration for _, duration in event.kernels) + sum(
                    c.device_total_us for c in event.children
                )
            event.self_device_us = event.device_total_us - sum(c.device_total_us for c in event.children)
