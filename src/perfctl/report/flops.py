"""`perfctl flops`'s text: the tokens, FLOPs per stage, per decode step, with --breakdown per kind of block
(with its share of the stage), and the conventions counted by."""

from __future__ import annotations

from typing import Any


def render_flops_text(data: dict[str, Any]) -> str:
    """`data`: what perfctl.commands.flops returned (`perfctl flops --format json`)."""
    f, t = data["flops"], data["tokens"]
    text_tokens = t["prompt_total"] - t["image"]
    lines = [f"{data['model']}: {t['image']} image + {text_tokens} text tokens, {t['new']} new"]
    lines += [f"{stage:<8} {flop_text(f[stage]):>22}" for stage in ("vision", "prefill", "decode")]
    steps = f["decode_per_token"]
    if steps:
        lines.append(f"decode per token: {flop_text(steps[0])} (first step) to {flop_text(steps[-1])} (last)")
    for part, kinds in (data.get("breakdown") or {}).items():  # with --breakdown: largest kind first
        total = sum(kinds.values())
        lines.append(f"{part} by kind of block:")
        lines += [
            f"  {kind:<16} {flop_text(flops):>16} {flops / total if total else 0.0:>7.1%}"
            for kind, flops in kinds.items()
        ]
    lines.append(data["conventions"])
    return "\n".join(lines)


def flop_text(flops: float) -> str:
    return f"{flops / 1e9:,.2f} GFLOP" if flops >= 1e8 or flops == 0 else f"{flops / 1e6:,.3f} MFLOP"
