"""DeepSeek-OCR v1's analytic FLOPs (built-in `deepseek-ocr` config) against FlopCounterMode on real
transformers modules of the same architecture, stage by stage, within 2%:

* SAM-ViT-B with v1's neck (256 -> 512 -> 1024 channels): transformers' DeepSeek-OCR-2 SAM encoder
  (the same ViTDet blocks, windows and relative positions), full size on the meta device, at each
  mode's view sizes (512, 640, 1024, 1280);
* CLIP-L on SAM's tokens plus the class token: transformers' CLIP encoder (24 layers, 1024 wide, 16
  heads, MLP 4096) fed the embeddings directly, as v1 feeds it SAM's output (no patch embedding);
* the projector Linear(2048 -> 1280);
* the decoder: transformers' `deepseek_v2` is MLA-only, while v1's language config says
  `use_mla: false` (plain multi-head attention) with DeepSeek MoE -- exactly the architecture of
  transformers' DeepSeek-OCR-2 text model, built here from v1's language config at full width
  (depth, expert count and vocabulary cut so it runs on a CI box; each term scales with them linearly).
Attention runs eager and is counted as the full square it computes; MoE experts run eager (the
counter does not see transformers' grouped-matmul experts).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import run_perfctl
from perfctl.errors import BadInput
from perfctl.flops import count_flops, read_model_config
from perfctl.flops.deepseek_ocr import image_tokens, language_config, parse_mode, queries, view_terms

torch = pytest.importorskip("torch")
from flop_counting import as_counter_sees, counter_flops  # noqa: E402


def _v1() -> dict[str, Any]:
    config: dict[str, Any] = read_model_config("deepseek-ocr").config
    return config


def test_mode_token_counts() -> None:
    """Vision tokens per mode with the newlines and the view separator the remote code inserts."""
    expected = {
        "tiny": 8 * 9 + 1,  # 512²: 8 x 8 tokens, a newline per row, the separator
        "small": 10 * 11 + 1,
        "base": 16 * 17 + 1,  # 273, as ../shared/docs/deepseek-ocr.md says
        "large": 20 * 21 + 1,
        "gundam": 16 * 17 + 1 + (10 * 2 + 1) * (10 * 2),  # 693: a 2x2 grid of 640² tiles
        "gundam-6": 273 + (10 * 2 + 1) * (10 * 3),  # 2 columns x 3 rows
        "gundam-3x2": 273 + (10 * 3 + 1) * (10 * 2),
        "gundam-m-2": 20 * 21 + 1 + (16 * 1 + 1) * (16 * 2),  # 1280² global + 1x2 tiles of 1024²
    }
    for mode, tokens in expected.items():
        assert image_tokens(parse_mode(mode)) == tokens, mode
    assert [queries(s) ** 2 for s in (512, 640, 1024, 1280)] == [64, 100, 256, 400]  # the paper's counts
    for bad in ("huge", "gundam-1", "gundam-10", "gundam-5x2", "gundam-x"):
        with pytest.raises(BadInput, match="--mode"):
            parse_mode(bad)


def _sam(config: dict[str, Any]) -> Any:
    from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import DeepseekOcr2SamVisionConfig
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2SamVisionEncoder

    sam = config["vision_config"]["width"]["sam_vit_b"]
    sam_config = DeepseekOcr2SamVisionConfig(
        hidden_size=sam["width"],
        num_hidden_layers=sam["layers"],
        num_attention_heads=sam["heads"],
        mlp_dim=4 * sam["width"],
        image_size=1024,
        patch_size=16,
        window_size=14,
        global_attn_indexes=sam["global_attn_indexes"],
        output_channels=256,
        downsample_channels=sam["downsample_channels"],
    )
    sam_config._attn_implementation = "eager"
    with torch.device("meta"):
        return DeepseekOcr2SamVisionEncoder(sam_config).eval()


def _clip(config: dict[str, Any]) -> Any:
    from transformers import CLIPVisionConfig
    from transformers.models.clip.modeling_clip import CLIPEncoder

    clip = config["vision_config"]["width"]["clip-l-14-224"]
    clip_config = CLIPVisionConfig(
        hidden_size=clip["width"],
        intermediate_size=4 * clip["width"],
        num_hidden_layers=clip["layers"],
        num_attention_heads=clip["heads"],
    )
    clip_config._attn_implementation = "eager"
    with torch.device("meta"):
        return CLIPEncoder(clip_config).eval()


@pytest.mark.parametrize("side", [512, 640, 1024, 1280])
def test_full_size_view_matches_the_counter(side: int) -> None:
    """One view at each size the modes use: SAM, CLIP and the projector, full size, meta device."""
    config = _v1()
    sam, clip = _sam(config), _clip(config)
    projector = torch.nn.Linear(2048, 1280, device="meta")
    n = queries(side) ** 2
    with torch.no_grad():
        counted = counter_flops(
            lambda: (
                sam(torch.empty(1, 3, side, side, device="meta")),
                clip(inputs_embeds=torch.empty(1, n + 1, 1024, device="meta")),
                projector(torch.empty(1, n, 2048, device="meta")),
            )
        )
    expected = view_terms(config, side)
    assert counted == pytest.approx(as_counter_sees(expected), rel=0.02)
    by_part = {
        p: sum(t.flops for t in expected if t.name.startswith(p)) for p in ("sam.", "clip.", "projector")
    }
    assert by_part["projector"] == 2 * n * 2048 * 1280


def test_gundam_vision_is_the_sum_of_its_views() -> None:
    report = count_flops("deepseek-ocr", mode="gundam-2x3", new_tokens=2)
    config = _v1()
    one = {side: sum(t.flops for t in view_terms(config, side)) for side in (640, 1024)}
    assert sum(t.flops for t in report.vision) == one[1024] + 6 * one[640]
    assert report.tokens["image"] == 273 + 21 * 30 and report.inputs["mode"] == "gundam-2x3"


def _decoder(config: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """v1's decoder at full width, 2 layers (one dense, one MoE), 8 routed experts, vocab 4096."""
    from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import DeepseekOcr2TextConfig
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2TextModel

    lang = language_config(config) | {"num_hidden_layers": 2, "n_routed_experts": 8, "vocab_size": 4096}
    assert lang["use_mla"] is False and lang["first_k_dense_replace"] == 1
    text = DeepseekOcr2TextConfig(
        vocab_size=lang["vocab_size"],
        hidden_size=lang["hidden_size"],
        intermediate_size=lang["intermediate_size"],
        moe_intermediate_size=lang["moe_intermediate_size"],
        num_hidden_layers=2,
        num_attention_heads=lang["num_attention_heads"],
        num_key_value_heads=lang["num_key_value_heads"],
        n_routed_experts=8,
        num_experts_per_tok=lang["num_experts_per_tok"],
        n_shared_experts=lang["n_shared_experts"],
        mlp_layer_types=["dense", "sparse"],
    )
    text._attn_implementation = "eager"
    text._experts_implementation = "eager"
    torch.manual_seed(0)
    return DeepseekOcr2TextModel(text).eval(), lang


def test_full_width_decoder_matches_the_counter(tmp_path: Any) -> None:
    config = _v1()
    model, lang = _decoder(config)
    small = dict(config) | {"language_config": lang}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(small))
    report = count_flops(str(path), mode="tiny", prompt_tokens=12, new_tokens=3)
    assert report.tokens["prompt_total"] == 73 + 12
    lm_head = torch.nn.Linear(lang["hidden_size"], lang["vocab_size"], bias=False)
    state: dict[str, Any] = {}
    with torch.no_grad():

        def prefill() -> None:
            out = model(inputs_embeds=torch.randn(1, 85, lang["hidden_size"]), use_cache=True)
            lm_head(out.last_hidden_state[:, -1:])
            state["cache"] = out.past_key_values

        assert counter_flops(prefill) == pytest.approx(as_counter_sees(report.prefill), rel=0.02)
        for step in report.decode_steps:

            def decode() -> None:
                out = model(
                    inputs_embeds=torch.randn(1, 1, lang["hidden_size"]), cache=state["cache"], use_cache=True
                )
                lm_head(out.last_hidden_state)
                state["cache"] = out.past_key_values

            assert counter_flops(decode) == pytest.approx(as_counter_sees(step), rel=0.02)


def test_full_decoder_matches_deepseek_ocr2s() -> None:
    """v1 and v2 share the DeepSeek3B-MoE decoder: at equal prompt length, equal decoder FLOPs."""
    v1 = count_flops("deepseek-ocr", mode="base", prompt_tokens=11, new_tokens=4)
    v2 = count_flops("deepseek-ocr2", tiles=0, prompt_tokens=11 + 273 - 257, new_tokens=4)
    assert v1.tokens["prompt_total"] == v2.tokens["prompt_total"] == 284
    assert [t.flops for t in v1.prefill] == [t.flops for t in v2.prefill]
    assert v1.decoder.layers == v2.decoder.layers and v1.decoder.vocab == v2.decoder.vocab


def test_cli_modes() -> None:
    proc = run_perfctl("flops", "deepseek-ocr", "--mode", "gundam", "--new-tokens", "3", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["model_type"] == "deepseek_vl_v2" and data["inputs"]["mode"] == "gundam-2x2"
    assert data["tokens"] == {"image": 693, "prompt_total": 704, "new": 3}
    default = json.loads(run_perfctl("flops", "deepseek-ocr", "--format", "json").stdout)
    assert default["inputs"]["mode"] == "base" and default["tokens"]["image"] == 273
    bad = run_perfctl("flops", "deepseek-ocr", "--mode", "gundam-12")
    assert bad.returncode == 2 and "--mode" in bad.stderr and "Traceback" not in bad.stderr
