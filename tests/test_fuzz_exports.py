"""Random damage to a real export: the reader either analyzes it or refuses it with BadInput (exit 2,
one line) -- never another exception, never a traceback."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from conftest import run_perfctl
from perfctl.commands.analyze import analyze_path
from perfctl.commands.analyze_options import AnalyzeOptions
from perfctl.errors import BadInput

TRIALS = 40


def _damage(data: bytes, rng: random.Random) -> bytes:
    d = bytearray(data)
    mode = rng.choice(["bytes", "page", "truncate", "header"])
    if mode == "bytes":
        for _ in range(rng.choice([1, 5, 50, 500])):
            d[rng.randrange(len(d))] = rng.randrange(256)
    elif mode == "page":  # one 4 KiB page of noise
        page = rng.randrange(len(d) // 4096)
        d[page * 4096 : (page + 1) * 4096] = bytes(rng.randrange(256) for _ in range(4096))
    elif mode == "truncate":
        d = d[: rng.randrange(len(d))]
    else:  # the schema page (page 1) hit
        for _ in range(20):
            d[rng.randrange(100, 4096)] = rng.randrange(256)
    return bytes(d)


def test_damaged_exports_give_analysis_or_a_clean_refusal(tiny_gpu_export: Path, tmp_path: Path) -> None:
    rng = random.Random(20261127)
    data = tiny_gpu_export.read_bytes()
    refused = 0
    for trial in range(TRIALS):
        path = tmp_path / f"damaged-{trial}.sqlite"
        path.write_bytes(_damage(data, rng))
        try:
            analyze_path(path, AnalyzeOptions(out_dir=tmp_path / "out", allow_no_kernels=True))
        except BadInput:
            refused += 1
    assert refused > 0  # the damage is real: some files must be refused


@pytest.mark.parametrize("seed", [3, 11])
def test_damaged_export_on_the_command_line(tiny_gpu_export: Path, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data = bytearray(tiny_gpu_export.read_bytes())
    page = 1 + rng.randrange(len(data) // 4096 - 1)
    data[page * 4096 : (page + 1) * 4096] = bytes(rng.randrange(256) for _ in range(4096))
    path = tmp_path / "damaged.sqlite"
    path.write_bytes(bytes(data))
    proc = run_perfctl("analyze", str(path), "--format", "json")
    assert proc.returncode in (0, 2), proc.stderr
    assert "Traceback" not in proc.stderr
    if proc.returncode == 2:
        assert len(proc.stderr.strip().splitlines()) == 1
