"""Analytic FLOPs per inference stage (vision, prefill, decode), from a model's config alone.

`count_flops` resolves a model (a built-in name, a model folder or a config file), reads its config
(no weights, no torch model) and returns `FlopReport`, whose `to_json` is what `perfctl flops`
prints. Three families: DeepSeek-OCR-2 (`deepseek_ocr2`, `--tiles`), DeepSeek-OCR v1 (its remote
code's `deepseek_vl_v2` config with the SAM + CLIP encoder, `--mode`), and decoder-only causal LMs
whose decoder `perfctl.flops.decoder` knows (no vision stage). Every figure follows `terms.py`'s
conventions, which the report states.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfctl.errors import BadInput
from perfctl.flops.decoder import BUILDERS, DecoderShape, decoder_shape, decoder_terms
from perfctl.flops.deepseek_ocr import (
    DEFAULT_MODE,
    deepseek_ocr_flops,
    is_deepseek_ocr_v1,
    parse_mode,
)
from perfctl.flops.deepseek_ocr2 import deepseek_ocr2_flops
from perfctl.flops.terms import Term, total
from perfctl.resources import builtin_model_dir, builtin_model_names
from perfctl.run_folder import RESOLVED_CONFIG_FILE

CONVENTIONS = (
    "2 FLOPs per multiply-accumulate; matrix products only (linear layers, convolutions, attention "
    "scores and values, relative-position products), not norms, activations or softmax; attention "
    "counts the query-key pairs its mask lets through (causal: T(T+1)/2; sliding window: at most the "
    "window per query), never a masked full square; "
    "MoE layers count the router, the top-k routed experts and the shared experts of each token; "
    "prefill computes logits for the last position only, each decode step for its one token; "
    "decode step i attends to the prompt and the i tokens before it (KV cache)."
)
MAX_TILES = 6
OCR2, OCR1, CAUSAL_LM = "deepseek-ocr2", "deepseek-ocr", "causal-lm"


class ConfigView:
    """Attribute access over a resolved config dict (nested configs too), as a transformers config
    object gives it: the FLOP builders read either alike."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getattr__(self, key: str) -> Any:
        try:
            value = self._values[key]
        except KeyError:
            raise AttributeError(key) from None
        return ConfigView(value) if isinstance(value, dict) else value


def resolved_config_json(config: Any) -> dict[str, Any]:
    """What RESOLVED_CONFIG_FILE holds for a transformers config object: every value, defaults too."""
    from transformers import __version__ as transformers_version

    return {"transformers": transformers_version, "config": json.loads(config.to_json_string(use_diff=False))}


@dataclass(frozen=True)
class ModelConfig:
    """A model's config as the FLOP model reads it: `config` is a transformers config object
    (DeepSeek-OCR-2, causal LMs) or the JSON dict itself (DeepSeek-OCR v1, which transformers 5
    cannot load without its remote code)."""

    path: Path
    model_type: str
    family: str
    config: Any


def _config_path(model: str, shipped_resolved: bool = True) -> Path:
    builtin = builtin_model_dir(model)
    # a built-in model ships its config as transformers resolved it (tests/test_flops.py holds the two
    # to the same FLOPs): `perfctl flops deepseek-ocr2` needs no transformers and no torch (5 s)
    if shipped_resolved and builtin is not None and (builtin / RESOLVED_CONFIG_FILE).is_file():
        return builtin / RESOLVED_CONFIG_FILE
    path = builtin if builtin is not None else Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise BadInput(
            f"model '{model}' is neither a built-in model ({', '.join(builtin_model_names())}), "
            "a model folder nor a config file"
        )
    return path


def read_model_config(model: str, shipped_resolved: bool = True) -> ModelConfig:
    """The config of a built-in name, a model folder or a config file (any name), with its family. A
    RESOLVED_CONFIG_FILE is read as it stands, without transformers (a built-in model's own, unless
    `shipped_resolved` is False: then its config.json through transformers)."""
    path = _config_path(model, shipped_resolved)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read {path}: {exc}") from None
    resolved = path.name == RESOLVED_CONFIG_FILE
    if resolved:
        if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict):
            raise BadInput(f"{path} holds no resolved config (an object with a 'config' object)")
        raw = raw["config"]
    if not isinstance(raw, dict):
        raise BadInput(f"{path} is not a model config (a JSON object), it holds a {type(raw).__name__}")
    model_type = str(raw.get("model_type", ""))
    if model_type == "deepseek_ocr2":
        family = OCR2
    elif is_deepseek_ocr_v1(raw):
        return ModelConfig(path, model_type, OCR1, raw)
    elif model_type in BUILDERS:
        family = CAUSAL_LM
    else:
        raise BadInput(
            f"FLOP model unknown for model_type {model_type or '?'} in {path} (known: deepseek_ocr2, "
            f"DeepSeek-OCR v1, and the decoders {', '.join(sorted(BUILDERS))})"
        )
    if resolved:
        return ModelConfig(path, model_type, family, ConfigView(raw))
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise BadInput(f"transformers cannot read {path}: {' '.join(str(exc).split())}") from None
    return ModelConfig(path, model_type, family, config)


def load_config(model: str) -> tuple[Any, str]:
    """(config, model_type) of a built-in name, a model folder or a config file: a transformers
    config object (what a model is built from), read by transformers."""
    found = read_model_config(model, shipped_resolved=False)
    return found.config, found.model_type


@dataclass(frozen=True)
class FlopReport:
    model: str
    model_type: str
    vision: list[Term]
    prefill: list[Term]
    decode_steps: list[list[Term]]
    tokens: dict[str, int]
    inputs: dict[str, Any]
    decoder: DecoderShape  # for the bytes a decode step reads (MBU)

    def to_json(self, breakdown: bool = False) -> dict[str, Any]:
        per_token = [total(step) for step in self.decode_steps]
        out: dict[str, Any] = {
            "model": self.model,
            "model_type": self.model_type,
            "inputs": self.inputs,
            "flops": {
                "vision": total(self.vision),
                "prefill": total(self.prefill),
                "decode": sum(per_token),
                "decode_per_token": per_token,
            },
            "tokens": self.tokens,
            "conventions": CONVENTIONS,
        }
        if breakdown:
            out["breakdown"] = {
                "vision": _by_block(self.vision),
                "prefill": _by_block(self.prefill),
                "decode_first_step": _by_block(self.decode_steps[0]) if self.decode_steps else {},
            }
        return out


def _by_block(terms: list[Term]) -> dict[str, int]:
    """FLOPs per kind of term (qkv, attention, mlp, ...), summed over layers and views."""
    out: dict[str, int] = {}
    for t in terms:
        kind = t.name.rsplit(".", 1)[-1]
        out[kind] = out.get(kind, 0) + t.flops
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


MAX_TOKENS = 100_000


def count_flops(
    model: str,
    tiles: int | None = None,
    mode: str | None = None,
    prompt_tokens: int = 11,
    new_tokens: int = 64,
    config: ModelConfig | None = None,
) -> FlopReport:
    """FLOPs of one page of `model`: its image (DeepSeek-OCR-2: global view + `tiles` local tiles;
    DeepSeek-OCR v1: the resolution `mode`; a causal LM has none), a prompt of the image tokens plus
    `prompt_tokens` text tokens, and `new_tokens` generated tokens. `config`, when given, is used
    instead of reading `model` again."""
    # the same bound as capture's --max-new-tokens: past it a count is a typo, and counting step by step
    # would run for minutes
    if not 0 <= prompt_tokens <= MAX_TOKENS or not 1 <= new_tokens <= MAX_TOKENS:
        raise BadInput(
            f"--prompt-tokens must be 0 to {MAX_TOKENS:,} and --new-tokens 1 to {MAX_TOKENS:,}, "
            f"got {prompt_tokens} and {new_tokens}"
        )
    found = config or read_model_config(model)
    if tiles is not None and found.family != OCR2:
        raise BadInput(
            f"--tiles is for DeepSeek-OCR-2 (deepseek_ocr2) only; {model} is {found.model_type}"
            + (" (DeepSeek-OCR v1: use --mode)" if found.family == OCR1 else "")
        )
    if mode is not None and found.family != OCR1:
        raise BadInput(f"--mode is for DeepSeek-OCR v1 only; {model} is {found.model_type}")
    common: dict[str, Any] = {"prompt_tokens": prompt_tokens, "new_tokens": new_tokens}
    if found.family == OCR2:
        tiles = 0 if tiles is None else tiles
        if not 0 <= tiles <= MAX_TILES:
            raise BadInput(
                f"--tiles must be 0 to {MAX_TILES} (local 768² tiles of DeepSeek-OCR-2), not {tiles}"
            )
        page = deepseek_ocr2_flops(found.config, tiles, prompt_tokens, new_tokens)
        vision, image, inputs = page.vision, page.image_tokens, {"tiles": tiles, **common}
        prefill, steps, decoder = page.prefill, page.decode_steps, page.decoder
    elif found.family == OCR1:
        resolution = parse_mode(mode or DEFAULT_MODE)
        v1 = deepseek_ocr_flops(found.config, resolution, prompt_tokens, new_tokens)
        vision, image, prefill, steps, decoder = (
            v1.vision,
            v1.image_tokens,
            v1.prefill,
            v1.decode_steps,
            v1.decoder,
        )
        inputs = {
            "mode": resolution.name,
            "base_size": resolution.base_size,
            "image_size": resolution.image_size,
            **common,
        }
    else:
        decoder = decoder_shape(found.config)
        vision, image, inputs = [], 0, dict(common)
        prefill = decoder_terms(decoder, prompt_tokens, 0, 1)
        steps = [decoder_terms(decoder, 1, prompt_tokens + s, 1) for s in range(new_tokens - 1)]
    return FlopReport(
        model=model,
        model_type=found.model_type,
        vision=vision,
        prefill=prefill,
        decode_steps=steps,
        tokens={"image": image, "prompt_total": image + prompt_tokens, "new": new_tokens},
        inputs=inputs,
        decoder=decoder,
    )
