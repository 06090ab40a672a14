"""`perfctl capture --decode static` through the real command line on the CPU, under nsys: the static KV
cache is what transformers used, nothing compiled, and the decode steps marked from the logits
processor are the same NVTX ranges as eager's (one per step), as `nsys stats` counts them. One capture,
shared by the tests; `--decode compiled` on the CPU is refused before anything runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import run_perfctl
from nsys_reference import perfctl_nvtx_totals, run_nvtx_sum

PAGES, NEW_TOKENS = 2, 4


@pytest.fixture(scope="module")
def static_run(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, dict[str, Any]]:
    run = tmp_path_factory.mktemp("decode") / "static"
    proc = run_perfctl("capture", "--decode", "static", "--tool", "all", "--device", "cpu",
                       "--num-pages", str(PAGES), "--max-new-tokens", str(NEW_TOKENS),
                       "--out", str(run), "--nsys", nsys_bin)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    analyzed = run_perfctl("analyze", str(run), "--format", "json")
    assert analyzed.returncode == 0, analyzed.stderr
    return run, json.loads(analyzed.stdout)


def _read(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.mark.nsys
@pytest.mark.slow
def test_static_decode_runs_the_static_cache_without_compiling(
    static_run: tuple[Path, dict[str, Any]],
) -> None:
    run, analysis = static_run
    manifest = _read(run / "manifest.json")
    assert manifest["status"] == "ok" and manifest["workload"]["decode"] == "static"
    for folder in (run, run / "timing", run / "torch"):
        assert _read(folder / "workload.json")["decode"] == "static"
        info = _read(folder / "driver-info.json")
        assert (info["decode"], info["kv_cache"], info["compiled_forward"]) == (
            "static",
            "StaticCache",
            False,
        )
        assert info["compile"]["graphs_compiled"] == 0 and info["compile"]["recompiled_pages"] == []
        assert info["compile"]["cudagraph_skips"] == 0
        records = [json.loads(line) for line in (folder / "pages.jsonl").read_text().splitlines()]
        assert all(r["dynamo"]["graphs_compiled"] == 0 and "recompiled" not in r for r in records)
        assert all(r["decode_steps"] == NEW_TOKENS - 1 and r["new_tokens"] == NEW_TOKENS for r in records)
    loop = analysis["decode_loop"]
    assert (loop["mode"], loop["kv_cache"], loop["compiled_forward"]) == ("static", "StaticCache", False)
    assert set(loop["passes"]) == {"nsys", "timing", "torch"}
    assert all(p["graphs_compiled"] == 0 and p["recompiled_pages"] == [] for p in loop["passes"].values())
    assert not any(f["id"] == "recompiled" for f in analysis["findings"])
    # one line in the report's run identity
    assert (
        "<dt>Decode loop</dt><dd>--decode static · KV cache StaticCache · compiled forward no"
        in (run / "report.html").read_text()
    )


@pytest.mark.nsys
@pytest.mark.slow
def test_static_decode_steps_are_one_nvtx_range_each_as_nsys_stats_counts(
    static_run: tuple[Path, dict[str, Any]], nsys_bin: str, tmp_path: Path
) -> None:
    run, analysis = static_run
    stages = {s["stage"]: s for s in analysis["stages"]}
    assert stages["decode"]["instances"] == PAGES * (NEW_TOKENS - 1)
    assert stages["prefill"]["instances"] == stages["vision"]["instances"] == PAGES
    assert [p["stages"]["decode"]["instances"] for p in analysis["pages"]] == [NEW_TOKENS - 1] * PAGES
    assert perfctl_nvtx_totals(analysis) == run_nvtx_sum(nsys_bin, run / "run.sqlite", tmp_path)
    # the clean pass timed every step too
    assert analysis["timing"]["statistics"]["decode_step_latency"]["count"] == PAGES * (NEW_TOKENS - 1)


@pytest.mark.nsys
@pytest.mark.slow
def test_a_measured_page_that_recompiled_is_named(
    static_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """The clean pass's second page as a compiled run records a recompilation inside it."""
    run = shutil.copytree(static_run[0], tmp_path / "run")
    pages = run / "timing" / "pages.jsonl"
    records = [json.loads(line) for line in pages.read_text().splitlines()]
    records[-1] |= {"dynamo": {"graphs_compiled": 2, "graph_breaks": 0, "compile_seconds": 21.5},
                    "recompiled": True, "recompilations": 2}  # fmt: skip
    pages.write_text("".join(json.dumps(r) + "\n" for r in records))
    analyzed = run_perfctl("analyze", str(run), "--format", "json")
    assert analyzed.returncode == 0, analyzed.stderr
    analysis = json.loads(analyzed.stdout)
    assert analysis["decode_loop"]["passes"]["timing"]["recompiled_pages"] == [records[-1]["sequence"]]
    assert analysis["decode_loop"]["passes"]["timing"]["recompilations"] == 2
    found = [f for f in analysis["findings"] if f["id"] == "recompiled"]
    assert len(found) == 1 and found[0]["stage"] == "decode"
    assert found[0]["evidence"] == {"timing": {"pages": [records[-1]["sequence"]], "graphs": 2}}
    assert "recompiled in measured pages" in (run / "report.html").read_text()


def test_compiled_decode_on_the_cpu_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = run_perfctl("capture", "--decode", "compiled", "--device", "cpu", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--decode compiled needs a GPU" in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()


def test_an_unknown_decode_mode_is_refused(tmp_path: Path) -> None:
    proc = run_perfctl("capture", "--decode", "turbo", "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and "'turbo' is not one of 'eager', 'static', 'compiled'" in proc.stderr
    assert not (tmp_path / "run").exists()
