"""`perfctl capture --batch-size N` through the real command line on the CPU, under nsys: pages go to
`generate` N at a time in order (the last batch holds what is left), one page range and one set of
stage ranges per generate call, as `nsys stats` counts them; every batch's record names its rows;
padding is counted apart and never as useful FLOPs; the analysis says the run's throughput.

Two captures, shared by the tests: the tiny DeepSeek-OCR-2 (3 pages in batches of 2: one full batch,
one of 1; every page the same prompt length, so no padding; a static KV cache of the batch's rows) and
the tiny Llama over the built-in prompts of different lengths (4 in batches of 3: left padding; the
eager decode loop)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, run_perfctl
from nsys_reference import perfctl_nvtx_totals, run_nvtx_sum

pytestmark = [pytest.mark.nsys, pytest.mark.slow]

NEW_TOKENS = 4
LLAMA = REPO / "tests" / "fixtures" / "models" / "tiny-llama"
PROMPTS = REPO / "src" / "perfctl" / "workloads" / "sample_prompts"


def _capture(run: Path, nsys: str, *options: str) -> tuple[Path, dict[str, Any]]:
    proc = run_perfctl("capture", "--tool", "all", "--device", "cpu", "--max-new-tokens", str(NEW_TOKENS),
                       "--out", str(run), "--nsys", nsys, *options)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    analyzed = run_perfctl("analyze", str(run), "--format", "json")
    assert analyzed.returncode == 0, analyzed.stderr
    return run, json.loads(analyzed.stdout)


@pytest.fixture(scope="module")
def ocr2_run(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, dict[str, Any]]:
    run = tmp_path_factory.mktemp("batch") / "ocr2"
    return _capture(run, nsys_bin, "--num-pages", "3", "--batch-size", "2", "--decode", "static")


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, dict[str, Any]]:
    run = tmp_path_factory.mktemp("batch") / "llama"
    return _capture(run, nsys_bin, "--model", str(LLAMA), "--random-weights", "--num-pages", "4",
                    "--batch-size", "3")  # fmt: skip


def _records(folder: Path) -> list[dict[str, Any]]:
    lines = (folder / "pages.jsonl").read_text().splitlines()
    return [r for r in (json.loads(line) for line in lines) if not r.get("warmup")]


def _flops(model: str, prompt_tokens: int) -> dict[str, float]:
    """`perfctl flops` of one page: the text tokens besides the image's (a causal LM: the whole prompt)."""
    proc = run_perfctl("flops", model, "--prompt-tokens", str(prompt_tokens), "--new-tokens",
                       str(NEW_TOKENS), "--format", "json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    flops: dict[str, float] = json.loads(proc.stdout)["flops"]
    return flops


def test_pages_go_to_generate_in_batches_in_order(ocr2_run: tuple[Path, dict[str, Any]]) -> None:
    run, _ = ocr2_run
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["workload"]["batch_size"] == 2
    assert manifest["pages_expected"] == manifest["pages_completed"] == 2  # generate calls
    for folder in (run, run / "timing", run / "torch"):
        assert json.loads((folder / "workload.json").read_text())["batch_size"] == 2
        info = json.loads((folder / "driver-info.json").read_text())
        assert (info["batch_size"], info["batches"]) == (2, [[0, 1], [2]])
        assert (info["decode"], info["kv_cache"]) == ("static", "StaticCache")
        records = _records(folder)
        assert [(r["sequence"], r["batch_index"], r["batch_size"]) for r in records] == [(0, 0, 2), (1, 1, 1)]
        rows = [[(row["batch_row"], row["page_index"], row["page"]) for row in r["rows"]] for r in records]
        assert rows == [[(0, 0, "page-01.png"), (1, 1, "page-02.png")], [(0, 2, "page-03.png")]]
        assert all(r["padding_tokens"] == 0 and r["new_tokens"] == NEW_TOKENS for r in records)
        assert [r["input_shape"]["pixel_values"][0] for r in records] == [2, 1]  # the rows' global views
        assert "page_index" not in records[0] and "page" not in records[0]


def test_one_page_range_and_one_set_of_stages_per_generate_call(
    ocr2_run: tuple[Path, dict[str, Any]], nsys_bin: str, tmp_path: Path
) -> None:
    run, analysis = ocr2_run
    stages = {s["stage"]: s["instances"] for s in analysis["stages"]}
    assert stages == {"vision": 2, "prefill": 2, "decode": 2 * (NEW_TOKENS - 1)}
    assert [p["sequence"] for p in analysis["pages"]] == [0, 1]
    assert analysis["completion"]["expected"] == 2 and analysis["completion"]["not_started"] == []
    kept, expected = perfctl_nvtx_totals(analysis), run_nvtx_sum(nsys_bin, run / "run.sqlite", tmp_path)
    assert kept == {k: v for k, v in expected.items() if k in kept}


def test_throughput_counts_every_row(ocr2_run: tuple[Path, dict[str, Any]]) -> None:
    run, analysis = ocr2_run
    records = _records(run / "timing")
    wall_s = sum(r["wall_ns"] for r in records) / 1e9
    rate = analysis["throughput"]
    assert (rate["source"], rate["batch_size"], rate["generate_calls"], rate["pages"]) == ("timing", 2, 2, 3)
    assert rate["pages_per_s"] == pytest.approx(3 / wall_s, rel=1e-12)
    assert rate["tokens_per_s"] == pytest.approx(3 * NEW_TOKENS / wall_s, rel=1e-12)
    decode_s = sum(r["stage_wall_ns"]["decode"] for r in records) / 1e9
    assert rate["decode_tokens_per_s"] == pytest.approx(3 * (NEW_TOKENS - 1) / decode_s, rel=1e-12)
    # every row of a call gets its first token when the call's prefill ends: page by page
    first = [records[0]["first_token_ns"]] * 2 + [records[1]["first_token_ns"]]
    assert rate["time_to_first_token"]["p50_ms"] == pytest.approx(statistics.median(first) / 1e6)
    assert rate["padding_share"] == 0
    text = run_perfctl("analyze", str(run))
    assert f"throughput (clean pass, batch 2): {rate['pages_per_s']:,.2f} pages/s" in text.stdout
    summary = (run / "summary.md").read_text()
    assert "## Throughput" in summary and "At batch size 2 (3 pages in 2 generate calls" in summary
    assert "mean of 2 generate calls of up to 2 pages" in summary
    html = (run / "report.html").read_text()
    assert "<dt>Throughput</dt><dd>batch 2 (3 pages in 2 generate calls, the clean pass)" in html
    assert "in batches of 2 pages per generate call" in html


def test_a_batch_flops_are_its_rows_flops(ocr2_run: tuple[Path, dict[str, Any]]) -> None:
    _, analysis = ocr2_run
    page = _flops("deepseek-ocr2-tiny", 12)  # every page alike: BOS and the OCR prompt's 11 text tokens
    stages = analysis["efficiency"]["stages"]
    for stage in ("vision", "prefill", "decode"):  # per generate call: 2 rows, then 1
        assert stages[stage]["flops_per_page"] == pytest.approx((2 + 1) * page[stage] / 2, rel=1e-12)
    assert analysis["efficiency"]["page"]["padding_flops"] == 0


@pytest.fixture(scope="module")
def cpu_calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This CPU's measured bandwidth (perfctl calibrate --device cpu): the peak a CPU run's MBU needs."""
    out = tmp_path_factory.mktemp("calibration") / "cpu.json"
    proc = run_perfctl("calibrate", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def _mbu(run: Path, calibration: Path, tmp_path: Path) -> dict[str, Any]:
    proc = run_perfctl("analyze", str(run), "--calibration", str(calibration), "--format", "json",
                       "--out-dir", str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    mbu: dict[str, Any] = json.loads(proc.stdout)["efficiency"]["decode_mbu"]
    return mbu


def test_a_batch_through_experts_bounds_its_decode_mbu(
    ocr2_run: tuple[Path, dict[str, Any]], cpu_calibration: Path, tmp_path: Path
) -> None:
    """The tiny DeepSeek-OCR-2 decoder: 8 routed experts, top-2, each 3 x 128 x 64 weights
    (models/deepseek-ocr2-tiny), in the layers transformers resolves as sparse (the clean pass's
    model-config.resolved.json). A step of 2 rows reads 2 to 4 experts per such layer; which ones the
    router chose is not recorded: the MBU is bounded, not given."""
    run, _ = ocr2_run
    mbu = _mbu(run, cpu_calibration, tmp_path)
    assert mbu["mbu"] is None and "routed" in mbu["reason"]
    resolved = json.loads((run / "timing" / "model-config.resolved.json").read_text())["config"]
    sparse = resolved["text_config"]["mlp_layer_types"].count("sparse")
    assert sparse == 2  # (of 3 layers: the first is dense)
    expert = 3 * 128 * 64 * 4  # float32 bytes
    extra_two_rows = sparse * (min(2 * 2, 8) - 2) * expert
    assert mbu["bytes_per_step_most"] - mbu["bytes_per_step"] == pytest.approx((extra_two_rows + 0) / 2)
    assert mbu["mbu_most"] / mbu["mbu_least"] == pytest.approx(
        mbu["bytes_per_step_most"] / mbu["bytes_per_step"]
    )


def _prompt_tokens(path: Path) -> int:
    """The tiny Llama's folder has no tokenizer: a prompt's ids are BOS and its UTF-8 bytes."""
    return 1 + len(path.read_text(encoding="utf-8").encode("utf-8"))


def test_prompts_of_different_lengths_are_padded_on_the_left_and_the_padding_counted_apart(
    llama_run: tuple[Path, dict[str, Any]],
) -> None:
    run, analysis = llama_run
    lengths = [_prompt_tokens(p) for p in sorted(PROMPTS.glob("*.txt"))[:4]]
    records = _records(run / "timing")
    assert [[row["prompt_tokens"] for row in r["rows"]] for r in records] == [lengths[:3], lengths[3:]]
    first = max(lengths[:3])
    assert [r["prompt_tokens"] for r in records] == [first, lengths[3]]
    assert [[row["padding_tokens"] for row in r["rows"]] for r in records] == [
        [first - n for n in lengths[:3]],
        [0],
    ]
    assert records[0]["input_shape"]["input_ids"] == [3, first]
    padding = sum(first - n for n in lengths[:3])
    assert analysis["throughput"]["padding_share"] == pytest.approx(padding / (3 * first + lengths[3]))

    # useful FLOPs from each row's own length; the padding's apart
    own = [_flops(str(LLAMA), n) for n in lengths]
    padded = _flops(str(LLAMA), first)
    stages = analysis["efficiency"]["stages"]
    for stage in ("prefill", "decode"):
        assert stages[stage]["flops_per_page"] == pytest.approx(sum(f[stage] for f in own) / 2, rel=1e-12)
    wasted = sum(padded[s] - own[i][s] for i in range(3) for s in ("vision", "prefill", "decode")) / 2
    assert analysis["efficiency"]["page"]["padding_flops"] == pytest.approx(wasted, rel=1e-12)
    assert analysis["efficiency"]["inputs"]["prompt_tokens_per_page"] == sorted(set(lengths))


def test_a_dense_batch_reads_its_weights_once_and_every_row_cache(
    llama_run: tuple[Path, dict[str, Any]], cpu_calibration: Path, tmp_path: Path
) -> None:
    """The tiny Llama: 2 layers, 2 key-value heads of 64 / 4 = 16 dims: a position's cached keys and
    values are 2 x 2 x 2 x 16 float32 values. A step reads each row's own context, not the padding."""
    run, _ = llama_run
    mbu = _mbu(run, cpu_calibration, tmp_path)
    assert mbu["mbu"] is not None and "mbu_most" not in mbu
    lengths = [_prompt_tokens(p) for p in sorted(PROMPTS.glob("*.txt"))[:4]]
    per_position = 2 * 2 * 2 * 16 * 4
    steps = range(1, NEW_TOKENS)
    kv = [sum((n + i) * per_position for n in rows) for rows in (lengths[:3], lengths[3:]) for i in steps]
    assert mbu["kv_bytes_per_step_mean"] == pytest.approx(sum(kv) / len(kv), rel=1e-12)
    assert mbu["bytes_per_step"] == pytest.approx(mbu["weight_bytes_per_step"] + sum(kv) / len(kv), rel=1e-12)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (("--batch-size", "0"), "--batch-size must be between 1 and 1024, got 0"),
        (("--batch-size", "5"), "--batch-size 5 is more than the 4 pages given (--num-pages)"),
        (
            ("--batch-size", "2", "--profile-pages", "3"),
            "--profile-pages 3 is not a multiple of --batch-size 2: the profiled passes run whole batches",
        ),
    ],
)
def test_a_batch_size_it_cannot_run_is_refused_before_anything_runs(
    options: tuple[str, ...], said: str, tmp_path: Path
) -> None:
    run = tmp_path / "refused"
    proc = run_perfctl("capture", "--device", "cpu", "--num-pages", "4", "--out", str(run), *options)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert said in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and not run.exists()
