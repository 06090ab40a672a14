"""Where does the clean timing pass's spread come from? One model load, pages timed under several
driver settings, interleaved round by round so that slow drift of the machine hits every setting
alike; per page the host clock, CUDA-event stage times, this process's CPU time and the VM's steal
share are kept.

    python scripts/timing_noise_probe.py --model deepseek-ocr2 --pages 10 --rounds 3 --new-tokens 32 \
        --out probe.jsonl

Settings: `base` (what the timing pass does: synchronize at stage edges, NVML sampled every 50 ms),
`no-nvml` (no sampling thread), `gc-off` (Python's cyclic GC disabled during the page, collected
between pages), `pinned` (process pinned to two CPUs). Prints, per setting and stage, the CV of
host and CUDA-event times over all its pages, and how stage time tracks steal and process CPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from perfctl.driver.markers import StageMarker
from perfctl.driver.stage_probes import (
    CudaStageProbe,
    host_cpu_delta,
    host_cpu_sample,
    host_speed_probe,
)
from perfctl.driver.telemetry import TelemetrySampler
from perfctl.stages import STAGES
from perfctl.workloads.loader import load_workload
from perfctl.workloads.models import resolve_model
from perfctl.workloads.pages import list_pages

SETTINGS = ("base", "no-nvml", "gc-off", "pinned")
SETTINGS_HELP = "comma-separated subset of " + ",".join(SETTINGS)


class _NoRanges:
    def push(self, name: str, payload: int | None = None) -> None:
        pass

    def pop(self) -> None:
        pass


def _cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="deepseek-ocr2")
    ap.add_argument("--pages", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--settings", default=",".join(SETTINGS), help=SETTINGS_HELP)
    args = ap.parse_args()
    settings = [s for s in args.settings.split(",") if s in SETTINGS]

    device = "cuda"
    spec = resolve_model(args.model, random_weights=False)
    work = load_workload(spec, device, "bfloat16", 0, 0)
    prepared = [work.prepare(p) for p in list_pages(None, args.pages)]
    probe = CudaStageProbe(device)
    marker = StageMarker(_NoRanges(), sync=torch.cuda.synchronize, probe=probe)
    decoder, vision = work.stage_modules()
    marker.attach(work.model, decoder, vision, new_tokens=args.new_tokens)
    gen = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
    gen["logits_processor"] = marker.logits_processors()  # marks each decode step, as the driver does
    all_cpus = os.sched_getaffinity(0)
    telemetry_file = Path(tempfile.mkdtemp()) / "telemetry.jsonl"
    rows: list[dict[str, Any]] = []
    with torch.inference_mode():
        for page in prepared[:2]:  # warm-up
            work.model.generate(**page.inputs, **gen)
        for rnd in range(args.rounds):
            for setting in settings:
                sampler = None
                if setting != "no-nvml":
                    sampler = TelemetrySampler(telemetry_file)
                    sampler.start()
                if setting == "pinned":
                    os.sched_setaffinity(0, set(sorted(all_cpus)[2:4]))
                for index, page in enumerate(prepared):
                    gc.collect()
                    if setting == "gc-off":
                        gc.disable()
                    speed = host_speed_probe()
                    before = host_cpu_sample()
                    marker.begin_page(ranges=False)
                    t0 = time.perf_counter_ns()
                    work.model.generate(**page.inputs, **gen)
                    torch.cuda.synchronize()
                    times = marker.end_page()
                    wall = time.perf_counter_ns() - t0
                    host = host_cpu_delta(before, host_cpu_sample())
                    gc.enable()
                    figures = probe.collect()
                    rows.append(
                        {
                            "round": rnd,
                            "setting": setting,
                            "page": index,
                            "wall_ns": wall,
                            "stage_wall_ns": times.wall_ns,
                            "stage_gpu_ns": figures.gpu_ns,
                            "peak": figures.peak_allocated_bytes,
                            **host,
                            "speed_probe_ns": speed,
                        }
                    )
                os.sched_setaffinity(0, all_cpus)
                if sampler is not None:
                    sampler.stop()
    marker.detach()
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for setting in settings:
        mine = [r for r in rows if r["setting"] == setting]
        parts = []
        for stage in STAGES:
            host_v = [r["stage_wall_ns"][stage] / 1e6 for r in mine]
            gpu_v = [r["stage_gpu_ns"][stage] / 1e6 for r in mine]
            parts.append(
                f"{stage} {statistics.mean(host_v):.1f} ms cv {_cv(host_v):.1%} (events {_cv(gpu_v):.1%})"
            )
        steal = [r.get("steal_share", 0.0) for r in mine]
        cpu_ratio = [r["process_cpu_ns"] / r["wall_ns"] for r in mine]
        page_v = [r["wall_ns"] / 1e6 for r in mine]
        corr = statistics.correlation(page_v, steal) if statistics.pstdev(steal) else float("nan")
        speed_v = [r["speed_probe_ns"] / 1e6 for r in mine]
        corr_speed = statistics.correlation(page_v, speed_v)
        print(
            f"{setting:8} " + "; ".join(parts) + f"; page cv {_cv(page_v):.1%}; steal mean "
            f"{statistics.mean(steal):.2%} max {max(steal):.2%} corr(page,steal) {corr:.2f}; "
            f"process cpu/wall {statistics.mean(cpu_ratio):.2f}; speed probe {min(speed_v):.2f}-"
            f"{max(speed_v):.2f} ms corr(page,probe) {corr_speed:.2f}"
        )
    # the drift across rounds and pages, whatever the setting
    for rnd in range(args.rounds):
        mine = [r["wall_ns"] / 1e6 for r in rows if r["round"] == rnd]
        print(f"round {rnd}: page mean {statistics.mean(mine):.1f} ms cv {_cv(mine):.1%}")


if __name__ == "__main__":
    main()
