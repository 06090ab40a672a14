"""MFU and MBU from a real clean timing pass: the full-size DeepSeek-OCR-2 (random bf16 weights) on an
NVIDIA H100 SXM, 3 pages x 64 new tokens (tests/fixtures/h100-full-ocr2-run, see its README row).
Every figure is recomputed here by hand from the fixture's own files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from perfctl.analysis.efficiency import efficiency
from perfctl.analysis.repeatability import load_clean_pass
from perfctl.flops import count_flops

RUN = Path(__file__).parent / "fixtures" / "h100-full-ocr2-run"
H100_SXM_DENSE_BF16 = 989.5e12  # TFLOP/s, half the datasheet's sparse 1,979
H100_SXM_BANDWIDTH = 3350e9  # bytes/s


def _manifest() -> dict:  # type: ignore[type-arg]
    return json.loads((RUN / "manifest.json").read_text())


def _clean_means() -> dict[str, float]:
    pages = [json.loads(line) for line in (RUN / "timing" / "pages.jsonl").read_text().splitlines()]
    return {
        s: sum(p["stage_wall_ns"][s] for p in pages) / len(pages) / 1e9
        for s in ("vision", "prefill", "decode")
    }


def test_mfu_per_stage_by_hand() -> None:
    result = efficiency(
        load_clean_pass(RUN, _manifest()), _manifest(), {"vision": 2 * 44.9e6, "prefill": 0, "decode": 1e9}
    )
    seconds = _clean_means()
    flops = count_flops("deepseek-ocr2", tiles=0, prompt_tokens=269 - 257, new_tokens=64).to_json()["flops"]
    assert result["inputs"]["peak_tflops"] == 989.5 and "H100 SXM" in result["inputs"]["peak_source"]
    for stage in ("vision", "prefill", "decode"):
        got = result["stages"][stage]
        assert got["flops_per_page"] == flops[stage]
        assert got["mfu"] == pytest.approx(flops[stage] / seconds[stage] / H100_SXM_DENSE_BF16, rel=1e-12)
    # what the run showed: vision 3.1 %, prefill 1.0 %, decode under 0.01 % of the dense bf16 peak
    assert result["stages"]["vision"]["mfu"] == pytest.approx(0.0306, abs=0.0005)
    assert result["stages"]["prefill"]["mfu"] == pytest.approx(0.0100, abs=0.0005)
    assert result["stages"]["decode"]["mfu"] < 1e-4
    assert result["stages"]["vision"]["nsys_over_clean"] == pytest.approx(
        2 * 44.9e6 / (seconds["vision"] * 1e9)
    )


def test_decode_mbu_by_hand() -> None:
    mbu = efficiency(load_clean_pass(RUN, _manifest()), _manifest(), {})["decode_mbu"]
    # active weights per decode token: 12 layers of q/k/v/o (1280 x 1280 each), layer 0's dense MLP,
    # 11 MoE layers (router 1280 x 64, 6 routed + 2 shared experts of 3 x 1280 x 896), the LM head
    params = 12 * 4 * 1280 * 1280 + 3 * 1280 * 6848 + 11 * (1280 * 64 + 8 * 3 * 1280 * 896) + 1280 * 129280
    assert params == 574_095_360  # the paper's "about 570 M activated parameters"
    assert mbu["weight_bytes_per_step"] == 2 * params
    # KV cache: keys and values, 12 layers x 1280, bf16, at context 270 .. 332 (mean 301)
    assert mbu["kv_bytes_per_step_mean"] == pytest.approx(2 * 12 * 1280 * 2 * 301)
    steps = 63
    step_s = _clean_means()["decode"] / steps
    assert mbu["mbu"] == pytest.approx((2 * params + 2 * 12 * 1280 * 2 * 301) / step_s / H100_SXM_BANDWIDTH)


def test_unknown_gpu_gives_no_number_and_override_wins(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    info_path = run / "timing" / "driver-info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps(info | {"gpu_name": "NVIDIA Imaginary 9000"}))
    unknown = efficiency(load_clean_pass(run, _manifest()), _manifest(), {})
    assert unknown["stages"]["vision"]["mfu"] is None and unknown["page"]["mfu"] is None
    assert unknown["inputs"]["peak_source"].startswith("dense bf16 peak: unknown")
    assert unknown["decode_mbu"]["mbu"] is None
    forced = efficiency(
        load_clean_pass(run, _manifest()), _manifest(), {}, peak_tflops=500.0, bandwidth_gbs=2000.0
    )
    assert forced["inputs"]["peak_tflops"] == 500.0 and "override" in forced["inputs"]["peak_source"]
    assert forced["stages"]["vision"]["mfu"] == pytest.approx(
        forced["stages"]["vision"]["achieved_tflops"] / 500.0
    )
    assert forced["decode_mbu"]["peak_bandwidth_gbs"] == 2000.0


def test_no_timing_pass_says_so() -> None:
    manifest = _manifest()
    manifest.pop("timing")
    assert efficiency(load_clean_pass(RUN, manifest), manifest, {}) == {
        "available": False,
        "reason": "no clean timing pass in this run (capture with --tool all)",
    }
