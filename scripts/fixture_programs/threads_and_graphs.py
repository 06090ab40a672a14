"""A small CUDA program whose kernels reach the GPU in the three ways attribution must handle.

Captured on a GPU host to make test fixtures (see tests/fixtures/README.md):
  perfctl:main_thread    kernels launched by the thread that owns the range (nsys attributes them)
  perfctl:worker_window  the main thread waits while a worker thread launches kernels: nsys's
                         projection gives the range nothing; perfctl reports them separately
  perfctl:graph_replay   a CUDA graph replayed with cudaGraphLaunch: its kernels belong to the range
                         that launched the graph (with --cuda-graph-trace=node they appear one by one)

    python scripts/fixture_programs/threads_and_graphs.py
"""

from __future__ import annotations

import threading

import nvtx
import torch

DOMAIN = "perfctl"


def work(x: torch.Tensor, steps: int) -> torch.Tensor:
    for _ in range(steps):
        x = torch.relu(x @ x) * 0.01
    return x


def main() -> None:
    dev = torch.device("cuda")
    x = torch.randn(512, 512, device=dev)
    work(x, 2)  # warm up cuBLAS before anything is measured
    torch.cuda.synchronize()

    nvtx.push_range("main_thread", domain=DOMAIN)
    work(x, 4)
    torch.cuda.synchronize()
    nvtx.pop_range(domain=DOMAIN)

    def worker() -> None:
        nvtx.push_range("worker_body", domain=DOMAIN)
        work(x, 3)
        torch.cuda.synchronize()
        nvtx.pop_range(domain=DOMAIN)

    nvtx.push_range("worker_window", domain=DOMAIN)
    thread = threading.Thread(target=worker, name="perfctl-worker")
    thread.start()
    thread.join()
    nvtx.pop_range(domain=DOMAIN)

    static_in = torch.randn(512, 512, device=dev)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        work(static_in, 2)  # warm-up on a side stream, as graph capture requires
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = work(static_in, 3)
    torch.cuda.synchronize()

    nvtx.push_range("graph_replay", domain=DOMAIN)
    for _ in range(2):
        graph.replay()
    torch.cuda.synchronize()
    nvtx.pop_range(domain=DOMAIN)
    print("checksum", float(static_out.sum()))


if __name__ == "__main__":
    main()
