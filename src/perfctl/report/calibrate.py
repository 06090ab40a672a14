"""`perfctl calibrate`'s text: the GPU or CPU, its best matmul rate per size, and its copy bandwidth."""

from __future__ import annotations

from perfctl.hardware.calibrate import Calibration


def render_calibration_text(result: Calibration) -> str:
    data = result.to_json()
    dtype = data["matmul"]["dtype"]
    if result.on_cpu:  # a CPU's rates read in GFLOP/s
        sizes = ", ".join(f"n={s['n']}: {s['tflops'] * 1e3:,.1f}" for s in data["matmul"]["sizes"])
        return "\n".join(
            [
                f"CPU {data['cpu_name']} ({data['cpu_count']} logical CPUs, {data['torch_threads']} torch "
                f"threads), torch {data['torch']}: measured now by perfctl, not a datasheet figure",
                f"{dtype} matmul: {result.matmul_tflops * 1e3:,.1f} GFLOP/s best ({sizes})",
                f"memory copy: {result.bandwidth_gbs:,.1f} GB/s (bytes read + written)",
            ]
        )
    sizes = ", ".join(f"n={s['n']}: {s['tflops']:,.1f}" for s in data["matmul"]["sizes"])
    return "\n".join(
        [
            f"{data['gpu_name']} ({data['gpu_sm_count']} SMs, {data['device']}), torch {data['torch']}",
            f"{dtype} matmul: {result.matmul_tflops:,.1f} TFLOP/s best ({sizes})",
            f"device copy: {result.bandwidth_gbs:,.1f} GB/s (bytes read + written)",
        ]
    )
