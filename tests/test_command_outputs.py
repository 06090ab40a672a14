"""The text `perfctl flops`, `perfctl calibrate` and `perfctl doctor` print, byte for byte as before
their renderers moved from cli.py into perfctl.report (the expected text is what cli.py printed)."""

from __future__ import annotations

import json

from conftest import FIXTURES, run_perfctl
from perfctl.commands.doctor import CheckResult
from perfctl.hardware.calibrate import Calibration
from perfctl.report.calibrate import render_calibration_text
from perfctl.report.doctor import render_doctor_text

FLOPS_TEXT = {
    ("deepseek-ocr2-tiny",): [
        "deepseek-ocr2-tiny: 145 image + 11 text tokens, 64 new",
        "vision               0.17 GFLOP",
        "prefill              0.16 GFLOP",
        "decode             90.704 MFLOP",
        "decode per token: 1.392 MFLOP (first step) to 1.487 MFLOP (last)",
    ],
    ("deepseek-ocr2", "--tiles", "2", "--new-tokens", "5", "--breakdown"): [
        "deepseek-ocr2: 545 image + 11 text tokens, 5 new",
        "vision           2,808.42 GFLOP",
        "prefill            464.23 GFLOP",
        "decode               4.73 GFLOP",
        "decode per token: 1.18 GFLOP (first step) to 1.18 GFLOP (last)",
    ],
}


def test_flops_text_through_the_cli() -> None:
    for args, lines in FLOPS_TEXT.items():
        proc = run_perfctl("flops", *args)
        assert proc.returncode == 0, proc.stderr
        conventions = json.loads(run_perfctl("flops", *args, "--format", "json").stdout)["conventions"]
        assert proc.stdout == "\n".join([*lines, conventions]) + "\n", args


def test_calibration_text() -> None:
    result = Calibration(json.loads((FIXTURES / "h200-calibration.json").read_text()))
    assert render_calibration_text(result) == (
        "NVIDIA H200 (132 SMs, cuda:0), torch 2.11.0+cu130\n"
        "bf16 matmul: 789.8 TFLOP/s best (n=4096: 785.7, n=8192: 789.8, n=16384: 688.7)\n"
        "device copy: 4,202.7 GB/s (bytes read + written)"
    )


def test_doctor_text() -> None:
    results = [
        CheckResult("nsys", "ok", "nsys 2024.2 at /usr/bin/nsys", fix="never shown for ok"),
        CheckResult("nvml", "warn", "nvidia-ml-py not installed", fix="pip install nvidia-ml-py"),
        CheckResult("selftest", "fail", "no NVTX ranges arrived", fix="see docs/doctor.md"),
        CheckResult("gpu_peak", "skip", "no GPU"),
    ]
    assert render_doctor_text(results) == (
        "ok    nsys          nsys 2024.2 at /usr/bin/nsys\n"
        "warn  nvml          nvidia-ml-py not installed\n"
        "                   fix: pip install nvidia-ml-py\n"
        "fail  selftest      no NVTX ranges arrived\n"
        "                   fix: see docs/doctor.md\n"
        "skip  gpu_peak      no GPU\n"
        "1 ok, 1 warn, 1 fail, 1 skip"
    )
