"""A category for every GPU activity, from its (demangled) kernel name.

The first matching rule wins, in this order: communication (NCCL), attention (flash / fused MHA / SDPA
kernels), GEMM (cuBLAS, cuBLASLt `nvjet`, CUTLASS, grouped GEMM), copy (copy and concatenation
kernels, memcpy, memset), reduction (reductions, softmax, norms, sorting, scans, top-k), elementwise
(PyTorch's elementwise and vectorized kernels, fills, indexing), then other. Names are matched
case-insensitively on substrings; the rules are deliberately few, so the report can say which rule
put a kernel where.
"""

from __future__ import annotations

CATEGORIES = ("communication", "attention", "gemm", "copy", "reduction", "elementwise", "other")

_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("communication", ("nccl", "allreduce", "all_reduce", "allgather", "all_gather", "reducescatter")),
    ("attention", ("flash", "fmha", "attention", "_attn", "scaled_dot_product", "sdpa", "mha_")),
    ("gemm", ("gemm", "nvjet", "cutlass", "cublas", "xmma", "matmul", "grouped_mm", "wgmma", "splitk")),
    ("copy", ("copy", "memcpy", "memset", "catarray", "cat_", "transpose")),
    ("reduction", ("reduce", "softmax", "norm", "sum_", "argmax", "topk", "sort", "scan", "radix", "max_")),
    ("elementwise", ("elementwise", "vectorized", "fill", "index", "gather", "scatter", "where", "clamp")),
)


def categorize(name: str) -> str:
    lowered = name.lower()
    for category, needles in _RULES:
        if any(needle in lowered for needle in needles):
            return category
    return "other"
