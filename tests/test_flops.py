"""Analytic FLOPs against PyTorch's FlopCounterMode on the real modules, stage by stage.

The counter multiplies out every matrix product it sees; perfctl counts attention as the pairs the
mask lets through. So each comparison recomputes perfctl's attention terms as the full query x key
square the eager kernels compute (`Term.with_square`) and must then agree within 2% per stage.
Attention runs eager (the counter sees SDPA as 0 FLOPs on CPU) and MoE experts run eager (the
counter does not know transformers' grouped-matmul experts op).
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest

from conftest import run_perfctl
from perfctl.flops import count_flops, load_config
from perfctl.flops.deepseek_ocr2 import TILE_SIDE, deepseek_ocr2_flops

torch = pytest.importorskip("torch")
from flop_counting import as_counter_sees, counter_flops  # noqa: E402


def _model(config: Any, device: str = "cpu") -> Any:
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(
            config, attn_implementation="eager", experts_implementation="eager"
        )
    return model.eval()


def _check_stages(config: Any, model: Any, tiles: int, prompt_text: int, new_tokens: int) -> None:
    expected = deepseek_ocr2_flops(config, tiles, prompt_text, new_tokens)
    side = config.vision_config.sam_config.image_size
    pixel_values = torch.randn(1, 3, side, side)
    local = torch.randn(tiles, 3, TILE_SIDE, TILE_SIDE) if tiles else None
    inner = model.model
    with torch.no_grad():
        views = [tiles] if tiles else None
        vision = counter_flops(lambda: inner.get_image_features(pixel_values, local, views))
        assert vision == pytest.approx(as_counter_sees(expected.vision), rel=0.02)

        text = config.text_config
        embeds = torch.randn(1, expected.prompt_total, text.hidden_size)
        state: dict[str, Any] = {}

        def prefill() -> None:
            out = inner.language_model(inputs_embeds=embeds, use_cache=True)
            model.lm_head(out.last_hidden_state[:, -1:])
            state["cache"] = out.past_key_values

        assert counter_flops(prefill) == pytest.approx(as_counter_sees(expected.prefill), rel=0.02)
        for step in expected.decode_steps[:3]:

            def decode() -> None:
                out = inner.language_model(
                    inputs_embeds=torch.randn(1, 1, text.hidden_size), cache=state["cache"], use_cache=True
                )
                model.lm_head(out.last_hidden_state)
                state["cache"] = out.past_key_values

            assert counter_flops(decode) == pytest.approx(as_counter_sees(step), rel=0.02)


@pytest.mark.parametrize("tiles", [0, 1])
def test_tiny_model_every_stage_matches_the_counter(tiles: int) -> None:
    config, _ = load_config("deepseek-ocr2-tiny")
    _check_stages(config, _model(config), tiles, prompt_text=11, new_tokens=4)


def test_full_size_vision_on_meta_matches_the_counter() -> None:
    """The full-size SAM + Qwen2-style encoder, global view and two tiles, weights on the meta device."""
    config, _ = load_config("deepseek-ocr2")
    model = _model(config, device="meta")
    expected = deepseek_ocr2_flops(config, 2, 0, 1)
    pixels = torch.empty(1, 3, 1024, 1024, device="meta")
    tiles = torch.empty(2, 3, TILE_SIDE, TILE_SIDE, device="meta")
    with torch.no_grad():
        counted = counter_flops(lambda: model.model.get_image_features(pixels, tiles, [2]))
    assert counted == pytest.approx(as_counter_sees(expected.vision), rel=0.02)


def test_full_width_decoder_matches_the_counter() -> None:
    """Full-width decoder layers (one dense, one MoE with top-6 routed + 2 shared experts); depth,
    expert count and vocabulary cut so it fits a CI box (each term scales with them linearly)."""
    config, _ = load_config("deepseek-ocr2")
    small = copy.deepcopy(config)
    text = small.text_config
    text.num_hidden_layers = 2
    text.mlp_layer_types = ["dense", "sparse"]
    text.n_routed_experts = text.num_experts = 8
    text.vocab_size = 4096
    vision = small.vision_config
    vision.sam_config.num_hidden_layers, vision.sam_config.global_attn_indexes = 2, [1]
    vision.encoder_config.num_hidden_layers = 1
    vision.encoder_config.layer_types = vision.encoder_config.layer_types[:1]
    _check_stages(small, _model(small), tiles=0, prompt_text=11, new_tokens=3)


def test_published_decoder_figures() -> None:
    """Hand-checkable numbers (../shared/docs/deepseek-ocr.md): one global view is 257 decoder
    positions; with 11 text tokens a decode step at context 269 does 1,148.2 MFLOP of linear work
    and 16.5 MFLOP of attention, and prefill of 268 tokens 219.3 GFLOP linear + 2.21 GFLOP causal."""
    report = count_flops("deepseek-ocr2", tiles=0, prompt_tokens=11, new_tokens=2)
    assert report.tokens == {"image": 257, "prompt_total": 268, "new": 2}
    step = report.decode_steps[0]
    attention = sum(t.flops for t in step if t.name.endswith("attention"))
    assert attention == 4 * 269 * 128 * 10 * 12
    assert (sum(t.flops for t in step) - attention) / 1e6 == pytest.approx(1148.2, abs=0.05)
    prefill_attention = sum(t.flops for t in report.prefill if t.name.endswith("attention"))
    assert prefill_attention == 4 * (268 * 269 // 2) * 128 * 10 * 12
    assert (sum(t.flops for t in report.prefill) - prefill_attention) / 1e9 == pytest.approx(219.3, abs=0.05)


def test_cli_json_shape_and_bad_input() -> None:
    proc = run_perfctl("flops", "deepseek-ocr2", "--tiles", "2", "--new-tokens", "5", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data["flops"]) == {"vision", "prefill", "decode", "decode_per_token"}
    assert len(data["flops"]["decode_per_token"]) == 4
    assert data["flops"]["decode"] == sum(data["flops"]["decode_per_token"])
    # the KV cache grows: every step attends to one more position
    steps = data["flops"]["decode_per_token"]
    assert all(b > a for a, b in itertools.pairwise(steps))
    assert data["tokens"] == {"image": 257 + 2 * 144, "prompt_total": 257 + 2 * 144 + 11, "new": 5}
    assert "multiply-accumulate" in data["conventions"]
    for args, needle in (
        (["deepseek-ocr2", "--tiles", "7"], "--tiles"),
        (["no-such-model"], "neither a built-in"),
    ):
        bad = run_perfctl("flops", *args)
        assert bad.returncode == 2 and needle in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("model", ["deepseek-ocr2", "deepseek-ocr2-tiny"])
def test_a_builtin_models_shipped_resolved_config_gives_transformers_flops(model: str) -> None:
    """The built-in models ship model-config.resolved.json (so `perfctl flops` needs no transformers):
    every figure of its FLOP report equals the report from config.json read by this transformers."""
    from perfctl.flops import read_model_config

    shipped, by_transformers = read_model_config(model), read_model_config(model, shipped_resolved=False)
    assert shipped.path.name == "model-config.resolved.json" and by_transformers.path.name == "config.json"
    for tiles in (0, 2):
        a = count_flops(model, tiles=tiles, prompt_tokens=11, new_tokens=8, config=shipped).to_json(
            breakdown=True
        )
        b = count_flops(model, tiles=tiles, prompt_tokens=11, new_tokens=8, config=by_transformers)
        assert a == b.to_json(breakdown=True)


def test_flops_of_a_builtin_model_imports_neither_transformers_nor_torch() -> None:
    code = (
        "import sys; from perfctl.cli import main\n"
        "try:\n    main(['flops', 'deepseek-ocr2', '--format', 'json'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
