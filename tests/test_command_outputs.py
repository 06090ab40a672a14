"""The text `perfctl flops`, `perfctl calibrate` and `perfctl doctor` print, byte for byte as before
their renderers moved from perfctl.cli into perfctl.report (the expected text is what perfctl.cli printed)."""

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
    # --breakdown: each stage (decode: its first step) by kind of block, largest first, with its share
    ("deepseek-ocr2", "--tiles", "2", "--new-tokens", "5", "--breakdown"): [
        "deepseek-ocr2: 545 image + 11 text tokens, 5 new",
        "vision           2,808.42 GFLOP",
        "prefill            464.23 GFLOP",
        "decode               4.73 GFLOP",
        "decode per token: 1.18 GFLOP (first step) to 1.18 GFLOP (last)",
        "vision by kind of block:",
        "  mlp                1,668.49 GFLOP   59.4%",
        "  qkv                  439.51 GFLOP   15.6%",
        "  attention            413.47 GFLOP   14.7%",
        "  proj                 146.50 GFLOP    5.2%",
        "  q                     41.93 GFLOP    1.5%",
        "  o                     41.93 GFLOP    1.5%",
        "  conv2                 14.76 GFLOP    0.5%",
        "  kv                    11.98 GFLOP    0.4%",
        "  patch_embed           10.27 GFLOP    0.4%",
        "  rel_pos                9.78 GFLOP    0.3%",
        "  conv1                  8.56 GFLOP    0.3%",
        "  projector              1.25 GFLOP    0.0%",
        "prefill by kind of block:",
        "  routed_experts       252.52 GFLOP   54.4%",
        "  shared_experts        84.17 GFLOP   18.1%",
        "  kv                    43.73 GFLOP    9.4%",
        "  mlp                   29.24 GFLOP    6.3%",
        "  q                     21.86 GFLOP    4.7%",
        "  o                     21.86 GFLOP    4.7%",
        "  attention              9.51 GFLOP    2.0%",
        "  router                 1.00 GFLOP    0.2%",
        "  lm_head                0.33 GFLOP    0.1%",
        "decode_first_step by kind of block:",
        "  routed_experts         0.45 GFLOP   38.4%",
        "  lm_head                0.33 GFLOP   28.0%",
        "  shared_experts         0.15 GFLOP   12.8%",
        "  kv                   78.643 MFLOP    6.7%",
        "  mlp                  52.593 MFLOP    4.4%",
        "  q                    39.322 MFLOP    3.3%",
        "  o                    39.322 MFLOP    3.3%",
        "  attention            34.222 MFLOP    2.9%",
        "  router                1.802 MFLOP    0.2%",
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
        "bfloat16 matmul: 789.8 TFLOP/s best (n=4096: 785.7, n=8192: 789.8, n=16384: 688.7)\n"
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
