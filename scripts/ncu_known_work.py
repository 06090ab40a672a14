"""Kernels whose work is known in advance, for checking what Nsight Compute measures (and perfctl
reads from its report) against arithmetic: run it under `ncu` on a GPU.

In perfctl's NVTX domain, once per repeat, inside a `page` range:
  gemm         one bf16 4096 x 4096 x 4096 matrix multiply: 2 * 4096**3 FLOPs on the tensor cores
  elementwise  y = x * 2 over a 256 MiB fp32 tensor: reads 256 MiB, writes 256 MiB, 64 Mi FLOPs (fp32)
  graph        a CUDA graph of two small fp32 elementwise kernels, replayed (ncu profiles its nodes)

    ncu --nvtx --nvtx-include "perfctl@page/gemm/" -o known python scripts/ncu_known_work.py

Needs a CUDA GPU, torch and the `nvtx` package (the version perfctl pins).
"""

from __future__ import annotations

import argparse

GEMM_N = 4096
ELEMENTWISE_BYTES = 256 * 2**20  # the fp32 tensor the elementwise kernel reads (and writes again)
GRAPH_ELEMENTS = 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="pages of known work (default 3)")
    args = parser.parse_args()

    import nvtx
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("ncu_known_work: needs a CUDA GPU")
    device = torch.device("cuda")
    a = torch.randn(GEMM_N, GEMM_N, dtype=torch.bfloat16, device=device)
    b = torch.randn(GEMM_N, GEMM_N, dtype=torch.bfloat16, device=device)
    x = torch.ones(ELEMENTWISE_BYTES // 4, dtype=torch.float32, device=device)
    small = torch.ones(GRAPH_ELEMENTS, dtype=torch.float32, device=device)
    # warm up cuBLAS and the elementwise kernels outside the ranges, then capture the graph
    (a @ b).sum().item()
    (x * 2.0).sum().item()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        (small * 3.0 + 1.0).sum().item()
        with torch.cuda.graph(graph, stream=stream):
            scaled = small * 3.0
            shifted = scaled + 1.0  # noqa: F841  (kept alive by the graph's pool)
    torch.cuda.synchronize()

    for repeat in range(args.repeats):
        nvtx.push_range("page", domain="perfctl", payload=repeat)
        nvtx.push_range("gemm", domain="perfctl")
        a @ b
        nvtx.pop_range(domain="perfctl")
        nvtx.push_range("elementwise", domain="perfctl")
        x * 2.0
        nvtx.pop_range(domain="perfctl")
        nvtx.push_range("graph", domain="perfctl")
        graph.replay()
        nvtx.pop_range(domain="perfctl")
        nvtx.pop_range(domain="perfctl")
    torch.cuda.synchronize()
    print(f"ncu_known_work: {args.repeats} repeats done on {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
