"""Analytic FLOPs of DeepSeek-OCR (v1, `deepseek-ai/DeepSeek-OCR`, remote code) per stage, from its config.

The config is read as JSON (its model type, `deepseek_vl_v2`, needs the remote code to load in
transformers): `vision_config.width` gives the SAM-ViT-B and CLIP-L sizes, `projector_config` the
projector, `language_config` (or the top level) the DeepSeek3B-MoE decoder. What the config does not
say is fixed in the remote code's encoder builders and held here: 16-pixel SAM patches, 14x14
windows, MLP ratio 4, a 256-channel neck; CLIP's MLP 4x its width.

Vision, per view (the global view and, in the cropping modes, each local tile):
  SAM on the view (side S): patch embedding, 12 layers of windowed / global attention with relative
  positions, the neck and two stride-2 convs -> (S/64)² tokens of 1024 channels;
  CLIP-L on those tokens plus its class token ((S/64)² + 1 positions; no patch embedding: SAM's output
  is its input), per layer fused qkv, full attention, output projection, MLP;
  the projector, Linear(2048 -> 1280), on [CLIP output without the class token ; SAM features].
Image tokens in the decoder's prompt, as the remote code lays them out: each view's q x q grid gets a
learned newline token after every row, the local tiles are laid out as one grid of q·w columns and
q·h rows (w x h tiles) with a newline after each of its rows, and one view separator follows the
global view: q_g(q_g + 1) + 1 tokens for the global view (q_g = S_global/64) and (q_l·w + 1)(q_l·h)
for the tiles (q_l = S_tile/64). Newlines and the separator are learned embeddings: positions in the
decoder, no vision FLOPs.
Decoder: `perfctl.flops.decoder` (plain multi-head attention: `use_mla` is false).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from perfctl.errors import BadInput
from perfctl.flops.decoder import DecoderShape, decoder_shape, decoder_terms
from perfctl.flops.deepseek_ocr2 import sam_terms
from perfctl.flops.terms import Term, attention, linear

# Fixed in the remote code's encoder builders (build_sam_vit_b, build_clip_l), not in config.json.
SAM_PATCH, SAM_WINDOW, SAM_MLP_RATIO, SAM_NECK_CHANNELS = 16, 14, 4, 256
CLIP_MLP_RATIO = 4
TOKEN_DOWNSAMPLE = 4  # SAM's two stride-2 convs: one token per 64x64 pixels


@dataclass(frozen=True)
class ResolutionMode:
    """A v1 resolution mode: the global view's side, the local tiles' side, and the tile grid
    (w columns x h rows; None without cropping)."""

    name: str
    base_size: int
    image_size: int
    grid: tuple[int, int] | None

    @property
    def tiles(self) -> int:
        return 0 if self.grid is None else self.grid[0] * self.grid[1]


# name -> (base_size, image_size, crops): the remote code's infer(base_size, image_size, crop_mode)
NATIVE_MODES = {"tiny": (512, 512), "small": (640, 640), "base": (1024, 1024), "large": (1280, 1280)}
CROP_MODES = {"gundam": (1024, 640), "gundam-m": (1280, 1024)}
MIN_TILES, MAX_TILES = 2, 9  # dynamic_preprocess's min_num / max_num
DEFAULT_MODE = "base"
MODE_HELP = (
    "tiny, small, base, large, gundam[-N|-WxH] or gundam-m[-N|-WxH] "
    f"(N local tiles, {MIN_TILES}-{MAX_TILES}; WxH columns x rows; gundam alone = gundam-2x2)"
)


def _grid_for(tiles: int) -> tuple[int, int]:
    """w x h with w * h = tiles, as square as possible, taller than wide (a portrait page)."""
    w = max(c for c in range(1, math.isqrt(tiles) + 1) if tiles % c == 0)
    return w, tiles // w


def parse_mode(text: str) -> ResolutionMode:
    name = text.strip().lower()
    if name in NATIVE_MODES:
        return ResolutionMode(name, *NATIVE_MODES[name], None)
    match = re.fullmatch(r"(gundam-m|gundam)(?:-(?:(\d+)|(\d+)x(\d+)))?", name)
    if not match:
        raise BadInput(f"--mode {text!r} is not a DeepSeek-OCR resolution mode ({MODE_HELP})")
    kind, count, w, h = match.groups()
    grid = (int(w), int(h)) if w else _grid_for(int(count)) if count else (2, 2)
    if not MIN_TILES <= grid[0] * grid[1] <= MAX_TILES:
        raise BadInput(
            f"--mode {text!r}: {grid[0] * grid[1]} tiles; the cropping modes use {MIN_TILES} to {MAX_TILES}"
        )
    return ResolutionMode(f"{kind}-{grid[0]}x{grid[1]}", *CROP_MODES[kind], grid)


def queries(side: int) -> int:
    """Tokens per row (and rows) of one view of side `side`: ceil(side / 16 / 4)."""
    return math.ceil(side / SAM_PATCH / TOKEN_DOWNSAMPLE)


def image_tokens(mode: ResolutionMode) -> int:
    """Decoder positions of one page's image, newlines and the view separator included."""
    q = queries(mode.base_size)
    tokens = q * (q + 1) + 1
    if mode.grid is not None:
        w, h = mode.grid
        ql = queries(mode.image_size)
        tokens += (ql * w + 1) * (ql * h)
    return tokens


def is_deepseek_ocr_v1(config: dict[str, Any]) -> bool:
    """DeepSeek-OCR v1's config.json: DeepSeek-VL2's model type with the SAM + CLIP 'deeplip' encoder."""
    vision = config.get("vision_config") or {}
    architectures = config.get("architectures") or []
    return vision.get("model_name") == "deeplip_b_l" or any("DeepseekOCR" in a for a in architectures)


def _encoders(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    widths = (config.get("vision_config") or {}).get("width") or {}
    sam, clip = widths.get("sam_vit_b"), widths.get("clip-l-14-224")
    if not sam or not clip:
        raise BadInput("DeepSeek-OCR config lacks vision_config.width.sam_vit_b / clip-l-14-224")
    return sam, clip


def language_config(config: dict[str, Any]) -> dict[str, Any]:
    """The decoder's settings: `language_config` over the top-level copies the remote code keeps."""
    merged = {k: v for k, v in config.items() if not isinstance(v, dict)}
    merged.update(config.get("language_config") or {})
    merged["model_type"] = "deepseek_v2"  # the decoder family, whatever the outer model type says
    return merged


def sam_shape(config: dict[str, Any]) -> Any:
    """The SAM encoder's sizes in the attribute names `deepseek_ocr2.sam_terms` reads."""
    sam, _ = _encoders(config)
    width = int(sam["width"])
    return SimpleNamespace(
        patch_size=SAM_PATCH,
        hidden_size=width,
        num_attention_heads=int(sam["heads"]),
        num_hidden_layers=int(sam["layers"]),
        window_size=SAM_WINDOW,
        global_attn_indexes=list(sam["global_attn_indexes"]),
        use_rel_pos=True,
        num_channels=3,
        mlp_dim=SAM_MLP_RATIO * width,
        output_channels=SAM_NECK_CHANNELS,
        downsample_channels=list(sam["downsample_channels"]),
    )


def clip_terms(config: dict[str, Any], positions: int) -> list[Term]:
    _, clip = _encoders(config)
    d, heads = int(clip["width"]), int(clip["heads"])
    terms = []
    for layer in range(int(clip["layers"])):
        name = f"clip.layer{layer}"
        terms += [
            linear(f"{name}.qkv", positions, d, 3 * d),
            attention(f"{name}.attention", positions * positions, positions, positions, heads, d // heads),
            linear(f"{name}.o", positions, d, d),
            linear(f"{name}.mlp", positions, d, 2 * CLIP_MLP_RATIO * d),  # fc1 and fc2
        ]
    return terms


def view_terms(config: dict[str, Any], side: int) -> list[Term]:
    n = queries(side) ** 2
    projector = config.get("projector_config") or {}
    return [
        *sam_terms(sam_shape(config), side),
        *clip_terms(config, n + 1),
        linear("projector", n, int(projector.get("input_dim", 2048)), int(projector.get("n_embed", 1280))),
    ]


def vision_terms(config: dict[str, Any], mode: ResolutionMode) -> list[Term]:
    views = [("global", mode.base_size)] + [(f"tile{i}", mode.image_size) for i in range(mode.tiles)]
    return [
        Term(f"{prefix}.{t.name}", t.flops, t.pairs, t.square, t.pair_flops)
        for prefix, side in views
        for t in view_terms(config, side)
    ]


@dataclass(frozen=True)
class DeepseekOcrFlops:
    vision: list[Term]
    prefill: list[Term]
    decode_steps: list[list[Term]]
    image_tokens: int
    prompt_total: int
    decoder: DecoderShape


def deepseek_ocr_flops(
    config: dict[str, Any], mode: ResolutionMode, prompt_tokens: int, new_tokens: int
) -> DeepseekOcrFlops:
    """One page: vision for the mode's views, prefill of image + text tokens, new_tokens - 1 decode steps."""
    shape = decoder_shape(language_config(config))
    image = image_tokens(mode)
    prompt = image + prompt_tokens
    return DeepseekOcrFlops(
        vision=vision_terms(config, mode),
        prefill=decoder_terms(shape, prompt, 0, 1),
        decode_steps=[decoder_terms(shape, 1, prompt + s, 1) for s in range(max(new_tokens - 1, 0))],
        image_tokens=image,
        prompt_total=prompt,
        decoder=shape,
    )
