"""Analytic FLOPs per inference stage (vision, prefill, decode), from a model's config alone.

`count_flops` resolves a model (a built-in name, a model folder or a config.json), reads its config
with transformers (no weights, no torch model) and returns `FlopReport`, whose `to_json` is what
`perfctl flops` prints. Every figure follows `terms.py`'s conventions, which the report states.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfctl.errors import BadInput
from perfctl.flops.deepseek_ocr2 import deepseek_ocr2_flops
from perfctl.flops.terms import Term, total
from perfctl.resources import builtin_model_dir, builtin_model_names

CONVENTIONS = (
    "2 FLOPs per multiply-accumulate; matrix products only (linear layers, convolutions, attention "
    "scores and values, relative-position products), not norms, activations or softmax; attention "
    "counts the query-key pairs its mask lets through (causal: T(T+1)/2), never a masked full square; "
    "MoE layers count the router, the top-k routed experts and the shared experts of each token; "
    "prefill computes logits for the last position only, each decode step for its one token; "
    "decode step i attends to the prompt and the i tokens before it (KV cache)."
)
MAX_TILES = 6


@dataclass(frozen=True)
class FlopReport:
    model: str
    model_type: str
    vision: list[Term]
    prefill: list[Term]
    decode_steps: list[list[Term]]
    tokens: dict[str, int]
    inputs: dict[str, Any]

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


def load_config(model: str) -> tuple[Any, str]:
    """The transformers config of a built-in name, a model folder or a config.json file."""
    builtin = builtin_model_dir(model)
    path = builtin if builtin is not None else Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise BadInput(
            f"model '{model}' is neither a built-in model ({', '.join(builtin_model_names())}), "
            "a model folder nor a config.json"
        )
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read {path}: {exc}") from None
    if not isinstance(config, dict):
        raise BadInput(f"{path} is not a model config (a JSON object), it holds a {type(config).__name__}")
    model_type = str(config.get("model_type", ""))
    if model_type != "deepseek_ocr2":
        raise BadInput(
            f"no FLOP model for model type '{model_type or '?'}' yet (supported: deepseek_ocr2); "
            "DeepSeek-OCR v1 and generic Hugging Face models are still to come"
        )
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path.parent), model_type


def count_flops(model: str, tiles: int = 0, prompt_tokens: int = 11, new_tokens: int = 64) -> FlopReport:
    """FLOPs of one page of `model`: its views (global + `tiles` local tiles), a prompt of image tokens
    plus `prompt_tokens` text tokens, and `new_tokens` generated tokens."""
    if not 0 <= tiles <= MAX_TILES:
        raise BadInput(f"--tiles must be 0 to {MAX_TILES} (local 768² tiles of DeepSeek-OCR-2), not {tiles}")
    # the same bound as capture's --max-new-tokens: past it a count is a typo, and counting step by step
    # would run for minutes
    if not 0 <= prompt_tokens <= MAX_TOKENS or not 1 <= new_tokens <= MAX_TOKENS:
        raise BadInput(
            f"--prompt-tokens must be 0 to {MAX_TOKENS:,} and --new-tokens 1 to {MAX_TOKENS:,}, "
            f"got {prompt_tokens} and {new_tokens}"
        )
    config, model_type = load_config(model)
    page = deepseek_ocr2_flops(config, tiles, prompt_tokens, new_tokens)
    return FlopReport(
        model=model,
        model_type=model_type,
        vision=page.vision,
        prefill=page.prefill,
        decode_steps=page.decode_steps,
        tokens={"image": page.image_tokens, "prompt_total": page.prompt_total, "new": new_tokens},
        inputs={"tiles": tiles, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens},
    )
