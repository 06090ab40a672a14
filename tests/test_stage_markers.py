"""Stage ranges on the real model, from module hooks (vision, prefill) and generate's own loop (each
decode step, token to token): balanced, ordered, one per decode step, whatever the decode loop."""

from __future__ import annotations

import pytest

from perfctl.driver.markers import StageMarker
from perfctl.resources import SAMPLE_PAGES_DIR
from perfctl.workloads.loader import load_workload
from perfctl.workloads.models import resolve_model


class RecordingEmitter:
    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, int | None]] = []

    def push(self, name: str, payload: int | None = None) -> None:
        self.events.append(("push", name, payload))

    def pop(self) -> None:
        self.events.append(("pop", None, None))


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    return load_workload(resolve_model("deepseek-ocr2-tiny"), "cpu", "float32", seed=0)


def test_vision_prefill_and_each_decode_step_are_marked(tiny) -> None:  # type: ignore[no-untyped-def]
    """The eager loop (the dynamic KV cache): each decode step from generate's logits processor."""
    import torch

    emitter = RecordingEmitter()
    marker = StageMarker(emitter)
    decoder, vision = tiny.stage_modules()
    new = 5
    marker.attach(tiny.model, decoder, vision, new_tokens=new)
    page = tiny.prepare(sorted(SAMPLE_PAGES_DIR.glob("*.png"))[0])
    args = {"max_new_tokens": new, "min_new_tokens": new, "do_sample": False}
    args["logits_processor"] = marker.logits_processors()
    with torch.inference_mode():
        marker.active = False  # loading: no stage ranges at all
        tiny.model.generate(**page.inputs, **args)
        assert emitter.events == []
        marker.begin_page(ranges=False)  # a warm-up page: timed, but no stage ranges
        tiny.model.generate(**page.inputs, **args)
        warm = marker.end_page()
        assert emitter.events == [] and warm.decode_steps == new - 1 and len(warm.decode_step_ns) == new - 1
        assert all(v > 0 for v in warm.wall_ns.values()) and warm.first_token_ns
        marker.begin_page()
        out = tiny.model.generate(**page.inputs, **args)
        times = marker.end_page()
    marker.detach()

    assert out.shape[1] == page.prompt_tokens + new
    pushes = [(name, payload) for kind, name, payload in emitter.events if kind == "push"]
    assert pushes == [("vision", None), ("prefill", None)] + [("decode", i) for i in range(1, new)]
    # strictly alternating push/pop: one stage open at a time, balanced at the end
    assert [kind for kind, _, _ in emitter.events] == ["push", "pop"] * (new + 1)
    assert times.decode_steps == new - 1
    assert all(v > 0 for v in times.wall_ns.values())


def test_prepared_inputs_hold_one_placeholder_per_image_token(tiny) -> None:  # type: ignore[no-untyped-def]
    page = tiny.prepare(sorted(SAMPLE_PAGES_DIR.glob("*.png"))[1])
    ids = page.inputs["input_ids"][0].tolist()
    assert ids.count(tiny.config.image_token_id) == page.image_tokens == 145
    assert page.prompt_tokens == len(ids) == 1 + 145 + 11
    pixels = page.inputs["pixel_values"]
    assert tuple(pixels.shape) == (1, 3, 256, 256)
    assert float(pixels.min()) >= -1.0 and float(pixels.max()) <= 1.0


def test_a_probe_sees_each_stage_between_synchronized_edges(tiny) -> None:  # type: ignore[no-untyped-def]
    """The clean pass's probe (CUDA events, peak memory on a GPU) opens right after the wait at a
    stage's start and closes right before the wait at its end, once per stage instance."""
    import torch

    log: list[str] = []

    class RecordingProbe:
        def begin_page(self) -> None:
            log.append("page")

        def begin(self, stage: str) -> None:
            log.append(f"begin {stage}")

        def end(self, stage: str) -> None:
            log.append(f"end {stage}")

    with pytest.raises(ValueError, match="synchronized"):
        StageMarker(RecordingEmitter(), probe=RecordingProbe())
    marker = StageMarker(RecordingEmitter(), sync=lambda: log.append("sync"), probe=RecordingProbe())
    decoder, vision = tiny.stage_modules()
    marker.attach(tiny.model, decoder, vision, new_tokens=3)
    page = tiny.prepare(sorted(SAMPLE_PAGES_DIR.glob("*.png"))[0])
    with torch.inference_mode():
        marker.begin_page()
        tiny.model.generate(
            **page.inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False,
            logits_processor=marker.logits_processors(),
        )  # fmt: skip
        marker.end_page()
    marker.detach()
    stages = ["vision", "prefill", "decode", "decode"]
    expected = ["sync", "page"]
    for stage in stages:
        expected += ["sync", f"begin {stage}", f"end {stage}", "sync"]
    assert log == expected


def test_time_inside_the_hooks_is_counted(tiny) -> None:  # type: ignore[no-untyped-def]
    """hooks_ns: what the page spent inside perfctl's hooks. A stage-edge wait of 2 ms (the clean
    pass synchronizes there) happens twice per stage: it must all be inside the counted time."""
    import time

    import torch

    marker = StageMarker(RecordingEmitter(), sync=lambda: time.sleep(0.002))
    decoder, vision = tiny.stage_modules()
    marker.attach(tiny.model, decoder, vision, new_tokens=4)
    page = tiny.prepare(sorted(SAMPLE_PAGES_DIR.glob("*.png"))[0])
    with torch.inference_mode():
        marker.begin_page()
        tiny.model.generate(
            **page.inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False,
            logits_processor=marker.logits_processors(),
        )  # fmt: skip
        times = marker.end_page()
    marker.detach()
    stages = 1 + 1 + 3  # vision, prefill, 3 decode steps: each opened and closed with a wait
    assert times.hooks_ns >= stages * 2 * 2_000_000
    assert times.hooks_ns < sum(times.wall_ns.values()) + 50_000_000


def test_static_cache_decode_steps_are_marked_from_the_logits_processor(tiny) -> None:  # type: ignore[no-untyped-def]
    """--decode static|compiled: vision and prefill from the hooks (the prefill forward is eager), each
    decode step from a logits processor, as in eager; no hook stays on the model outside a page's
    prefill (dynamo would trace it into a compiled decode forward)."""
    import torch

    from perfctl.driver.decode_loop import CacheProbe
    from perfctl.workloads.decode import STATIC, generate_args

    emitter = RecordingEmitter()
    marker = StageMarker(emitter)
    decoder, vision = tiny.stage_modules()
    new = 5
    marker.attach(tiny.model, decoder, vision, new_tokens=new)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in (tiny.model, decoder))
    probe = CacheProbe()
    probe.attach(tiny.model)
    args = generate_args(STATIC) | {"logits_processor": marker.logits_processors()}
    page = tiny.prepare(sorted(SAMPLE_PAGES_DIR.glob("*.png"))[0])
    hooked = (tiny.model, decoder)
    with torch.inference_mode():
        marker.begin_page()
        out = tiny.model.generate(
            **page.inputs, max_new_tokens=new, min_new_tokens=new, do_sample=False, **args
        )
        # prefill took its hooks off: every decode step's forward ran with none
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in hooked)
        times = marker.end_page()
    marker.detach()
    assert probe.cache_class == "StaticCache"
    assert out.shape[1] == page.prompt_tokens + new
    pushes = [(name, payload) for kind, name, payload in emitter.events if kind == "push"]
    assert pushes == [("vision", None), ("prefill", None)] + [("decode", i) for i in range(1, new)]
    assert [kind for kind, _, _ in emitter.events] == ["push", "pop"] * (new + 1)
    assert times.decode_steps == new - 1 and len(times.decode_step_ns) == new - 1
    assert times.first_token_ns and all(v > 0 for v in times.wall_ns.values())
