"""`--decode`: which of transformers' decode loops a capture measures.

  eager     the dynamic KV cache, every decode step run op by op from Python (perfctl's default, and
            what every run before `--decode` measured)
  static    the static KV cache (`cache_implementation="static"`) with transformers' automatic
            compile turned off (`disable_compile=True`): the same loop over a fixed-size cache
  compiled  the static KV cache with transformers' own torch.compile of the decode step (on CUDA it
            compiles the model's forward with mode "reduce-overhead": CUDA graphs). The prefill
            forward is not the compiled call (generate's `_prefill` calls the model itself).

transformers compiles by itself only on cuda / xpu / neuron / tpu devices (`_valid_auto_compile_criteria`
in transformers.generation.utils), so on the CPU `compiled` would silently run `static`: capture refuses
it there (`cpu_refusal`).
"""

from __future__ import annotations

from typing import Any

EAGER, STATIC, COMPILED = "eager", "static", "compiled"
DECODE_MODES = (EAGER, STATIC, COMPILED)


def generate_args(decode: str) -> dict[str, Any]:
    """The `generate` keyword arguments that select the decode loop `decode` names."""
    if decode == EAGER:
        return {}
    if decode == STATIC:
        return {"cache_implementation": "static", "disable_compile": True}
    if decode == COMPILED:
        return {"cache_implementation": "static"}
    raise ValueError(f"unknown decode mode {decode!r}")


def cpu_refusal(decode: str, device: str) -> str | None:
    """Why `decode` cannot run on `device` as asked, or None."""
    if decode == COMPILED and device == "cpu":
        return (
            "--decode compiled needs a GPU: transformers compiles the decode step by itself only on "
            "cuda/xpu/neuron/tpu devices, so on the CPU it would run --decode static"
        )
    return None
