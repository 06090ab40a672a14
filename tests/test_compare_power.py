"""A compare that knows its power (issue 18): the smallest change two runs can detect, a gate that
says when it cannot tell and how many pages would, runs of different workloads refused, and MFU /
TFLOP/s verdicts that follow the stage time when the work is the same.

The runs: the full-size DeepSeek-OCR-2 H100 clean pass of 10 pages (tests/fixtures/h100-full-ocr2-clean10)
split into 2-page runs, as two short runs of one workload are: pages 8-9 as A, pages 1-2 as B. Their
prefill is +79.8 % and within noise (one 2-page side's std is 6x the other's: Welch's df is 1.06, t
12.706), the case issue 18 met with two 2-page CPU runs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, run_perfctl
from perfctl.analysis.compare import difference
from perfctl.analysis.compare_power import (
    GATE_EXIT_CODES,
    MAX_PAGES_NEEDED,
    Sample,
    from_time,
    min_detectable_change,
    pages_needed,
    welch,
)
from perfctl.analysis.result_compare import SampleRecord

CLEAN10 = FIXTURES / "h100-full-ocr2-clean10"  # 10 pages x 32 new tokens, clean pass only


def _pages_run(tmp_path: Path, name: str, keep: set[int]) -> Path:
    """A copy of the 10-page run keeping only the clean pass's pages `keep` (0-based)."""
    run = tmp_path / name
    shutil.copytree(CLEAN10, run)
    pages = run / "timing" / "pages.jsonl"
    lines = pages.read_text().splitlines()
    pages.write_text("".join(line + "\n" for i, line in enumerate(lines) if i in keep))
    return run


@pytest.fixture
def two_page_runs(tmp_path: Path) -> tuple[Path, Path]:
    return _pages_run(tmp_path, "a", {8, 9}), _pages_run(tmp_path, "b", {1, 2})


def _compare(*args: str) -> tuple[int, dict[str, Any], str]:
    proc = run_perfctl("compare", *args, "--format", "json")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout) if proc.stdout else {}, proc.stderr


def _stage(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in result["stages"] if s["stage"] == name)


# --- the pure functions, by hand ----------------------------------------------------------------


def test_min_detectable_change_by_hand() -> None:
    # two 2-page runs, mean 100, std 10 each: df = (50 + 50)² / (50²/1 + 50²/1) = 2, t(0.975, 2) =
    # 4.303, half-width 4.303 · √(100/2 + 100/2) = 43.03: a change under 43 % reads within noise
    mdc, why = min_detectable_change(Sample(100.0, 10.0, 2), Sample(100.0, 10.0, 2))
    assert mdc == pytest.approx(43.03) and why is None
    # the same, 2 pages against 1: no spread on B's side
    mdc, why = min_detectable_change(Sample(100.0, 10.0, 2), Sample(100.0, 0.0, 1))
    assert mdc is None and why == "no spread to judge: run B has 1 page(s) (at least 2 a side)"
    mdc, why = min_detectable_change(Sample(0.0, 1.0, 3), Sample(1.0, 1.0, 3))
    assert mdc is None and why == "run A's mean is 0: no change relative to it"
    # and it is the interval's half-width: a difference just above it is beyond noise
    found = welch(Sample(100.0, 10.0, 2), Sample(143.1, 10.0, 2))
    assert found is not None and found[0] == pytest.approx(43.03)
    assert (
        difference(Sample(100.0, 10.0, 2), Sample(143.1, 10.0, 2), ("slower", "faster"))["change"] == "slower"
    )
    assert difference(Sample(100.0, 10.0, 2), Sample(142.9, 10.0, 2), ("slower", "faster"))["change"] == (
        "within noise"
    )


def test_pages_needed_by_hand() -> None:
    a: SampleRecord = {"mean": 100.0, "std": 10.0, "count": 2}
    b: SampleRecord = {"mean": 100.0, "std": 10.0, "count": 2}
    # n a side: df = (n - 1)(100 + 100)² / (100² + 100²) = 2(n - 1), half-width t · √(200 / n);
    # a 10 % gate needs it at most 10:
    #   n = 8: t(14) = 2.145 · √25 = 10.72 > 10;  n = 9: t(16) = 2.120 · √22.2 = 9.99 <= 10
    assert pages_needed(a, b, 10.0) == 9
    # 43.03 % (the 2-page minimum above) is met by 2 pages already
    assert pages_needed(a, b, 43.1) == 2
    # 0.1 %: with t at 1.96 (df > 30) n >= 200 · (1.96 / 0.1)² = 76,832 pages: beyond the cap
    assert pages_needed(a, b, 0.1) is None and MAX_PAGES_NEEDED == 1000
    # the spreads of the two 2-page halves of the H100 run (prefill): sA = 0.4235 ms, sB = 2.5309 ms,
    # A's mean 20.868 ms; 5 % of it is 1.0434 ms. S = sA² + sB² = 6.5846e12 ns², df = (n-1) · 1.05597:
    #   n = 25: df 25.3 -> t(25) = 2.060 · √(S/25) 0.5132 ms = 1.0572 ms > 1.0434
    #   n = 26: df 26.4 -> t(26) = 2.056 · √(S/26) 0.5033 ms = 1.0347 ms <= 1.0434
    ha: SampleRecord = {"mean": 20867915.5, "std": 423537.87004764995, "count": 2}
    hb: SampleRecord = {"mean": 37513478.0, "std": 2530855.3780194554, "count": 2}
    assert pages_needed(ha, hb, 5.0) == 26


def test_gate_exit_codes() -> None:
    # 1 = a stage slower beyond noise, 3 = a stage that cannot tell; 2 stays bad input
    assert GATE_EXIT_CODES == {"passed": 0, "slower": 1, "cannot tell": 3}


def test_efficiency_from_the_time_interval_by_hand() -> None:
    # time A 100 ± 10 (5 pages), B 150 ± 20 (5 pages): se² = 100/5 + 400/5 = 100, df = 100² / (20²/4
    # + 80²/4) = 5.88 -> t(5) = 2.571, half-width 25.71: B - A in [24.29, 75.71], slower
    time = difference(Sample(100.0, 10.0, 5), Sample(150.0, 20.0, 5), ("slower", "faster"))
    assert time["change"] == "slower" and time["ci95_low"] == pytest.approx(24.29, abs=0.01)
    # a figure 1000 / time: A 10, B 6.667; its interval is the time's through 1000 / t, A held:
    # [1000 / (100 + 75.71) - 10, 1000 / (100 + 24.29) - 10] = [-4.309, -1.954]: lower, as time is slower
    rate = from_time(time, 1000.0, 1000.0, ("higher", "lower"))
    assert rate is not None and rate["change"] == "lower"
    assert rate["a"]["mean"] == pytest.approx(10.0) and rate["delta"] == pytest.approx(1000 / 150 - 10)
    assert rate["ci95_low"] == pytest.approx(1000 / 175.71 - 10, abs=1e-3)
    assert rate["ci95_high"] == pytest.approx(1000 / 124.29 - 10, abs=1e-3)
    # the time can detect h = 25.71 %; the figure falls by h / (1 + h) = 20.45 % at that time
    assert rate["min_detectable_change_pct"] == pytest.approx(25.71 / 1.2571, abs=0.01)
    # an interval reaching below time 0 leaves the figure's upper end unbounded
    wide = difference(Sample(10.0, 1.0, 2), Sample(12.0, 5.0, 2), ("slower", "faster"))
    assert wide["ci95_low"] is not None and 10.0 + wide["ci95_low"] < 0
    loose = from_time(wide, 1.0, 1.0, ("higher", "lower"))
    assert loose is not None and loose["ci95_high"] is None and loose["change"] == "within noise"
    assert math.isfinite(loose["ci95_low"] or math.nan)
    # MFU on GPUs of different peaks (k = FLOPs / peak: B's k is half A's, a peak twice as high):
    # A 10, B 500 / 150 = 3.333; interval [500 / 175.71 - 10, 500 / 124.29 - 10] = [-7.154, -5.977]
    mfu = from_time(time, 1000.0, 500.0, ("higher", "lower"))
    assert mfu is not None and mfu["change"] == "lower" and mfu["min_detectable_change_pct"] is None
    assert mfu["ci95_low"] == pytest.approx(500 / 175.71 - 10, abs=1e-3)
    assert mfu["ci95_high"] == pytest.approx(500 / 124.29 - 10, abs=1e-3)
    assert (
        mfu["min_detectable_change_reason"] is not None
        and "peaks differ" in mfu["min_detectable_change_reason"]
    )
    # B's peak 2/3 of A's: B's MFU 1500 / 150 = 10, as A's: its interval straddles 0
    even = from_time(time, 1000.0, 1500.0, ("higher", "lower"))
    assert even is not None and even["change"] == "within noise" and even["delta"] == pytest.approx(0.0)


# --- through the CLI, on the real runs ------------------------------------------------------------


def test_two_page_runs_within_noise_on_time_are_within_noise_on_tflops(
    two_page_runs: tuple[Path, Path],
) -> None:
    """Issue 18's contradiction: prefill +79.8 % within noise on time, and (before) "lower" beyond
    noise on achieved TFLOP/s and MFU, its delta-method interval shrunk on the slow side. With the
    same FLOPs per page on both sides, they now follow the time."""
    code, result, _ = _compare(*map(str, two_page_runs))
    assert code == 0
    for stage in result["stages"]:
        assert stage["efficiency_basis"] == "time"
        assert stage["flops_per_page_a"] == stage["flops_per_page_b"] > 0
        mirrored = {"slower": "lower", "faster": "higher"}.get(stage["verdict"], stage["verdict"])
        for key in ("mfu", "achieved_tflops"):
            assert stage[key]["change"] == mirrored, (stage["stage"], key, stage[key]["change"])
    prefill = _stage(result, "prefill")
    time, tflops = prefill["time_ns"], prefill["achieved_tflops"]
    assert time["delta_pct"] == pytest.approx(79.77, abs=0.01) and prefill["verdict"] == "within noise"
    assert time["a"]["count"] == time["b"]["count"] == 2
    # the values are FLOPs / the compared mean time, as analysis' efficiency computes them
    assert tflops["a"]["mean"] == pytest.approx(prefill["flops_per_page_a"] / time["a"]["mean"] / 1e3)
    # B's ratio of TFLOP/s is A's mean time over B's
    assert tflops["delta_pct"] == pytest.approx(100 * (time["a"]["mean"] / time["b"]["mean"] - 1))
    # these runs cannot detect a prefill change under 110.5 % (the interval's half-width, 23.05 ms,
    # over A's 20.868 ms)
    half = (time["ci95_high"] - time["ci95_low"]) / 2
    assert time["min_detectable_change_pct"] == pytest.approx(100 * half / time["a"]["mean"])
    assert time["min_detectable_change_pct"] == pytest.approx(110.48, abs=0.01)
    text = run_perfctl("compare", *map(str, two_page_runs)).stdout
    assert (
        "these runs can detect stage-time changes ≥ (95 %): vision 22.8 %, prefill 110.5 %, decode 26.0 %"
        in (text)
    )
    assert "vision, prefill, decode: the same FLOPs per page on both sides" in text


def test_a_gate_the_runs_cannot_meet_cannot_tell(two_page_runs: tuple[Path, Path]) -> None:
    """A 100 % gate: vision (+67.4 %) and decode (+80.5 %) are slower beyond noise but by less than
    100 %, and their runs can detect 22.8 % and 26.0 %; prefill's can detect only 110.5 %: exit 3."""
    code, result, err = _compare(*map(str, two_page_runs), "--fail-if-slower", "100")
    g = result["gate"]
    assert code == 3 and g["outcome"] == "cannot tell" and g["exit_code"] == 3 and g["failed"]
    assert g["failing_stages"] == []
    [prefill] = g["undetermined_stages"]
    assert prefill["stage"] == "prefill" and prefill["min_detectable_change_pct"] == pytest.approx(
        110.48, abs=0.01
    )
    assert prefill["pages_needed"] == 3 and prefill["pages_searched"] == MAX_PAGES_NEEDED
    assert err.strip() == (
        "perfctl: gate CANNOT TELL (exit 3): cannot tell a 100 % slowdown from noise: prefill can detect "
        "changes ≥ 110.5 % (3 pages per run would detect 100 %)"
    )


def test_the_prefill_that_passed_a_5_percent_gate_no_longer_passes(two_page_runs: tuple[Path, Path]) -> None:
    """At 5 %: vision and decode fail it (exit 1, slower outranks cannot tell), and prefill, +79.8 %
    within noise, is named as a stage the runs cannot tell, with the 26 pages per run that could."""
    code, result, err = _compare(*map(str, two_page_runs), "--fail-if-slower", "5")
    g = result["gate"]
    assert code == 1 and g["outcome"] == "slower"
    assert [f["stage"] for f in g["failing_stages"]] == ["vision", "decode"]
    assert [(u["stage"], u["pages_needed"]) for u in g["undetermined_stages"]] == [("prefill", 26)]
    assert len(err.strip().splitlines()) == 1
    assert "prefill can detect changes ≥ 110.5 % (26 pages per run would detect 5 %)" in err


def test_one_page_a_side_cannot_tell(tmp_path: Path) -> None:
    a, b = _pages_run(tmp_path, "a", {0}), _pages_run(tmp_path, "b", {1, 2})
    code, result, err = _compare(str(a), str(b), "--fail-if-slower", "50")
    assert code == 3
    assert all(s["time_ns"]["min_detectable_change_pct"] is None for s in result["stages"])
    assert result["stages"][0]["time_ns"]["min_detectable_change_reason"] == (
        "no spread to judge: run A has 1 page(s) (at least 2 a side)"
    )
    assert [u["pages_needed"] for u in result["gate"]["undetermined_stages"]] == [None, None, None]
    assert "vision unknown (no spread to judge: run A has 1 page(s) (at least 2 a side))" in err


def _with_workload(tmp_path: Path, name: str, **changes: Any) -> Path:
    run = tmp_path / name
    shutil.copytree(CLEAN10, run)
    manifest = json.loads((run / "manifest.json").read_text())
    for key, value in changes.items():
        if key == "model":
            manifest["model_spec"]["name"] = value
        elif key == "device":
            manifest["workload"]["device"] = value
            manifest["driver"]["device"] = value
        else:
            manifest["workload"][key] = value
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_decode_steps_of_two_spans_are_refused_unless_allowed(tmp_path: Path) -> None:
    """An eager run from before driver-info.json recorded the span (its decode steps: the decoder's
    forward and LM head) against an eager run marked token to token: two measurements, refused."""
    old = _with_workload(tmp_path, "old")
    new = tmp_path / "new"
    shutil.copytree(old, new)
    manifest = json.loads((new / "manifest.json").read_text())
    manifest["driver"]["decode_step_span"] = "token_to_token"
    (new / "manifest.json").write_text(json.dumps(manifest))
    proc = run_perfctl("compare", str(old), str(new))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "perfctl: error: the runs are different workloads (decode_step_span: decoder_forward vs "
        "token_to_token): pass --allow-different to compare them anyway"
    )
    code, result, _ = _compare(str(old), str(new), "--allow-different")
    assert code == 0 and result["run_differences"] == [
        {"key": "decode_step_span", "a": "decoder_forward", "b": "token_to_token", "refused": True}
    ]


def test_different_workloads_are_refused_unless_allowed(tmp_path: Path) -> None:
    base = _with_workload(tmp_path, "base")
    other = _with_workload(tmp_path, "other", model="deepseek-ocr", batch_size=8, decode="cuda_graphs")
    proc = run_perfctl("compare", str(base), str(other))
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "perfctl: error: the runs are different workloads (model: deepseek-ocr2 vs deepseek-ocr; "
        "batch_size: 1 vs 8; decode: eager vs cuda_graphs): pass --allow-different to compare them anyway"
    )
    code, result, _ = _compare(str(base), str(other), "--allow-different")
    assert code == 0 and result["allowed_different"] is True
    assert result["run_differences"] == [
        {"key": "model", "a": "deepseek-ocr2", "b": "deepseek-ocr", "refused": True},
        {"key": "batch_size", "a": 1, "b": 8, "refused": True},
        {"key": "decode", "a": "eager", "b": "cuda_graphs", "refused": True},
    ]
    assert "the runs differ: batch_size: 1 vs 8" in result["warnings"]
    text = run_perfctl("compare", str(base), str(other), "--allow-different").stdout
    assert (
        "compared as asked (--allow-different), though the workloads differ: model: deepseek-ocr2 vs "
        "deepseek-ocr; batch_size: 1 vs 8; decode: eager vs cuda_graphs" in text
    )
    # the device too; a run that records batch 1 eager is the same workload as one made before they
    # were recorded
    cpu = _with_workload(tmp_path, "cpu", device="cpu")
    refused = run_perfctl("compare", str(base), str(cpu))
    assert refused.returncode == 2 and "(device: cuda vs cpu)" in refused.stderr
    recorded = _with_workload(tmp_path, "recorded", batch_size=1, decode="eager")
    code, result, _ = _compare(str(base), str(recorded))
    assert code == 0 and result["run_differences"] == [] and result["allowed_different"] is False
    assert result["a"]["workload"]["batch_size"] == 1 and result["a"]["workload"]["decode"] == "eager"


def test_other_differences_stay_warnings(tmp_path: Path) -> None:
    base = _with_workload(tmp_path, "base")
    other = _with_workload(tmp_path, "other", max_new_tokens=64, tiles=2, seed=3)
    code, result, _ = _compare(str(base), str(other))
    assert code == 0 and result["allowed_different"] is False
    assert {d["key"] for d in result["run_differences"]} == {"max_new_tokens", "tiles", "seed"}
    assert not any(d["refused"] for d in result["run_differences"])
    assert "the runs differ: tiles: 0 vs 2" in result["warnings"]
