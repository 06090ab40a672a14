"""A decoder-only transformer's shape, read from its config, and the FLOPs and bytes of one decoder call.

One description (`DecoderShape`) covers the decoder families perfctl counts: Llama-style attention
(q/k/v/o projections, multi-head or grouped-query, optional sliding window) or DeepSeek's multi-head
latent attention (MLA: low-rank q and kv projections), and per layer a dense gated MLP or a mixture of
experts (router, top-k routed experts, shared experts, Qwen2-MoE's shared-expert gate). Each family's
config is read by one builder in `BUILDERS`; a model type without one is announced, never guessed.

Config access goes through `_get`, so the same builders read a transformers config object or a plain
dict (DeepSeek-OCR v1's `language_config`, which transformers 5 cannot load).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from perfctl.errors import BadInput
from perfctl.flops.terms import Term, attention, causal_pairs, linear

Matrix = tuple[str, int, int]  # (term name, d_in, d_out): a linear layer every token passes through


@dataclass(frozen=True)
class LayerShape:
    projections: tuple[Matrix, ...]  # attention projections (q, kv, o, or MLA's low-rank ones)
    heads: int
    qk_head_dim: int
    v_head_dim: int
    cached_values_per_token: int  # keys + values one position keeps in the KV cache
    window: int | None  # sliding-window attention span, None for full causal attention
    mlp: tuple[Matrix, ...]  # dense MLP, or router + shared experts (+ gate) of a MoE layer
    routed_top_k: int = 0  # experts each token goes through, 0 for a dense layer
    routed_experts: int = 0  # routed experts the layer has (the router's outputs), 0 for a dense layer
    routed_expert: tuple[Matrix, ...] = ()  # one routed expert's matrices
    # run on every cached position plus the new ones at each call (MLA's kv_b re-expanding the cache)
    context_projections: tuple[Matrix, ...] = ()


@dataclass(frozen=True)
class DecoderShape:
    model_type: str
    hidden: int
    vocab: int
    layers: tuple[LayerShape, ...]


def _get(config: Any, key: str, default: Any = None) -> Any:
    value = config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)
    return default if value is None else value


def decoder_terms(shape: DecoderShape, new: int, past: int, logits: int) -> list[Term]:
    """One decoder call on `new` tokens with `past` cached ones, the LM head on `logits` positions."""
    terms: list[Term] = []
    for index, layer in enumerate(shape.layers):
        name = f"decoder.layer{index}"
        proj = [linear(f"{name}.{n}", new, d_in, d_out) for n, d_in, d_out in layer.projections]
        kv_len = past + new
        proj[-1:-1] = [linear(f"{name}.{n}", kv_len, a, b) for n, a, b in layer.context_projections]
        pairs = causal_pairs(new, past, layer.window)
        att = attention(
            f"{name}.attention", pairs, new, kv_len, layer.heads, layer.qk_head_dim, layer.v_head_dim
        )
        terms += [*proj[:-1], att, proj[-1]]  # the output projection comes after attention
        terms += [linear(f"{name}.{n}", new, d_in, d_out) for n, d_in, d_out in layer.mlp]
        if layer.routed_top_k:
            out = sum(d_out for _, _, d_out in layer.routed_expert)
            d_in = layer.routed_expert[0][1]
            terms.append(linear(f"{name}.routed_experts", new * layer.routed_top_k, d_in, out))
    terms.append(linear("lm_head", logits, shape.hidden, shape.vocab))
    return terms


def extra_expert_bytes(shape: DecoderShape, rows: int, bytes_per_value: int) -> int:
    """At most how many more weight bytes a decode step of `rows` tokens reads than one token's: in
    every mixture-of-experts layer, up to min(rows x top-k, experts) routed experts instead of top-k
    (as many as the tokens' routes differ; which ones the router chose is not known here)."""
    extra = 0
    for layer in shape.layers:
        if layer.routed_top_k:
            most = min(rows * layer.routed_top_k, layer.routed_experts or rows * layer.routed_top_k)
            expert = sum(d_in * d_out for _, d_in, d_out in layer.routed_expert)
            extra += (most - layer.routed_top_k) * expert
    return extra * bytes_per_value


def decode_step_bytes(shape: DecoderShape, context: int, bytes_per_value: int) -> tuple[int, int]:
    """(weight bytes, KV-cache bytes) one decode step must read: every weight the token passes
    through -- attention projections, the dense MLP or the router, its top-k routed and the shared
    experts, the LM head -- and the cached keys and values of `context` positions in every layer
    (at most the window in a sliding-window layer)."""
    weights = shape.hidden * shape.vocab
    kv_values = 0
    for layer in shape.layers:
        matrices = (*layer.projections, *layer.context_projections, *layer.mlp)
        weights += sum(d_in * d_out for _, d_in, d_out in matrices)
        weights += layer.routed_top_k * sum(d_in * d_out for _, d_in, d_out in layer.routed_expert)
        span = context if layer.window is None else min(context, layer.window)
        kv_values += layer.cached_values_per_token * span
    return weights * bytes_per_value, kv_values * bytes_per_value


# --- attention ---------------------------------------------------------------------------------


def _head_dim(config: Any) -> int:
    return int(
        _get(config, "head_dim")
        or int(_get(config, "hidden_size")) // int(_get(config, "num_attention_heads"))
    )


def _gqa(config: Any, window: int | None) -> dict[str, Any]:
    """Llama-style attention: q, k and v projections (k/v over the key-value heads), output projection."""
    d, heads, head_dim = (
        int(_get(config, "hidden_size")),
        int(_get(config, "num_attention_heads")),
        _head_dim(config),
    )
    kv = int(_get(config, "num_key_value_heads", heads)) * head_dim
    return {
        "projections": (("q", d, heads * head_dim), ("kv", d, 2 * kv), ("o", heads * head_dim, d)),
        "heads": heads,
        "qk_head_dim": head_dim,
        "v_head_dim": head_dim,
        "cached_values_per_token": 2 * kv,
        "window": window,
    }


def _mla(config: Any) -> dict[str, Any]:
    """DeepSeek-V2/V3 multi-head latent attention as transformers (5.17 to 5.24 at least) runs it: q
    directly or through a low-rank q_a/q_b pair, a joint low-rank kv_a projection (plus the shared
    rotary key) whose latents are what the cache keeps, and kv_b expanding the latents of every cached
    and new position to each head's key and value at every call."""
    d, heads = int(_get(config, "hidden_size")), int(_get(config, "num_attention_heads"))
    nope, rope = int(_get(config, "qk_nope_head_dim")), int(_get(config, "qk_rope_head_dim"))
    v_dim, kv_rank = int(_get(config, "v_head_dim")), int(_get(config, "kv_lora_rank"))
    qk = nope + rope
    q_rank = _get(config, "q_lora_rank")
    q: tuple[Matrix, ...] = (
        (("q", d, heads * qk),)
        if q_rank is None
        else (("q_a", d, int(q_rank)), ("q_b", int(q_rank), heads * qk))
    )
    return {
        "projections": (*q, ("kv_a", d, kv_rank + rope), ("o", heads * v_dim, d)),
        "context_projections": (("kv_b", kv_rank, heads * (nope + v_dim)),),
        "heads": heads,
        "qk_head_dim": qk,
        "v_head_dim": v_dim,
        "cached_values_per_token": kv_rank + rope,
        "window": None,
    }


def _window(config: Any, index: int) -> int | None:
    """The sliding window of layer `index`: per `layer_types` when the config lists them, else the
    config's `sliding_window` for every layer (Mistral, Mixtral), else none."""
    window = _get(config, "sliding_window")
    types = _get(config, "layer_types")
    if types is not None:
        return int(window) if types[index] == "sliding_attention" and window else None
    return int(window) if window else None


# --- MLP / MoE ---------------------------------------------------------------------------------


def _dense(d: int, intermediate: int) -> dict[str, Any]:
    return {"mlp": (("mlp", d, 3 * intermediate),)}  # gate, up (d -> i) and down (i -> d)


def _moe(
    d: int, experts: int, top_k: int, expert_size: int, shared_size: int = 0, shared_gate: bool = False
) -> dict[str, Any]:
    mlp: list[Matrix] = [("router", d, experts)]
    if shared_size:
        mlp.append(("shared_experts", d, 3 * shared_size))
    if shared_gate:
        mlp.append(("shared_expert_gate", d, 1))
    return {
        "mlp": tuple(mlp),
        "routed_top_k": top_k,
        "routed_experts": experts,
        "routed_expert": (("expert", d, 3 * expert_size),),
    }


def _dense_or_moe_llama(
    config: Any, moe_at: Callable[[int], bool], moe: Callable[[], dict[str, Any]]
) -> DecoderShape:
    d = int(_get(config, "hidden_size"))
    layers = []
    for i in range(int(_get(config, "num_hidden_layers"))):
        mlp = moe() if moe_at(i) else _dense(d, int(_get(config, "intermediate_size")))
        layers.append(LayerShape(**_gqa(config, _window(config, i)), **mlp))
    return DecoderShape(
        str(_get(config, "model_type", "")), d, int(_get(config, "vocab_size")), tuple(layers)
    )


def _llama(config: Any) -> DecoderShape:
    return _dense_or_moe_llama(config, lambda _i: False, dict)


def _qwen2_moe(config: Any) -> DecoderShape:
    d = int(_get(config, "hidden_size"))
    only_dense = set(_get(config, "mlp_only_layers", []))
    experts, step = int(_get(config, "num_experts", 0)), int(_get(config, "decoder_sparse_step", 1))
    shared = int(_get(config, "shared_expert_intermediate_size", 0))
    has_shared = str(_get(config, "model_type")) == "qwen2_moe" and shared > 0
    return _dense_or_moe_llama(
        config,
        lambda i: i not in only_dense and experts > 0 and (i + 1) % step == 0,
        lambda: _moe(
            d,
            experts,
            int(_get(config, "num_experts_per_tok")),
            int(_get(config, "moe_intermediate_size")),
            shared if has_shared else 0,
            shared_gate=has_shared,
        ),
    )


def _mixtral(config: Any) -> DecoderShape:
    d = int(_get(config, "hidden_size"))
    return _dense_or_moe_llama(
        config,
        lambda _i: True,
        lambda: _moe(
            d,
            int(_get(config, "num_local_experts")),
            int(_get(config, "num_experts_per_tok")),
            int(_get(config, "intermediate_size")),
        ),
    )


def _deepseek(config: Any) -> DecoderShape:
    """DeepSeek-V2/V3 (MLA unless `use_mla` is false, as in DeepSeek-OCR's decoder) and the
    DeepSeek-OCR-2 text model: the first `first_k_dense_replace` layers dense (or `mlp_layer_types`),
    the rest MoE with `n_shared_experts` shared experts."""
    d = int(_get(config, "hidden_size"))
    n_layers = int(_get(config, "num_hidden_layers"))
    kinds = _get(config, "mlp_layer_types")
    if kinds is None:
        first_dense = int(_get(config, "first_k_dense_replace", 0))
        kinds = ["dense" if i < first_dense else "sparse" for i in range(n_layers)]
    expert = int(_get(config, "moe_intermediate_size"))
    plain_mha = _get(config, "use_mla", True) is False or _get(config, "kv_lora_rank") is None
    layers = []
    for kind in kinds:
        att = _gqa(config, None) if plain_mha else _mla(config)
        if kind == "dense":
            mlp = _dense(d, int(_get(config, "intermediate_size")))
        else:
            mlp = _moe(
                d,
                int(_get(config, "n_routed_experts")),
                int(_get(config, "num_experts_per_tok")),
                expert,
                expert * int(_get(config, "n_shared_experts", 0)),
            )
        layers.append(LayerShape(**att, **mlp))
    return DecoderShape(
        str(_get(config, "model_type", "")), d, int(_get(config, "vocab_size")), tuple(layers)
    )


BUILDERS: dict[str, Callable[[Any], DecoderShape]] = {
    "llama": _llama,
    "mistral": _llama,
    "qwen2": _llama,
    "qwen3": _llama,
    "qwen2_moe": _qwen2_moe,
    "qwen3_moe": _qwen2_moe,
    "mixtral": _mixtral,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    "deepseek_ocr2_text": _deepseek,
}


def decoder_shape(config: Any) -> DecoderShape:
    """The decoder of a config (object or dict) whose family perfctl knows; BadInput otherwise."""
    model_type = str(_get(config, "model_type", ""))
    builder = BUILDERS.get(model_type)
    if builder is None:
        raise BadInput(
            f"FLOP model unknown for model_type {model_type or '?'} "
            f"(known decoders: {', '.join(sorted(BUILDERS))})"
        )
    return builder(config)
