"""Instrumentation overhead (issue 8): the paired estimate and its interval on hand-made page times
with a known overhead, and a real run of scripts/instrumentation_overhead.py on the CPU (tiny
DeepSeek-OCR-2 and a causal LM) whose `bare` pages ran with no perfctl hook and no range."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perfctl.analysis.instrumentation import (
    bootstrap_median_ci,
    goal_verdict,
    overhead_summary,
    paired_ratios,
    rotated,
)

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "instrumentation_overhead.py"
SETTINGS = ("bare", "nvtx", "clean")
# per-pair noise, symmetric around 1: +-0.3 %, the same multiset for every setting
NOISE = (0.997, 1.003, 0.999, 1.001, 1.0, 0.998, 1.002, 1.0, 0.9985, 1.0015)


def _rows(overheads: dict[str, float], noise_scale: float = 1.0) -> list[dict[str, Any]]:
    """3 rounds x 10 pages; `bare` drifts by 2x over the run and differs from page to page (as a
    machine and a page set do); every other setting is bare x (1 + its overhead) x noise."""
    rows = []
    pages = len(NOISE)
    for rnd in range(3):
        for page in range(pages):
            turn = rnd * pages + page
            bare = 1e9 * (1 + page / 10) * (1 + turn / 30)
            for position, setting in enumerate(rotated(SETTINGS, rnd + page)):
                shift = (SETTINGS.index(setting) * 3 + turn) % pages  # each setting its own noise order
                factor = (
                    1.0
                    if setting == "bare"
                    else (1 + overheads[setting]) * (1 + (NOISE[shift] - 1) * noise_scale)
                )
                rows.append(
                    {
                        "round": rnd,
                        "page_index": page,
                        "setting": setting,
                        "position": position,
                        "wall_ns": round(bare * factor),
                    }
                )
    return rows


def test_a_known_two_percent_overhead_is_found_inside_its_interval() -> None:
    summary = overhead_summary(_rows({"nvtx": 0.002, "clean": 0.02}))
    clean, nvtx, bare = (summary["settings"][s] for s in ("clean", "nvtx", "bare"))
    assert bare["pages"] == 30 and "overhead" not in bare
    assert clean["pairs"] == 30
    assert clean["overhead"] == pytest.approx(0.02, abs=0.001)
    low, high = clean["overhead_ci"]
    assert low <= 0.02 <= high and high - low < 0.01
    assert clean["ratio_of_medians"] == pytest.approx(1.02, abs=0.005)
    assert (clean["goal_met"], clean["ci_too_wide"]) == (False, False)
    assert nvtx["overhead"] == pytest.approx(0.002, abs=0.001)
    assert nvtx["overhead_ci"][0] <= 0.002 <= nvtx["overhead_ci"][1]
    assert (nvtx["goal_met"], nvtx["ci_too_wide"]) == (True, False)
    # the same rows give the same interval (seeded bootstrap)
    assert overhead_summary(_rows({"nvtx": 0.002, "clean": 0.02}))["settings"]["clean"] == clean


def test_noise_wider_than_the_goal_is_reported_as_undecided() -> None:
    summary = overhead_summary(_rows({"nvtx": 0.01, "clean": 0.01}, noise_scale=30))  # +-9 % noise
    clean = summary["settings"]["clean"]
    low, high = clean["overhead_ci"]
    assert low < 0.01 < high
    assert (clean["goal_met"], clean["ci_too_wide"]) == (None, True)
    assert "straddles" in clean["verdict"]


def test_pairs_are_the_same_round_and_page() -> None:
    rows = [
        {"round": 0, "page_index": 0, "setting": "bare", "wall_ns": 100},
        {"round": 0, "page_index": 0, "setting": "clean", "wall_ns": 110},
        {"round": 1, "page_index": 0, "setting": "bare", "wall_ns": 200},
        {"round": 1, "page_index": 0, "setting": "clean", "wall_ns": 204},
        {"round": 1, "page_index": 1, "setting": "clean", "wall_ns": 999},  # no bare partner
    ]
    assert paired_ratios(rows, "clean") == [1.1, 1.02]
    assert bootstrap_median_ci([1.02]) is None
    assert goal_verdict(None) == (None, False, "too few pairs for a confidence interval")


def test_rotation_varies_the_first_setting_by_page_and_by_round() -> None:
    # 3 pages (a multiple of the 3 settings): each page still runs in every order over 3 rounds
    firsts = {page: {rotated(SETTINGS, rnd + page)[0] for rnd in range(3)} for page in range(3)}
    assert all(f == set(SETTINGS) for f in firsts.values())
    assert sorted(rotated(SETTINGS, 5)) == sorted(SETTINGS)


def _run_script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("model", "extra", "stage_ranges"),
    [
        # vision + prefill + 1 decode step for 2 new tokens
        ("deepseek-ocr2-tiny", (), 3),
        # a causal LM: prefill + 1 decode step, no vision
        (str(REPO / "tests" / "fixtures" / "models" / "tiny-llama"), ("--random-weights",), 2),
    ],
)
def test_real_cpu_run_times_every_setting_with_hooks_off_in_bare(
    tmp_path: Path, model: str, extra: tuple[str, ...], stage_ranges: int
) -> None:
    out = tmp_path / "overhead.json"
    proc = _run_script(
        tmp_path, "--model", model, *extra, "--device", "cpu", "--pages", "2", "--rounds", "1",
        "--new-tokens", "2", "--warmup", "0", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert set(result["settings"]) == set(SETTINGS)
    assert result["device"] == "cpu" and result["dtype"] == "float32"
    assert result["versions"]["torch"] and result["versions"]["transformers"] and result["versions"]["nvtx"]
    assert result["host"]["cpu_count"] and "--new-tokens 2" in result["command"]
    rows = result["rows"]
    assert len(rows) == 2 * 3
    assert {(r["setting"], r["page_index"]) for r in rows} == {(s, p) for s in SETTINGS for p in (0, 1)}
    for row in rows:
        assert row["wall_ns"] > 0 and row["new_tokens"] == 2 and row["round"] == 0
        if row["setting"] == "bare":
            assert (row["perfctl_hooks"], row["stage_ranges"]) == (0, 0)
        else:
            assert row["perfctl_hooks"] > 0 and row["stage_ranges"] == stage_ranges
            assert row["decode_steps"] == 1
            # the time spent inside perfctl's hooks is measured, and is part of the page
            assert 0 < row["hooks_ns"] < row["wall_ns"]
            assert len(row["tokens_sha256"]) == 16
    # the two pages start with different settings
    assert len({r["setting"] for r in rows if r["position"] == 0}) == 2
    assert result["same_tokens_as_bare"] == {"nvtx": True, "clean": True}
    settings = result["summary"]["settings"]
    assert set(settings) == set(SETTINGS)
    assert all(s["median_page_ns"] > 0 for s in settings.values())
    assert settings["clean"]["pairs"] == 2
    assert "instrumentation overhead" in proc.stdout and "clean" in proc.stdout


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--model", "no-such-model"), "neither a built-in model"),
        (("--model", "deepseek-ocr2-tiny", "--pages", "13"), "--pages 13: there are only 12 built-in"),
        (("--rounds", "0"), "--rounds must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], reason: str) -> None:
    proc = _run_script(tmp_path, *args, "--device", "cpu")
    assert proc.returncode == 2
    assert reason in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
