"""`perfctl calibrate`'s text: the GPU, its best bf16 matmul rate per size, and its copy bandwidth."""

from __future__ import annotations

from perfctl.hardware.calibrate import Calibration


def render_calibration_text(result: Calibration) -> str:
    data = result.to_json()
    sizes = ", ".join(f"n={s['n']}: {s['tflops']:,.1f}" for s in data["matmul"]["sizes"])
    return "\n".join(
        [
            f"{data['gpu_name']} ({data['gpu_sm_count']} SMs, {data['device']}), torch {data['torch']}",
            f"bf16 matmul: {result.matmul_tflops:,.1f} TFLOP/s best ({sizes})",
            f"device copy: {result.bandwidth_gbs:,.1f} GB/s (bytes read + written)",
        ]
    )
