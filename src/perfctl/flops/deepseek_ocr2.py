"""Analytic FLOPs of DeepSeek-OCR-2 (transformers' `deepseek_ocr2`) per stage, from its config.

Vision, per view (one global view of the config's image size, plus 0-6 local tiles of 768²):
  SAM ViT: patch-embedding conv; per layer qkv, output projection, MLP, and attention with
  decomposed relative positions, windowed (window x window, on the grid padded to whole windows)
  or global; neck (1x1 and 3x3 convs) and the two stride-2 3x3 convs down to N tokens.
  Qwen2-style encoder over [N image tokens ; Q learned queries] (Q = 144 when N <= 144, else 256):
  per layer q/k/v/o projections, gated MLP, attention over the hybrid mask's pairs -- image tokens
  see all image tokens, query i sees the image tokens and queries 0..i: N² + Q·N + Q(Q+1)/2 pairs.
  Projector: a linear layer on the Q query outputs.
Decoder (DeepSeek MoE, `perfctl.flops.decoder`), for the prompt (image tokens + text tokens) then one
  token per decode step: q/k/v/o projections, causal attention over the prompt and the KV cache, dense
  gated MLP or MoE (router over all experts, top-k routed experts, shared experts), and the LM head on
  the last position only (`generate` keeps one position of logits in prefill, and every decode step
  has one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from perfctl.flops.decoder import DecoderShape, decoder_shape, decoder_terms
from perfctl.flops.terms import Term, attention, conv2d, linear, total

TILE_SIDE = 768  # DeepSeek-OCR-2's local tiles (its image processor's crop size)


@dataclass(frozen=True)
class DeepseekOcr2Flops:
    vision: list[Term]
    prefill: list[Term]
    decode_steps: list[list[Term]]
    image_tokens: int
    prompt_total: int
    new_tokens: int
    decoder: DecoderShape


def _side(value: Any) -> int:
    return int(value if isinstance(value, int) else value[0])


def sam_tokens(config: Any, side: int) -> int:
    """Tokens SAM hands to the encoder for a side x side view: the patch grid, 4x downsampled."""
    return (side // _side(config.vision_config.sam_config.patch_size) // 4) ** 2


def encoder_queries(image_tokens: int) -> int:
    """The encoder's learned queries: 144 for views of up to 144 SAM tokens (768²), else 256."""
    return 144 if image_tokens <= 144 else 256


def view_tokens(config: Any, side: int) -> int:
    """Decoder positions one view fills: its encoder queries."""
    return encoder_queries(sam_tokens(config, side))


def image_tokens(config: Any, local_tiles: int) -> int:
    """Decoder positions one page's image takes: the global view's queries, one view separator, and
    each local tile's queries (transformers puts them as [tiles ; global ; separator])."""
    global_view = view_tokens(config, _side(config.vision_config.sam_config.image_size))
    return global_view + 1 + local_tiles * view_tokens(config, TILE_SIDE)


def sam_terms(sam: Any, side: int) -> list[Term]:
    patch = _side(sam.patch_size)
    grid = side // patch
    tokens = grid * grid
    c, heads = int(sam.hidden_size), int(sam.num_attention_heads)
    head_dim = c // heads
    window = int(sam.window_size)
    terms = [conv2d("sam.patch_embed", tokens, int(sam.num_channels), c, patch)]
    for layer in range(int(sam.num_hidden_layers)):
        windowed = window > 0 and layer not in set(sam.global_attn_indexes)
        if windowed:
            padded = math.ceil(grid / window) * window
            windows, span, attended = (padded // window) ** 2, window, padded * padded
        else:
            windows, span, attended = 1, grid, tokens
        per_window = span * span
        name = f"sam.layer{layer}"
        # qkv and the output projection run on the (padded) windows, the MLP on the grid
        terms.append(linear(f"{name}.qkv", attended, c, 3 * c))
        pairs = windows * per_window * per_window
        terms.append(attention(f"{name}.attention", pairs, windows * per_window, per_window, heads, head_dim))
        if sam.use_rel_pos:  # q . rel_pos_h and q . rel_pos_w for every query, per head
            terms.append(Term(f"{name}.rel_pos", 2 * windows * heads * per_window * (2 * span) * head_dim))
        terms.append(linear(f"{name}.proj", attended, c, c))
        terms.append(linear(f"{name}.mlp", tokens, c, 2 * int(sam.mlp_dim)))
    out = int(sam.output_channels)
    down = [int(x) for x in sam.downsample_channels]
    terms += [
        conv2d("sam.neck.conv1", tokens, c, out, 1),
        conv2d("sam.neck.conv2", tokens, out, out, 3),
        conv2d("sam.proj.conv1", (grid // 2) ** 2, out, down[0], 3),
        conv2d("sam.proj.conv2", (grid // 4) ** 2, down[0], down[1], 3),
    ]
    return terms


def encoder_terms(encoder: Any, image_tokens: int) -> list[Term]:
    queries = encoder_queries(image_tokens)
    length = image_tokens + queries
    d, heads = int(encoder.hidden_size), int(encoder.num_attention_heads)
    head_dim = int(getattr(encoder, "head_dim", None) or d // heads)
    kv = int(encoder.num_key_value_heads) * head_dim
    pairs = image_tokens * image_tokens + queries * image_tokens + queries * (queries + 1) // 2
    terms = []
    for layer in range(int(encoder.num_hidden_layers)):
        name = f"encoder.layer{layer}"
        terms += [
            linear(f"{name}.q", length, d, heads * head_dim),
            linear(f"{name}.kv", length, d, 2 * kv),
            attention(f"{name}.attention", pairs, length, length, heads, head_dim),
            linear(f"{name}.o", length, heads * head_dim, d),
            linear(f"{name}.mlp", length, d, 3 * int(encoder.intermediate_size)),
        ]
    return terms


def vision_terms(config: Any, local_tiles: int) -> list[Term]:
    vision = config.vision_config
    text_hidden = int(config.text_config.hidden_size)
    encoder_hidden = int(vision.encoder_config.hidden_size)
    views = [("global", _side(vision.sam_config.image_size))] + [("tile", TILE_SIDE)] * local_tiles
    terms = []
    for index, (kind, side) in enumerate(views):
        prefix = kind if kind == "global" else f"tile{index}"
        n = sam_tokens(config, side)
        view = [*sam_terms(vision.sam_config, side), *encoder_terms(vision.encoder_config, n)]
        view.append(linear("projector", encoder_queries(n), encoder_hidden, text_hidden))
        terms += [Term(f"{prefix}.{t.name}", t.flops, t.pairs, t.square, t.pair_flops) for t in view]
    return terms


def deepseek_ocr2_flops(
    config: Any, local_tiles: int, prompt_tokens: int, new_tokens: int
) -> DeepseekOcr2Flops:
    """FLOPs of one page: vision for the views, prefill of the whole prompt, and new_tokens - 1 decode
    steps (the first new token comes out of prefill)."""
    image = image_tokens(config, local_tiles)
    prompt = image + prompt_tokens
    shape = decoder_shape(config.text_config)
    steps = [decoder_terms(shape, 1, prompt + step, 1) for step in range(max(new_tokens - 1, 0))]
    return DeepseekOcr2Flops(
        vision=vision_terms(config, local_tiles),
        prefill=decoder_terms(shape, prompt, 0, 1),
        decode_steps=steps,
        image_tokens=image,
        prompt_total=prompt,
        new_tokens=new_tokens,
        decoder=shape,
    )


__all__ = [
    "DeepseekOcr2Flops",
    "deepseek_ocr2_flops",
    "image_tokens",
    "total",
    "view_tokens",
]
