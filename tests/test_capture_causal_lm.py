"""Causal LMs from a local folder through the real command line: `perfctl capture --device cpu` under
nsys (prompt-only pages, stages from the decoder hooks), then `perfctl analyze`, whose efficiency
divides the analytic FLOPs of each page's own prompt by the clean times -- and keeps working from
the run folder's copy of the config once the model folder is gone, or says why it cannot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_perfctl
from perfctl.flops import count_flops

pytestmark = [pytest.mark.nsys, pytest.mark.slow]

MODELS = Path(__file__).parent / "fixtures" / "models"
NEW_TOKENS = 4


def _capture(model: Path, run: Path, nsys_bin: str, *extra: str) -> None:
    proc = run_perfctl(
        "capture", "--model", str(model), "--random-weights", "--device", "cpu", "--num-pages", "2",
        "--max-new-tokens", str(NEW_TOKENS), "--out", str(run), "--nsys", nsys_bin, *extra,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_llama_folder_all_passes_and_efficiency_without_the_folder(tmp_path: Path, nsys_bin: str) -> None:
    model = tmp_path / "tiny-llama"
    shutil.copytree(MODELS / "tiny-llama", model)
    run = tmp_path / "run"
    _capture(model, run, nsys_bin, "--tool", "all")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["model_config"] == "model-config.json"
    assert json.loads((run / "model-config.json").read_text()) == json.loads(
        (model / "config.json").read_text()
    )
    assert [p["file"] for p in manifest["pages"]] == ["prompt-01.txt", "prompt-02.txt"]
    info = json.loads((run / "driver-info.json").read_text())
    assert info["image_tokens_per_page"] == 0 and info["prompt_source"].startswith("utf-8 bytes")

    analyzed = run_perfctl("analyze", str(run), "--format", "json")
    assert analyzed.returncode == 0, analyzed.stderr
    analysis = json.loads(analyzed.stdout)
    stages = {s["stage"]: s for s in analysis["stages"]}
    assert "vision" not in stages or stages["vision"]["instances"] == 0
    assert stages["prefill"]["instances"] == 2 and stages["decode"]["instances"] == 2 * (NEW_TOKENS - 1)

    # FLOPs per page: the mean over the clean pages of each page's own prompt length
    records = [json.loads(line) for line in (run / "timing" / "pages.jsonl").read_text().splitlines()]
    measured = [r for r in records if not r.get("warmup")]
    prompts = [r["prompt_tokens"] for r in measured]
    assert len(set(prompts)) == 2  # the two sample prompts differ in length
    per_page = [
        count_flops(str(model), prompt_tokens=p, new_tokens=NEW_TOKENS).to_json()["flops"] for p in prompts
    ]
    eff = analysis["efficiency"]
    # read from the config the clean pass's transformers resolved (no transformers import in analyze)
    assert eff["available"] is True
    assert eff["inputs"]["model_config"].startswith("timing/model-config.resolved.json")
    for stage in ("prefill", "decode"):
        assert eff["stages"][stage]["flops_per_page"] == pytest.approx(sum(f[stage] for f in per_page) / 2)
        assert eff["stages"][stage]["clean_seconds_per_page"] > 0
    assert eff["inputs"]["prompt_tokens_per_page"] == sorted(set(prompts))

    # the model folder and the resolved config are gone: the run folder's copy of config.json is enough
    # (read through transformers), and gives the same figures
    shutil.rmtree(model)
    (run / "timing" / "model-config.resolved.json").unlink()
    again = run_perfctl("analyze", str(run), "--format", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["efficiency"]["stages"] == eff["stages"]
    assert (
        json.loads(again.stdout)["efficiency"]["inputs"]["model_config"]
        == "model-config.json in the run folder"
    )

    # and without that copy: efficiency is unknown with the reason, the rest of the analysis goes on
    (run / "model-config.json").unlink()
    last = run_perfctl("analyze", str(run), "--format", "json")
    assert last.returncode == 0, last.stderr
    degraded = json.loads(last.stdout)
    assert degraded["efficiency"]["available"] is False
    assert (
        degraded["efficiency"]["reason"].startswith("FLOPs unknown:")
        and str(model) in degraded["efficiency"]["reason"]
    )
    assert degraded["stages"] == analysis["stages"] and degraded["timing"] == analysis["timing"]
    assert "FLOPs unknown" in (run / "report.html").read_text()


def test_moe_folder_prefill_and_decode_ranges(tmp_path: Path, nsys_bin: str) -> None:
    run = tmp_path / "moe"
    _capture(MODELS / "tiny-qwen2-moe", run, nsys_bin, "--warmup", "0")
    analysis = json.loads(run_perfctl("analyze", str(run), "--format", "json").stdout)
    stages = {s["stage"]: s for s in analysis["stages"]}
    assert stages["prefill"]["instances"] == 2 and stages["decode"]["instances"] == 2 * (NEW_TOKENS - 1)
    info = json.loads((run / "driver-info.json").read_text())
    assert info["parameters"] > 0 and info["decode_ranges_per_page"] == NEW_TOKENS - 1


def test_refused_before_anything_runs(tmp_path: Path) -> None:
    """--tiles with a causal LM, a folder of images for a causal LM, DeepSeek-OCR v1: exit 2, one line,
    no run folder left behind. (--calibrate on the CPU was refused here until calibrate measured CPUs:
    tests/test_calibrate.py checks it now.)"""
    llama = str(MODELS / "tiny-llama")
    cases = [
        (["--model", llama, "--random-weights", "--tiles", "1"], "--tiles is for DeepSeek-OCR-2"),
        (["--model", llama, "--random-weights", "--pages", str(tmp_path)], "no text prompts"),
        (["--model", "deepseek-ocr"], "transformers 4.46"),
    ]
    for args, needle in cases:
        out = tmp_path / "never"
        proc = run_perfctl("capture", *args, "--device", "cpu", "--out", str(out))
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert not out.exists()
