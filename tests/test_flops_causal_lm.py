"""Analytic FLOPs of causal LMs against PyTorch's FlopCounterMode on the real transformers modules.

Tiny real configs (tests/fixtures/models): a grouped-query Llama, a Qwen2-MoE with a dense layer and a
gated shared expert, a Mixtral with a sliding window shorter than the prompt, and a DeepSeek-V3 with
multi-head latent attention. Each runs prefill (`logits_to_keep=1`, as generate does) and three decode
steps on the CPU with eager attention and eager experts (the counter sees SDPA as 0 FLOPs on CPU and
does not know transformers' grouped-matmul experts); perfctl's attention terms are recomputed as the
full query x key square the eager kernels compute. Agreement within 2% per stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import run_perfctl
from perfctl.errors import BadInput
from perfctl.flops import count_flops, load_config
from perfctl.flops.decoder import decode_step_bytes, decoder_shape

torch = pytest.importorskip("torch")
from flop_counting import as_counter_sees, counter_flops  # noqa: E402

MODELS = Path(__file__).parent / "fixtures" / "models"
PROMPT, NEW = 37, 4


def _model(folder: Path) -> Any:
    from transformers import AutoModelForCausalLM

    config, _ = load_config(str(folder))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        config, attn_implementation="eager", experts_implementation="eager"
    )
    return model.eval()


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen2-moe", "tiny-deepseek-v3"])
def test_prefill_and_decode_match_the_counter(name: str) -> None:
    folder = MODELS / name
    report = count_flops(str(folder), prompt_tokens=PROMPT, new_tokens=NEW)
    assert report.tokens == {"image": 0, "prompt_total": PROMPT, "new": NEW} and report.vision == []
    model = _model(folder)
    ids = torch.randint(0, model.config.vocab_size, (1, PROMPT))
    state: dict[str, Any] = {}
    with torch.no_grad():

        def prefill() -> None:
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            state["cache"] = out.past_key_values

        assert counter_flops(prefill) == pytest.approx(as_counter_sees(report.prefill), rel=0.02)
        for step in report.decode_steps:

            def decode() -> None:
                out = model(input_ids=ids[:, :1], cache=state["cache"], use_cache=True)
                state["cache"] = out.past_key_values

            assert counter_flops(decode) == pytest.approx(as_counter_sees(step), rel=0.02)


def test_sliding_window_counts_only_the_window() -> None:
    """Mixtral with a 24-token window: prefill of 37 tokens counts sum(min(p + 1, 24)) pairs per layer,
    and the eager kernels (full square, masked) agree once attention is counted their way."""
    folder = MODELS / "tiny-mixtral"
    report = count_flops(str(folder), prompt_tokens=PROMPT, new_tokens=2)
    att = [t for t in report.prefill if t.name.endswith("attention")]
    assert all(t.pairs == sum(min(p + 1, 24) for p in range(PROMPT)) for t in att)
    assert all(t.pairs < PROMPT * (PROMPT + 1) // 2 for t in att)
    model = _model(folder)
    ids = torch.randint(0, model.config.vocab_size, (1, PROMPT))
    with torch.no_grad():
        counted = counter_flops(lambda: model(input_ids=ids, use_cache=True, logits_to_keep=1))
    assert counted == pytest.approx(as_counter_sees(report.prefill), rel=0.02)


def test_llama_by_hand() -> None:
    """2 layers, hidden 64, 4 heads of 16, 2 KV heads, MLP 176, vocab 512: every term by hand."""
    report = count_flops(str(MODELS / "tiny-llama"), prompt_tokens=10, new_tokens=2)
    per_token_linear = 2 * (64 * 64 + 64 * 2 * 32 + 64 * 64 + 3 * 64 * 176)  # q, kv, o, MLP
    prefill_attention = 4 * (10 * 11 // 2) * 4 * 16
    assert (
        sum(t.flops for t in report.prefill) == 2 * (10 * per_token_linear + prefill_attention) + 2 * 64 * 512
    )
    step = report.decode_steps[0]
    assert sum(t.flops for t in step) == 2 * (per_token_linear + 4 * 11 * 4 * 16) + 2 * 64 * 512
    # decode bytes: weights of both layers and the LM head; keys and values of 2 KV heads x 16 per layer
    shape = decoder_shape(load_config(str(MODELS / "tiny-llama"))[0])
    weights, kv = decode_step_bytes(shape, 11, 2)
    assert weights == 2 * (2 * (64 * 64 * 2 + 64 * 64 + 3 * 64 * 176) + 64 * 512)
    assert kv == 2 * 2 * (2 * 32) * 11


def test_moe_counts_top_k_routed_and_shared_experts() -> None:
    report = count_flops(str(MODELS / "tiny-qwen2-moe"), prompt_tokens=5, new_tokens=2)
    names = {t.name.split(".", 1)[1] for t in report.decode_steps[0] if t.name.startswith("decoder.layer")}
    assert {
        "layer0.router",
        "layer0.routed_experts",
        "layer0.shared_experts",
        "layer0.shared_expert_gate",
    } <= names
    assert "layer1.mlp" in names and "layer1.router" not in names  # mlp_only_layers: [1]
    routed = next(t for t in report.decode_steps[0] if t.name == "decoder.layer0.routed_experts")
    assert routed.flops == 2 * 2 * 64 * 3 * 32  # top-2 experts of 3 x 64 x 32


def test_unknown_model_type_is_announced(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma2", "hidden_size": 8}))
    with pytest.raises(BadInput, match="FLOP model unknown for model_type gemma2"):
        count_flops(str(tmp_path))
    proc = run_perfctl("flops", str(tmp_path))
    assert proc.returncode == 2 and "FLOP model unknown for model_type gemma2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tiles_and_mode_only_where_they_apply() -> None:
    llama = str(MODELS / "tiny-llama")
    for args, needle in (
        ([llama, "--tiles", "0"], "--tiles is for DeepSeek-OCR-2"),
        ([llama, "--mode", "base"], "--mode is for DeepSeek-OCR v1"),
        (["deepseek-ocr2", "--mode", "base"], "--mode is for DeepSeek-OCR v1"),
        (["deepseek-ocr", "--tiles", "2"], "use --mode"),
    ):
        proc = run_perfctl("flops", *args)
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, args
    ok = run_perfctl("flops", llama, "--prompt-tokens", "10", "--new-tokens", "2", "--format", "json")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["model_type"] == "llama" and data["flops"]["vision"] == 0
    assert data["tokens"] == {"image": 0, "prompt_total": 10, "new": 2}
