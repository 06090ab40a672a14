"""FLOP terms of transformer building blocks, counted analytically from sizes.

Conventions (stated in every report): 2 FLOPs per multiply-accumulate; only matrix products are
counted (linear layers, convolutions, attention scores and values, relative-position products), not
norms, activations, softmax or residual adds; attention counts the query-key pairs the mask lets
through (causal self-attention over T tokens: T(T+1)/2 pairs), never a masked full square.

Each term keeps its shape, so a check against a counter that multiplies full squares (PyTorch's
FlopCounterMode on eager attention) can recompute the same term its way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    """One counted product: `flops` FLOPs, `count` times (layers, windows, tiles)."""

    name: str
    flops: int
    # attention only: the pairs the mask lets through, and the full query x key square
    pairs: int = 0
    square: int = 0
    pair_flops: int = 0  # FLOPs per pair (4 * heads * head_dim: scores and values)

    def with_square(self) -> int:
        """The term as a counter that computes the full query x key square counts it."""
        return self.flops if not self.pair_flops else self.square * self.pair_flops


def linear(name: str, tokens: int, d_in: int, d_out: int) -> Term:
    return Term(name, 2 * tokens * d_in * d_out)


def conv2d(name: str, out_positions: int, c_in: int, c_out: int, kernel: int) -> Term:
    return Term(name, 2 * out_positions * c_in * c_out * kernel * kernel)


def attention(
    name: str, pairs: int, q_len: int, kv_len: int, heads: int, head_dim: int, v_head_dim: int | None = None
) -> Term:
    """Scores (q . k) and weighted values (p . v): 2 FLOPs per pair, head and query-key dimension plus 2
    per pair, head and value dimension (the same unless the model says otherwise, as MLA does).
    Grouped-query attention changes the KV bytes, not these FLOPs."""
    per_pair = 2 * heads * (head_dim + (head_dim if v_head_dim is None else v_head_dim))
    return Term(name, pairs * per_pair, pairs=pairs, square=q_len * kv_len, pair_flops=per_pair)


def causal_pairs(new: int, past: int = 0, window: int | None = None) -> int:
    """Query-key pairs when `new` tokens attend causally to `past` cached tokens and to each other; with
    a sliding `window`, the query at position p sees only the keys p - window < j <= p."""
    if window is None or window <= 0:
        return new * past + new * (new + 1) // 2
    # sum over positions p = past .. past+new-1 of min(p + 1, window)
    first, last = past + 1, past + new  # p + 1 over the new queries
    below = max(0, min(last, window - 1) - first + 1)  # queries that see all keys before them
    full = new - below
    start = first
    return below * (start + start + below - 1) // 2 + full * window


def total(terms: list[Term]) -> int:
    return sum(t.flops for t in terms)
