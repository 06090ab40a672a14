"""`perfctl sweep`: through the real command line on the CPU under nsys, a sweep of two batch sizes
(the tiny DeepSeek-OCR-2, the static KV cache): one run folder per batch size, each a whole capture
and analysis, and a sweep analysis that holds exactly their figures; its refusals (exit 2, one line,
nothing made or changed); and, on the analyses of a real compiled-decode sweep on an H200, decode's
roofline position recomputed from the FLOP model's figures and the saturation rule."""

from __future__ import annotations

import json
import lzma
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, run_perfctl
from faults_support import Capture
from input_integrity import tree_digest
from perfctl.analysis.sweep import SATURATION_GAIN, analyze_sweep, saturation

NEW_TOKENS = 4
H200_SWEEP = FIXTURES / "h200-compiled-sweep"
H200_BATCHES = (1, 16, 64)


@pytest.fixture(scope="module")
def cpu_sweep(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> tuple[Path, Any]:
    profiles = tmp_path_factory.mktemp("sweep")
    proc = run_perfctl("sweep", "--batch-sizes", "2,1", "--calls", "2", "--decode", "static",
                       "--device", "cpu", "--max-new-tokens", str(NEW_TOKENS), "--profiles", str(profiles),
                       "--sweep-id", "s", "--nsys", nsys_bin, "--format", "json")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return profiles / "s", json.loads(proc.stdout)


def _point_analysis(sweep: Path, batch: int) -> dict[str, Any]:
    return json.loads((sweep / f"batch-{batch}" / "analysis.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.nsys
@pytest.mark.slow
def test_a_sweep_is_one_whole_capture_per_batch_size(cpu_sweep: tuple[Path, Any]) -> None:
    sweep, printed = cpu_sweep
    manifest = json.loads((sweep / "sweep.json").read_text())
    assert manifest["status"] == "ok" and manifest["batch_sizes"] == [1, 2]
    assert [(p["batch_size"], p["run"], p["status"]) for p in manifest["points"]] == [
        (1, "batch-1", "ok"),
        (2, "batch-2", "ok"),
    ]
    # pages: calls x the largest batch, links to the built-in pages in order
    links = sorted((sweep / "pages").iterdir())
    assert len(links) == 4 and all(p.is_symlink() for p in links)
    assert [str(p.resolve()) for p in links] == manifest["pages"]
    for batch in (1, 2):
        run = sweep / f"batch-{batch}"
        run_manifest = json.loads((run / "manifest.json").read_text())
        assert run_manifest["status"] == "ok" and run_manifest["workload"].get("batch_size", 1) == batch
        assert run_manifest["workload"]["pages"] == manifest["pages"][: 2 * batch]  # the links resolved
        clean = [json.loads(line) for line in (run / "timing" / "pages.jsonl").read_text().splitlines()]
        assert len([r for r in clean if not r.get("warmup")]) == 2  # --calls 2
        profiled = [json.loads(line) for line in (run / "pages.jsonl").read_text().splitlines()]
        assert len([r for r in profiled if not r.get("warmup")]) == 1  # --profile-calls 1
        for name in ("analysis.json", "report.html", "summary.md"):
            assert (run / name).is_file()
    for name in ("sweep-analysis.json", "sweep-report.html", "sweep-summary.md"):
        assert (sweep / name).is_file()
    assert json.loads((sweep / "sweep-analysis.json").read_text()) == printed


@pytest.mark.nsys
@pytest.mark.slow
def test_the_sweep_analysis_holds_each_points_own_figures(cpu_sweep: tuple[Path, Any]) -> None:
    sweep, result = cpu_sweep
    for point in result["points"]:
        analysis = _point_analysis(sweep, point["batch_size"])
        rate = analysis["throughput"]
        assert rate["batch_size"] == point["batch_size"] and rate["source"] == point["throughput_source"]
        assert point["pages_per_s"] == rate["pages_per_s"]
        assert point["tokens_per_s"] == rate["tokens_per_s"]
        assert point["time_to_first_token_p50_ms"] == rate["time_to_first_token"]["p50_ms"]
        stages = analysis["timing"]["statistics"]["stages"]
        assert point["stage_cv"] == {s: stages[s]["cv"] for s in ("vision", "prefill", "decode")}
        assert point["cv_clock"] == "host"  # no CUDA events on the CPU
    assert result["saturation"]["metric"] == "pages_per_s"


@pytest.mark.nsys
@pytest.mark.slow
def test_the_points_are_registered_in_the_sweep_folder_and_analyze_redoes_the_sweep(
    cpu_sweep: tuple[Path, Any],
) -> None:
    sweep, result = cpu_sweep
    listed = run_perfctl("runs", "--profiles", str(sweep), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(r["run_id"] for r in json.loads(listed.stdout)) == ["batch-1", "batch-2"]
    again = run_perfctl("analyze", str(sweep), "--format", "json")
    assert again.returncode == 0, again.stderr
    redone = json.loads(again.stdout)
    # the same records give the same figures
    assert [p["pages_per_s"] for p in redone["points"]] == [p["pages_per_s"] for p in result["points"]]
    refused = run_perfctl("analyze", str(sweep), "--out-dir", str(sweep / "elsewhere"))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--batch-sizes", "1,,2"], "whole numbers"),
        (["--batch-sizes", "0,2"], "between 1 and"),
        (["--batch-sizes", "2,2"], "twice"),
        (["--batch-sizes", "1,2", "--calls", "2", "--profile-calls", "3"], "--profile-calls"),
        (["--batch-sizes", "1,2", "--decode", "compiled", "--device", "cpu"], "GPU"),
    ],
)
def test_bad_sweeps_are_refused_before_anything_is_made(
    options: list[str], says: str, tmp_path: Path
) -> None:
    proc = run_perfctl("sweep", *options, "--profiles", str(tmp_path), "--sweep-id", "s")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr
    assert not (tmp_path / "s").exists()


def test_force_replaces_only_a_sweep_folder_perfctl_made(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own work")
    (mine / "sweep.json").write_text('{"kind": "something else"}')
    before = tree_digest(mine)
    for force in ([], ["--force"]):
        proc = run_perfctl("sweep", "--batch-sizes", "1", "--out", str(mine), *force, "--device", "cpu")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert tree_digest(mine) == before
    proc = run_perfctl("sweep", "--batch-sizes", "1", "--out", str(tmp_path), "--force", "--device", "cpu",
                       "--profiles", str(tmp_path))  # fmt: skip
    assert proc.returncode == 2 and "profiles folder" in proc.stderr


def _h200_analyses() -> dict[int, Any]:
    return {b: json.loads(lzma.open(H200_SWEEP / f"batch-{b}.analysis.json.xz").read()) for b in H200_BATCHES}


def _h200_manifest(batches: tuple[int, ...] = H200_BATCHES) -> dict[str, Any]:
    return {
        "kind": "perfctl-sweep",
        "sweep_id": "h200-compiled",
        "batch_sizes": list(batches),
        "options": {"model": "deepseek-ocr2", "decode": "compiled", "max_new_tokens": 128},
        "points": [{"batch_size": b, "run": f"batch-{b}", "status": "ok", "reason": None} for b in batches],
    }


def test_decode_roofline_positions_are_the_flop_models_flops_per_modelled_byte() -> None:
    """Recomputed from each point's figures: decode FLOPs per call over its steps (128 new tokens:
    127 steps), over the modelled bytes of a step; the MoE batch's lower bound from the most bytes."""
    analyses = _h200_analyses()
    result = analyze_sweep(_h200_manifest(), "h200", analyses)
    for point in result["points"]:
        eff = analyses[point["batch_size"]]["efficiency"]
        flops_per_step = eff["stages"]["decode"]["flops_per_page"] / 127
        mbu = eff["decode_mbu"]
        roof = point["decode_roofline"]
        assert roof is not None
        assert roof["arithmetic_intensity"] == pytest.approx(flops_per_step / mbu["bytes_per_step"], rel=1e-9)
        assert roof["achieved_tflops"] == eff["stages"]["decode"]["achieved_tflops"]
        if point["batch_size"] > 1:  # routed experts: bounded by every row routed alike or apart
            least = flops_per_step / mbu["bytes_per_step_most"]
            assert roof["arithmetic_intensity_least"] == pytest.approx(least, rel=1e-9)
            assert point["decode_mbu"] is None
            assert (point["decode_mbu_least"], point["decode_mbu_most"]) == (
                mbu["mbu_least"],
                mbu["mbu_most"],
            )
        else:
            assert "arithmetic_intensity_least" not in roof and point["decode_mbu"] == mbu["mbu"]
    intensities = [p["decode_roofline"]["arithmetic_intensity"] for p in result["points"]]  # type: ignore[index]
    assert intensities == sorted(intensities)  # a larger batch reads the weights once for more rows


def test_h200_compiled_throughput_still_grows_at_batch_64() -> None:
    """Compiled decode on the H200: 1.79, 12.2, 16.7 pages/s at batch 1, 16, 64: the last step still
    gains over 10 %, so the sweep has not found where throughput stops growing."""
    result = analyze_sweep(_h200_manifest(), "h200", _h200_analyses())
    rates = [p["pages_per_s"] for p in result["points"]]
    assert rates == sorted(rates) and rates[2] > rates[1] * (1 + SATURATION_GAIN)  # type: ignore[operator]
    assert result["saturation"]["reached"] is False and result["saturation"]["batch_size"] is None
    assert "batch 64 still gains" in result["saturation"]["why"]
    assert result["roofs"]["gpu"] == "NVIDIA H200" and result["roofs"]["peak_tflops"]


def test_saturation_is_the_smallest_batch_no_larger_one_beats_by_the_threshold() -> None:
    points = analyze_sweep(_h200_manifest(), "h200", _h200_analyses())["points"]
    # the batch-16 point measured again at 64 within the threshold: throughput stopped growing at 16
    within = float(points[1]["pages_per_s"] or 0) * (1 + SATURATION_GAIN / 2)
    found = saturation([points[0], points[1], points[2] | {"pages_per_s": within}])
    assert found["reached"] is True and found["batch_size"] == 16
    assert found["dominant_category"] == points[1]["top_category"]["decode"]
    assert saturation(points[:1])["reached"] is False


def test_a_point_without_analysis_is_listed_with_its_status() -> None:
    manifest = _h200_manifest()
    manifest["points"][2] |= {"status": "failed", "reason": "CUDA out of memory"}
    analyses = _h200_analyses()
    del analyses[64]
    result = analyze_sweep(manifest, "h200", analyses)
    last = result["points"][2]
    assert (last["analyzed"], last["status"], last["pages_per_s"]) == (False, "failed", None)
    assert any("batch 64" in w and "CUDA out of memory" in w for w in result["warnings"])


@pytest.mark.nsys
@pytest.mark.slow
def test_two_sweeps_compare_batch_size_by_batch_size(cpu_sweep: tuple[Path, Any], tmp_path: Path) -> None:
    sweep, _ = cpu_sweep
    again = tmp_path / "again"
    shutil.copytree(sweep, again, symlinks=True)
    proc = run_perfctl("compare", str(sweep), str(again), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [(p["batch_size"], p["compared"]) for p in result["points"]] == [(1, True), (2, True)]
    for point in result["points"]:  # the same records on both sides: no change, every stage within noise
        assert point["pages_per_s"]["change_pct"] == 0.0
        assert {s["verdict"] for s in point["comparison"]["stages"]} == {"within noise"}
    # a batch size sweep B did not analyze is listed with why, and the rest still compared
    manifest = json.loads((again / "sweep.json").read_text())
    manifest["points"][1] |= {"status": "failed", "reason": "out of memory"}
    manifest["sweep_id"] = "<img src=x onerror=alert(1)>|\u202e"  # a hostile name stays inert text
    (again / "sweep.json").write_text(json.dumps(manifest))
    md = run_perfctl("compare", str(sweep), str(again), "--format", "md")
    assert md.returncode == 0, md.stderr
    assert "<img" not in md.stdout and "&lt;img src=x onerror=alert(1)&gt;\\|\\\\u202e" in md.stdout
    row = next(line for line in md.stdout.splitlines() if line.startswith("| 2 |"))
    assert row.startswith("| 2 | – | – | – | – | sweep B did not analyze batch 2 |"), row
    refused = run_perfctl("compare", str(sweep), str(sweep / "batch-1"))
    assert refused.returncode == 2 and "compare a sweep with a sweep" in refused.stderr


def test_the_h200_sweeps_analysis_is_what_its_points_analyses_give() -> None:
    """`perfctl sweep --batch-sizes 4,32 --decode compiled` on the H200: its sweep-analysis.json, as
    the GPU host wrote it, is analyze_sweep over its manifest and its points' analysis.json."""
    folder = FIXTURES / "h200-sweep-compiled-4-32"
    manifest = json.loads((folder / "sweep.json").read_text())
    written = json.loads((folder / "sweep-analysis.json").read_text())
    analyses = {
        b: json.loads(lzma.decompress((folder / f"batch-{b}" / "analysis.json.xz").read_bytes()))
        for b in (4, 32)
    }
    again = analyze_sweep(manifest, written["sweep"]["path"], analyses)
    assert json.loads(json.dumps(again)) == written | {"perfctl_version": again["perfctl_version"]}
    assert [p["status"] for p in again["points"]] == ["ok", "ok"]
    assert all(p["cv_clock"] == "cuda_events" and p["compile_seconds"] for p in again["points"])
    assert again["points"][1]["stage_cv"]["decode"] < 0.03  # compiled: the GPU sets the pace


@pytest.mark.nsys
@pytest.mark.slow
def test_force_replaces_a_sweep_perfctl_made_and_tool_nsys_sweeps_from_the_nsys_pass(
    tmp_path: Path, nsys_bin: str
) -> None:
    """--tool nsys: no clean pass, so each point's throughput comes from the nsys pass, and says so."""
    out = tmp_path / "s"
    options = ["--batch-sizes", "1", "--calls", "1", "--tool", "nsys", "--device", "cpu",
               "--max-new-tokens", str(NEW_TOKENS), "--out", str(out), "--nsys", nsys_bin]  # fmt: skip
    first = run_perfctl("sweep", *options)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "batch" in first.stdout and "Saturation" in first.stdout  # the text table
    started = json.loads((out / "sweep.json").read_text())["started_at"]
    again = run_perfctl("sweep", *options, "--force")
    assert again.returncode == 0, again.stdout + again.stderr
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["started_at"] != started and manifest["status"] == "ok"
    result = json.loads((out / "sweep-analysis.json").read_text())
    assert result["points"][0]["throughput_source"] == "nsys"
    assert not (out / "batch-1" / "timing").exists()


@pytest.mark.nsys
@pytest.mark.slow
def test_ctrl_c_ends_the_sweep_where_it_is_and_records_it(tmp_path: Path, nsys_bin: str) -> None:
    """The terminal's SIGINT during batch 1's nsys pass (10,000 calls ahead of it, whatever the
    machine's speed): the sweep stops there, batch 2 never starts, and what ran is recorded."""
    out = tmp_path / "s"
    sweep = Capture("--batch-sizes", "1,2", "--calls", "1", "--repeats", "10000", "--tool", "nsys",
                    "--device", "cpu", "--warmup", "0", "--max-new-tokens", str(NEW_TOKENS),
                    "--out", str(out), "--nsys", nsys_bin, command="sweep")  # fmt: skip
    sweep.wait_for_records(out / "batch-1" / "pages.jsonl", 1)
    sweep.interrupt_like_a_terminal()
    assert sweep.finish() == 1, sweep.stdout + sweep.stderr
    assert "Traceback" not in sweep.stderr
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["reason"].startswith("batch 1: stopped by SIGINT")
    assert [(p["batch_size"], p["status"]) for p in manifest["points"]] == [(1, "interrupted")]
    assert not (out / "batch-2").exists()
    result = json.loads((out / "sweep-analysis.json").read_text())
    assert result["sweep"]["status"] == "interrupted" and not result["points"][0]["analyzed"]
    assert sweep.processes() == {}, "processes of the sweep outlived it"
