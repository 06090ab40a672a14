"""What PyTorch's FlopCounterMode counts, and perfctl's terms as that counter sees them: shared by the
FLOP tests that check each analytic stage against the counter on the real modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.flop_counter import FlopCounterMode

from perfctl.flops.terms import Term


def counter_flops(fn: Callable[[], Any]) -> int:
    """FLOPs the counter sees while `fn` runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def as_counter_sees(terms: list[Term]) -> int:
    """perfctl's terms with attention as the full query x key square the eager kernels compute."""
    return sum(t.with_square() for t in terms)
