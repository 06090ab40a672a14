"""The warm-up covers every distinct input shape of the measured pages (perfctl.workloads.shapes): the
shapes the real workloads prepare (prompt lengths of a causal LM, DeepSeek-OCR-2's global view and
tiles), the plan over them, and live CPU captures through the command line that record it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_perfctl
from perfctl.resources import SAMPLE_PAGES_DIR, SAMPLE_PROMPTS_DIR
from perfctl.workloads.loader import load_workload
from perfctl.workloads.models import resolve_model
from perfctl.workloads.shapes import describe_shape, input_shape, plan_warmup, shape_key

TINY_LLAMA = Path(__file__).parent / "fixtures" / "models" / "tiny-llama"


def _prompts(n: int) -> list[Path]:
    return sorted(SAMPLE_PROMPTS_DIR.glob("*.txt"))[:n]


def test_causal_lm_prompts_of_different_length_are_shapes_of_their_own() -> None:
    work = load_workload(resolve_model(str(TINY_LLAMA), random_weights=True), "cpu", "float32", 0)
    prompts = _prompts(4)
    prepared = [work.prepare(p) for p in prompts]
    shapes = [input_shape(page.inputs) for page in prepared]
    # no tokenizer in the folder: BOS + one id per UTF-8 byte, so each prompt's length is its own
    lengths = [len(p.read_bytes()) + 1 for p in prompts]
    assert [s["input_ids"] for s in shapes] == [[1, n] for n in lengths]
    assert shapes[0] == {"attention_mask": [1, lengths[0]], "input_ids": [1, lengths[0]]}
    assert len(set(lengths)) == 4
    once = plan_warmup(shapes, 1)
    assert once.runs == [0, 1, 2, 3] and once.not_warmed_up() == []
    assert plan_warmup(shapes, 2).runs == [0, 1, 2, 3, 0, 1, 2, 3]
    none = plan_warmup(shapes, 0)
    assert none.runs == [] and none.not_warmed_up() == [0, 1, 2, 3]
    assert describe_shape(shapes[0]) == f"attention_mask 1x{lengths[0]}, input_ids 1x{lengths[0]}"


def test_deepseek_ocr2_pages_share_one_shape_and_the_warmup_keeps_its_old_pages() -> None:
    """Every DeepSeek-OCR-2 page is the same shape (a square global view, a fixed number of 768²
    tiles): the warm-up of one shape over N rounds runs pages 0..N-1 (mod the page count), as before."""
    work = load_workload(resolve_model("deepseek-ocr2-tiny"), "cpu", "float32", 0, tiles=2)
    pages = sorted(SAMPLE_PAGES_DIR.glob("*.png"))[:3]
    shapes = [input_shape(work.prepare(p).inputs) for p in pages]
    assert len({shape_key(s) for s in shapes}) == 1
    assert shapes[0]["pixel_values_local"][0] == 2 and shapes[0]["num_local_patches"] == [2]
    assert plan_warmup(shapes, 1).runs == [0]
    assert plan_warmup(shapes, 5).runs == [0, 1, 2, 0, 1]
    untiled = load_workload(resolve_model("deepseek-ocr2-tiny"), "cpu", "float32", 0, tiles=0)
    assert input_shape(untiled.prepare(pages[0]).inputs) != shapes[0]  # tiles are part of the shape


def test_nested_inputs_count_by_every_tensor() -> None:
    """DeepSeek-OCR v1's inputs as its workload hands them to generate: a list of (tiles, global view)
    tensors, the tile grid as a tensor; Gundam's tiles follow the page, so two grids are two shapes."""
    import torch

    def v1_page(tiles: int, tokens: int, grid: tuple[int, int]) -> dict[str, object]:
        ids = torch.zeros((1, tokens), dtype=torch.long)
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "images": [(torch.zeros((tiles, 3, 640, 640)), torch.zeros((1, 3, 1024, 1024)))],
            "images_seq_mask": torch.zeros((1, tokens), dtype=torch.bool),
            "images_spatial_crop": torch.tensor([list(grid)]),
        }

    portrait, wide = input_shape(v1_page(6, 913, (2, 3))), input_shape(v1_page(3, 593, (3, 1)))
    assert portrait["images"] == [[[6, 3, 640, 640], [1, 3, 1024, 1024]]]
    plan = plan_warmup([portrait, wide, portrait], 1)
    assert plan.shape_of_page == [0, 1, 0] and plan.runs == [0, 1]
    assert plan.to_json()["input_shapes"][0]["pages"] == [0, 2]


def _records(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.nsys
@pytest.mark.slow
def test_default_warmup_runs_each_prompt_length_once(tmp_path: Path, nsys_bin: str) -> None:
    """Two sample prompts of different length, the default --warmup 1: one warm-up run of each, marked
    and recorded with the shape it covered; no measured page is the first of its shape."""
    run = tmp_path / "run"
    proc = run_perfctl(
        "capture", "--model", str(TINY_LLAMA), "--random-weights", "--device", "cpu", "--num-pages", "2",
        "--max-new-tokens", "2", "--out", str(run), "--nsys", nsys_bin,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = _records(run / "pages.jsonl")
    warmups, measured = records[:2], records[2:]
    assert [(r.get("warmup"), r["sequence"], r["page_index"]) for r in warmups] == [
        (True, -1, 0),
        (True, -2, 1),
    ]
    assert [r["input_shape"] for r in warmups] == [r["input_shape"] for r in measured]
    assert warmups[0]["input_shape"] != warmups[1]["input_shape"]
    assert [r.get("shape_first_seen") for r in measured] == [False, False]
    info = json.loads((run / "driver-info.json").read_text())
    assert [s["pages"] for s in info["input_shapes"]] == [[0], [1]]
    assert [s["warmup_runs"] for s in info["input_shapes"]] == [1, 1]
    assert info["warmup_runs"] == 2 and info["pages_of_shapes_not_warmed_up"] == []
    analysis = json.loads(run_perfctl("analyze", str(run), "--format", "json").stdout)
    ranges = {r["name"]: r["instances"] for r in analysis["ranges"] if r["domain"] == "perfctl"}
    assert ranges["warmup"] == 2 and ranges["page"] == 2


@pytest.mark.nsys
@pytest.mark.slow
def test_no_warmup_marks_the_first_page_of_each_shape(tmp_path: Path, nsys_bin: str) -> None:
    """--warmup 0: no warm-up range, and in every pass the first page of each prompt length is the first
    of its shape (so its figures include first use); the analysis carries that evidence. (On the CPU
    there are no CUDA calls to count: the export's module loads are none.)"""
    run = tmp_path / "run"
    proc = run_perfctl(
        "capture", "--model", str(TINY_LLAMA), "--random-weights", "--device", "cpu", "--num-pages", "2",
        "--repeats", "2", "--max-new-tokens", "2", "--warmup", "0", "--tool", "all", "--out", str(run),
        "--nsys", nsys_bin,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for folder in (run, run / "timing"):
        records = _records(folder / "pages.jsonl")
        assert not any(r.get("warmup") for r in records)
        assert [r["shape_first_seen"] for r in records] == [True, True, False, False]
        info = json.loads((folder / "driver-info.json").read_text())
        assert info["warmup_runs"] == 0 and info["pages_of_shapes_not_warmed_up"] == [0, 1]
    analyzed = run_perfctl("analyze", str(run), "--format", "json")
    assert analyzed.returncode == 0, analyzed.stderr
    analysis = json.loads(analyzed.stdout)
    first_use = analysis["first_use"]
    assert first_use["nsys_pages_first_of_shape"] == [0, 1] and first_use["warmup"] is None
    assert all(p["module_loads"] == {} for p in first_use["nsys_pages"])
    (finding,) = [f for f in analysis["findings"] if f["id"] == "first_use"]
    assert finding["evidence"]["shape_first_seen"] == [0, 1]
    assert finding["next"].startswith("warm up every input shape")
