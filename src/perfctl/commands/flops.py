"""`perfctl flops MODEL`: analytic FLOPs per stage of one page, from the model's config (perfctl.flops)."""

from __future__ import annotations

from typing import Any

from perfctl.flops import count_flops


def flops(
    model: str,
    tiles: int | None = None,
    mode: str | None = None,
    prompt_tokens: int = 11,
    new_tokens: int = 64,
    breakdown: bool = False,
) -> dict[str, Any]:
    """The FLOP count as `perfctl flops --format json` prints it (with `breakdown`: per kind of block)."""
    report = count_flops(model, tiles=tiles, mode=mode, prompt_tokens=prompt_tokens, new_tokens=new_tokens)
    return report.to_json(breakdown=breakdown)
