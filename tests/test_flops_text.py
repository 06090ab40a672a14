"""`perfctl flops --breakdown` in text mode prints the breakdown it prints in JSON, through the real
command line on the built-in tiny DeepSeek-OCR-2."""

from __future__ import annotations

import json

from conftest import run_perfctl
from perfctl.report.flops import flop_text


def test_breakdown_is_printed_in_text_mode_too() -> None:
    shown = run_perfctl("flops", "deepseek-ocr2-tiny", "--breakdown")
    data = json.loads(run_perfctl("flops", "deepseek-ocr2-tiny", "--breakdown", "--format", "json").stdout)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    breakdown = data["breakdown"]
    assert set(breakdown) == {"vision", "prefill", "decode_first_step"}
    for part, kinds in breakdown.items():
        start = lines.index(f"{part} by kind of block:")
        rows = lines[start + 1 : start + 1 + len(kinds)]
        total = sum(kinds.values())
        for row, (kind, flops) in zip(rows, kinds.items(), strict=True):  # largest first, as in JSON
            assert row.split()[0] == kind
            assert flop_text(flops) in row and f"{flops / total:.1%}" in row
    plain = run_perfctl("flops", "deepseek-ocr2-tiny").stdout
    assert "by kind of block" not in plain and plain.splitlines()[0] == lines[0]
