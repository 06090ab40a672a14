"""A small CUDA program whose kernels reach the GPU in the three ways attribution must handle.

Captured on a GPU host to make test fixtures (see tests/fixtures/README.md):
  perfctl:main_thread    kernels launched by the thread that owns the range (nsys attributes them)
  perfctl:worker_window  the main thread waits while a worker thread launches kernels: nsys's
                         projection gives the range nothing; perfctl reports them separately
  perfctl:graph_replay   a CUDA graph replayed with cudaGraphLaunch: its kernels belong to the range
                         that launched the graph (with --cuda-graph-trace=node they appear one by one)
  perfctl:two_streams    matmuls on two CUDA streams at once: kernels overlap on the GPU, so busy time
                         (their union) is less than their summed time

    python scripts/fixture_programs/threads_and_graphs.py [threads|graphs|streams|all]
"""

from __future__ import annotations

import sys
import threading

import nvtx
import torch

DOMAIN = "perfctl"


def work(x: torch.Tensor, steps: int) -> torch.Tensor:
    for _ in range(steps):
        x = torch.relu(x @ x) * 0.01
    return x


def main(parts: str) -> None:
    dev = torch.device("cuda")
    x = torch.randn(512, 512, device=dev)
    work(x, 2)  # warm up cuBLAS before anything is measured
    torch.cuda.synchronize()

    nvtx.push_range("main_thread", domain=DOMAIN)
    work(x, 4)
    torch.cuda.synchronize()
    nvtx.pop_range(domain=DOMAIN)

    def worker() -> None:
        torch.cuda.set_device(0)  # a new thread has no current CUDA context of its own
        nvtx.push_range("worker_body", domain=DOMAIN)
        work(x, 3)
        torch.cuda.synchronize()
        nvtx.pop_range(domain=DOMAIN)

    if parts in ("threads", "all"):
        nvtx.push_range("worker_window", domain=DOMAIN)
        thread = threading.Thread(target=worker, name="perfctl-worker")
        thread.start()
        thread.join()
        nvtx.pop_range(domain=DOMAIN)
    if parts in ("graphs", "all"):
        replay_graph(dev)
    if parts in ("streams", "all"):
        overlap_streams(dev)


def overlap_streams(dev: torch.device) -> None:
    a = torch.randn(2048, 2048, device=dev)
    b = torch.randn(2048, 2048, device=dev)
    first, second = torch.cuda.Stream(), torch.cuda.Stream()
    torch.cuda.synchronize()
    nvtx.push_range("two_streams", domain=DOMAIN)
    for _ in range(4):
        with torch.cuda.stream(first):
            x = a @ a
        with torch.cuda.stream(second):
            y = b @ b
    torch.cuda.synchronize()
    nvtx.pop_range(domain=DOMAIN)
    print("checksum", float(x.sum() + y.sum()))


def replay_graph(dev: torch.device) -> None:
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
    main(sys.argv[1] if len(sys.argv) > 1 else "all")
