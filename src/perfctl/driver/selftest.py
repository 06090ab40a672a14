"""The program `perfctl doctor` runs under `nsys profile` to prove the capture path works here.

    python -m perfctl.driver.selftest FACTS.json

It pushes NVTX ranges in perfctl's domain through the driver's own emitter (so it exercises the same
`nvtx` package the driver uses) and, when torch sees a CUDA GPU, launches a few kernels inside them.
It writes what it did to FACTS.json, which the doctor compares with what arrived in the export:
ranges pushed but none recorded means nsys does not see this `nvtx`; kernels launched but none
recorded means nsys's CUPTI is older than the program's CUDA.
"""

from __future__ import annotations

import json
import sys
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from perfctl.driver.markers import NvtxEmitter
from perfctl.stages import DOMAIN

RANGE_NAMES = ("selftest", "kernels")


def run() -> dict[str, Any]:
    facts: dict[str, Any] = {"domain": DOMAIN, "ranges_pushed": 0, "cuda_available": False}
    facts["launched_kernels"] = False
    try:
        facts["nvtx"] = metadata.version("nvtx")
    except metadata.PackageNotFoundError:
        facts["nvtx"] = None
    emitter = NvtxEmitter(DOMAIN)
    emitter.push(RANGE_NAMES[0])
    facts["ranges_pushed"] += 1
    torch = _torch_or_none()
    facts["torch"] = None if torch is None else torch.__version__
    if torch is not None and torch.cuda.is_available():
        facts["cuda_available"] = True
        facts["torch_cuda"] = torch.version.cuda
        facts["gpu"] = torch.cuda.get_device_name(0)
        emitter.push(RANGE_NAMES[1])
        facts["ranges_pushed"] += 1
        x = torch.ones(1 << 16, device="cuda")  # a fill kernel
        y = (x * 2.0).sum()  # an elementwise and a reduction kernel
        torch.cuda.synchronize()
        facts["launched_kernels"] = True
        facts["result"] = float(y.item())
        emitter.pop()
    emitter.pop()
    return facts


def _torch_or_none() -> Any:
    try:
        import torch
    except ImportError:  # without torch there are no kernels to launch; the NVTX part still runs
        return None
    return torch


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m perfctl.driver.selftest FACTS.json", file=sys.stderr)
        return 2
    out = Path(argv[0])
    try:
        facts = run()
    except Exception as exc:  # the doctor reports it; the traceback goes to nsys's log
        traceback.print_exc()
        facts = {"error": f"{type(exc).__name__}: {exc}"}
    out.write_text(json.dumps(facts, indent=2) + "\n")
    return 1 if "error" in facts else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
