"""scripts/independent_step_timing.py on the CPU with the tiny built-in DeepSeek-OCR-2: it times the same
generate calls as perfctl's clean timing pass (same pages, input shapes, tokens and decode steps, the
same warm-up), imports no perfctl module, and its comparison prints a verdict per decode mode and batch
size. No test here depends on how fast the machine is: the agreement itself (within 5 %) is checked on
the GPU host by scripts/gpu-step-timing-check.sh; here the comparison's arithmetic is checked on
timings set from perfctl's own records; the weights, inputs and tokens of the script's generate calls
are checked bit for bit against perfctl's own workload code."""

from __future__ import annotations

import ast
import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import REPO, run_perfctl

pytestmark = pytest.mark.slow  # every test builds the tiny model; all but one capture under nsys

SCRIPT = REPO / "scripts" / "independent_step_timing.py"
PAGES = REPO / "src" / "perfctl" / "workloads" / "sample_pages"
NEW_TOKENS = 4
# runs the script as __main__ and writes the perfctl modules it left in sys.modules to argv[1]
IMPORT_WATCH = """
import json, runpy, sys
modules_file, script, *args = sys.argv[1:]
sys.argv = [script, *args]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as done:
    status = done.code
else:
    status = 0
with open(modules_file, "w") as out:
    json.dump(sorted(m for m in sys.modules if m == "perfctl" or m.startswith("perfctl.")), out)
sys.exit(status)
"""


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900, check=False
    )


def _capture(run: Path, nsys: str, *options: str) -> None:
    proc = run_perfctl("capture", "--tool", "all", "--device", "cpu", "--max-new-tokens", str(NEW_TOKENS),
                       "--out", str(run), "--nsys", nsys, *options)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _records(run: Path) -> list[dict[str, Any]]:
    lines = (run / "timing" / "pages.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def eager_run(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, Path, list[str]]:
    """A 2-page eager capture, the script's timings of it (with --forward-times), and the perfctl
    modules loaded in the script's process."""
    folder = tmp_path_factory.mktemp("independent")
    run, timings, modules = folder / "eager", folder / "eager.json", folder / "modules.json"
    _capture(run, nsys_bin, "--num-pages", "2")
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_WATCH, str(modules), str(SCRIPT),
         "--run", str(run), "--out", str(timings), "--forward-times"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run, timings, json.loads(modules.read_text())


@pytest.mark.nsys
def test_the_script_imports_no_perfctl_module(eager_run: tuple[Path, Path, list[str]]) -> None:
    # perfctl is importable in that process (PYTHONPATH=src): the script simply never imports it
    _, _, modules = eager_run
    assert modules == []
    # and every import it writes is torch, transformers, PIL, numpy or the standard library's
    imported = {
        name.split(".")[0]
        for node in ast.walk(ast.parse(SCRIPT.read_text()))
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    }
    assert imported - sys.stdlib_module_names == {"torch", "transformers", "PIL", "numpy"}


@pytest.mark.nsys
def test_it_times_the_clean_pass_calls(eager_run: tuple[Path, Path, list[str]]) -> None:
    run, timings, _ = eager_run
    result = json.loads(timings.read_text())
    records = _records(run)
    measured = [r for r in records if not r.get("warmup")]
    assert result["clock"] == "host_perf_counter_ns" and "not CUDA events" in result["method"]
    env = result["environment"]
    assert env["device"] == "cpu" and env["torch"] and env["transformers"] and env["device_name"]
    workload = result["workload"]
    assert (workload["decode"], workload["batch_size"], workload["max_new_tokens"]) == (
        "eager",
        1,
        NEW_TOKENS,
    )
    assert workload["pages"] == ["page-01.png", "page-02.png"] and workload["prompt_source"] == "stand-in ids"
    # the same warm-up: one run of the one input shape
    assert len(result["warmup_calls"]) == sum(1 for r in records if r.get("warmup")) == 1
    calls = result["calls"]
    assert [c["sequence"] for c in calls] == [r["sequence"] for r in measured] == [0, 1]
    for call, record in zip(calls, measured, strict=True):
        assert call["pages"] == [record["page"]] and call["batch_size"] == 1
        assert call["input_shape"] == record["input_shape"]
        assert call["prompt_tokens"] == record["prompt_tokens"]
        assert call["new_tokens"] == call["tokens_marked"] == record["new_tokens"] == NEW_TOKENS
        assert len(call["decode_step_ns"]) == len(call["host_decode_step_ns"]) == record["decode_steps"]
        assert call["first_token_ns"] > 0 and all(step > 0 for step in call["decode_step_ns"])
        assert call["first_token_ns"] + sum(call["decode_step_ns"]) <= call["wall_ns"]
    forwards = result["forward_calls"]
    assert [len(f["decode_forward_ns"]) for f in forwards] == [NEW_TOKENS - 1] * 2
    assert all(f["prefill_forward_ns"] > 0 for f in forwards)


def _compare(run: Path, timings: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return _script("--run", str(run), "--compare", str(timings), *options)


@pytest.mark.nsys
def test_compare_prints_a_verdict_per_decode_mode_and_batch(eager_run: tuple[Path, Path, list[str]]) -> None:
    run, timings, _ = eager_run
    proc = _compare(run, timings)
    assert proc.returncode == 0, proc.stderr  # whatever the verdict
    out = proc.stdout
    assert "decode eager, batch 1: 2 generate calls, 6 decode steps" in out
    assert "decode step p50 (host clock)" in out and "first token p50 (perfctl: host clock)" in out
    assert "(independent: forward only) decode step" in out
    assert "not the same calls" not in out
    assert out.splitlines()[-1] in (
        "verdict: within 5 % of perfctl's clean-pass step times",
        "verdict: NOT within 5 % of perfctl's clean-pass step times",
    )


def _with_perfctl_times(timings: Path, run: Path, out: Path, scale: float) -> Path:
    """The script's output with its times set to perfctl's own records' times x `scale`."""
    result = json.loads(timings.read_text())
    measured = [r for r in _records(run) if not r.get("warmup")]
    for call, record in zip(result["calls"], measured, strict=True):
        call["decode_step_ns"] = [round(step * scale) for step in record["decode_step_ns"]]
        call["first_token_ns"] = round(record["first_token_ns"] * scale)
    out.write_text(json.dumps(result))
    return out


@pytest.mark.nsys
def test_require_within_exits_1_when_outside(eager_run: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    run, timings, _ = eager_run
    same = _compare(
        run, _with_perfctl_times(timings, run, tmp_path / "same.json", 1.0), "--require-within", "5"
    )
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.count("x1.0000  within 5 %") >= 2
    assert same.stdout.splitlines()[-1] == "verdict: within 5 % of perfctl's clean-pass step times"
    slower = _with_perfctl_times(timings, run, tmp_path / "slower.json", 1.08)
    outside = _compare(run, slower, "--require-within", "5")
    assert outside.returncode == 1
    assert outside.stdout.count("x1.0800  NOT within 5 %") == 2
    assert outside.stdout.splitlines()[-1] == "verdict: NOT within 5 % of perfctl's clean-pass step times"
    assert _compare(run, slower).returncode == 0  # the verdict alone does not fail
    assert _compare(run, slower, "--require-within", "10").returncode == 0


@pytest.mark.nsys
def test_compare_names_calls_that_differ(eager_run: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    run, timings, _ = eager_run
    result = json.loads(timings.read_text())
    fewer = copy.deepcopy(result) | {"calls": result["calls"][:1]}
    (tmp_path / "fewer.json").write_text(json.dumps(fewer))
    proc = _compare(run, tmp_path / "fewer.json", "--require-within", "100")
    assert proc.returncode == 1
    assert "not the same calls: perfctl ran 2 measured generate calls, this script 1" in proc.stdout
    result["calls"][1]["decode_step_ns"].pop()
    (tmp_path / "short.json").write_text(json.dumps(result))
    proc = _compare(run, tmp_path / "short.json")
    assert proc.returncode == 0 and "call 1: decode steps 3 in perfctl's record, 2 here" in proc.stdout


@pytest.mark.nsys
def test_bad_input_is_one_line_and_exit_2(eager_run: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    run, timings, _ = eager_run
    no_timing_pass = tmp_path / "run"
    no_timing_pass.mkdir()
    for args in (
        ("--run", str(no_timing_pass), "--out", str(tmp_path / "x.json")),
        ("--run", str(tmp_path / "missing"), "--compare", str(timings)),
        ("--run", str(run), "--compare", str(run / "manifest.json")),
    ):
        proc = _script(*args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("independent_step_timing: error: ")


@pytest.mark.nsys
def test_batches_with_the_static_cache(tmp_path: Path, nsys_bin: str) -> None:
    """3 pages in batches of 2 (one of 2 rows, one of 1) with --decode static: the same batches, rows
    and shapes; one comparison per batch size."""
    run, timings = tmp_path / "static", tmp_path / "static.json"
    _capture(run, nsys_bin, "--num-pages", "3", "--batch-size", "2", "--decode", "static")
    proc = _script("--run", str(run), "--out", str(timings))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(timings.read_text())
    assert (result["workload"]["decode"], result["workload"]["batch_size"]) == ("static", 2)
    measured = [r for r in _records(run) if not r.get("warmup")]
    calls = result["calls"]
    assert [c["batch_size"] for c in calls] == [r["batch_size"] for r in measured] == [2, 1]
    assert [c["pages"] for c in calls] == [["page-01.png", "page-02.png"], ["page-03.png"]]
    assert [c["input_shape"] for c in calls] == [r["input_shape"] for r in measured]
    assert len(result["warmup_calls"]) == 2  # one per input shape, as perfctl's warm-up
    assert all(len(c["decode_step_ns"]) == NEW_TOKENS - 1 == c["tokens_marked"] - 1 for c in calls)
    out = _compare(run, timings).stdout
    assert "decode static, batch 1: 1 generate calls, 3 decode steps" in out
    assert "decode static, batch 2: 1 generate calls, 3 decode steps" in out
    assert "not the same calls" not in out


def _load_script() -> Any:
    spec = importlib.util.spec_from_file_location("independent_step_timing", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _same(a: Any, b: Any) -> bool:
    return bool(torch.equal(a, b)) if isinstance(a, torch.Tensor) else bool(a == b)


@pytest.mark.parametrize("tiles", [0, 2])
def test_same_weights_inputs_and_tokens_as_perfctl(tiles: int) -> None:
    """The script's own model construction and input preparation give what perfctl's driver hands
    generate (this test imports perfctl; the script does not): the same weights, the same tensors in a
    batch of 2 pages, the same tokens out."""
    from perfctl.workloads.batching import collate, pad_token_id
    from perfctl.workloads.decode import generate_args
    from perfctl.workloads.loader import load_workload
    from perfctl.workloads.models import resolve_model

    script = _load_script()
    model_spec = resolve_model("deepseek-ocr2-tiny")
    work = load_workload(model_spec, "cpu", "float32", 0, tiles)
    settings = {"model": {"folder": str(model_spec.folder), "random_weights": True}, "seed": 0}
    model = script.load_model(settings, torch.device("cpu"), torch.float32)
    theirs_weights, ours_weights = work.model.state_dict(), model.state_dict()
    assert theirs_weights.keys() == ours_weights.keys()
    assert all(torch.equal(theirs_weights[k], ours_weights[k]) for k in theirs_weights)
    pages = sorted(PAGES.glob("*.png"))[:2]
    text_ids, source = script.prompt_ids(model_spec.folder, model.config)
    assert source == "stand-in ids"
    ours = [
        script.page_inputs(p, model.config, tiles, text_ids, torch.device("cpu"), torch.float32)
        for p in pages
    ]
    theirs = collate([work.prepare(p) for p in pages], pad_token_id(work.model.config)).inputs
    batch = script.batch_inputs(ours, script.padding_id(model.config))
    assert batch.keys() == theirs.keys()
    assert all(_same(theirs[k], batch[k]) for k in batch)
    for decode in ("eager", "static"):
        assert script.generate_args(decode, NEW_TOKENS) == {
            "max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False
        } | generate_args(decode)  # fmt: skip
    with torch.inference_mode():
        args = script.generate_args("eager", NEW_TOKENS)
        assert torch.equal(work.model.generate(**theirs, **args), model.generate(**batch, **args))
