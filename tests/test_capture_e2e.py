"""The real thing on this machine: `perfctl capture` of the built-in workload under nsys (CPU), then
`perfctl analyze`, through the command line as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_perfctl

pytestmark = [pytest.mark.nsys, pytest.mark.slow]

PAGES, REPEATS, NEW_TOKENS = 2, 2, 4


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> Path:
    root = tmp_path_factory.mktemp("profiles")
    proc = run_perfctl(
        "capture",
        "--tool",
        "nsys",
        "--num-pages",
        str(PAGES),
        "--repeats",
        str(REPEATS),
        "--max-new-tokens",
        str(NEW_TOKENS),
        "--profiles",
        str(root),
        "--run-id",
        "e2e",
        "--nsys",
        nsys_bin,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "status: ok" in proc.stdout
    return root / "e2e"


def test_run_folder_is_self_describing(captured: Path) -> None:
    for name in (
        "run.nsys-rep",
        "run.sqlite",
        "manifest.json",
        "workload.json",
        "driver.log",
        "nsys.log",
        "pages.jsonl",
        "driver-info.json",
    ):
        assert (captured / name).is_file(), name
    m = json.loads((captured / "manifest.json").read_text())
    assert m["status"] == "ok" and m["reason"] is None
    assert m["nsys"]["version"].startswith("20")
    cmd = m["nsys"]["command"]
    assert cmd[1] == "profile" and "--trace=cuda,nvtx,osrt" in cmd and "--sample=none" in cmd
    assert (
        "--cpuctxsw=none" in cmd
        and "--cuda-graph-trace=node" in cmd
        and cmd[-2:] == ["perfctl.driver", str(captured / "workload.json")]
    )
    assert m["driver"]["torch"] and m["driver"]["transformers"] and m["driver"]["device"] == "cpu"
    assert m["packages"]["nvtx"] == m["driver"]["nvtx"]
    assert m["model_spec"]["name"] == "deepseek-ocr2-tiny" and m["model_spec"]["weights"] == "random (seeded)"
    assert [p["file"] for p in m["pages"]] == ["page-01.png", "page-02.png"]
    assert all(len(p["sha256"]) == 64 for p in m["pages"])
    assert m["pages_completed"] == m["pages_expected"] == PAGES * REPEATS
    assert m["host"]["cpu_count"] >= 1 and m["started_at"] < m["finished_at"]
    assert m["workload"]["max_new_tokens"] == NEW_TOKENS
    lines = [json.loads(line) for line in (captured / "pages.jsonl").read_text().splitlines()]
    # the warm-up page is recorded first, marked, and not counted as a page
    warmup, records = lines[0], lines[1:]
    assert warmup["warmup"] is True and warmup["sequence"] == -1 and warmup["decode_steps"] == NEW_TOKENS - 1
    assert [(r["repeat"], r["page_index"]) for r in records] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(r["new_tokens"] == NEW_TOKENS and r["decode_steps"] == NEW_TOKENS - 1 for r in records)
    assert not any(r.get("warmup") for r in records)


def test_analyze_json_has_stages_from_nvtx(captured: Path) -> None:
    proc = run_perfctl("analyze", str(captured), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    analysis = json.loads(proc.stdout)
    ranges = {(r["domain"], r["name"]): r for r in analysis["ranges"]}
    n_pages = PAGES * REPEATS
    expected = {
        "load": 1,
        "warmup": 1,
        "page": n_pages,
        "vision": n_pages,
        "prefill": n_pages,
        "decode": n_pages * (NEW_TOKENS - 1),
    }
    for name, count in expected.items():
        assert ranges[("perfctl", name)]["instances"] == count, name
    for r in analysis["ranges"]:
        assert {
            "domain",
            "name",
            "instances",
            "kernel_count",
            "kernel_time_ns",
            "gpu_busy_ns",
            "wall_ns",
        } <= set(r)
        assert r["wall_ns"] > 0
    # a CPU capture has no kernels, and says so rather than inventing any
    assert analysis["totals"]["kernels"] == 0
    assert any("no CUDA kernels" in w for w in analysis["warnings"])
    # stages nest in pages: each page holds one vision, one prefill and NEW_TOKENS-1 decode ranges
    assert len(analysis["pages"]) == n_pages
    for page in analysis["pages"]:
        assert page["stages"]["vision"]["instances"] == 1
        assert page["stages"]["prefill"]["instances"] == 1
        assert page["stages"]["decode"]["instances"] == NEW_TOKENS - 1
        assert sum(page["stages"][s]["wall_ns"] for s in ("vision", "prefill", "decode")) <= page["wall_ns"]
    assert analysis["run"]["run_id"] == "e2e"
    # analyze wrote its files beside the export
    assert json.loads((captured / "analysis.json").read_text())["stages"] == analysis["stages"]


def test_report_html_shows_stages_and_run(captured: Path) -> None:
    assert run_perfctl("analyze", str(captured)).returncode == 0
    html = (captured / "report.html").read_text()
    for needle in (
        "vision",
        "prefill",
        "decode",
        "deepseek-ocr2-tiny",
        "e2e",
        "Top kernels per stage",
        "no CUDA kernels",
        "<svg",
    ):
        assert needle in html, needle


def test_analyze_accepts_the_sqlite_and_the_report(captured: Path, tmp_path: Path, nsys_bin: str) -> None:
    by_sqlite = run_perfctl(
        "analyze", str(captured / "run.sqlite"), "--format", "json", "--out-dir", str(tmp_path / "a")
    )
    assert by_sqlite.returncode == 0, by_sqlite.stderr
    rep = tmp_path / "copy.nsys-rep"
    rep.write_bytes((captured / "run.nsys-rep").read_bytes())
    # away from its run folder nothing says this was a CPU run, so its missing kernels must be allowed
    by_report = run_perfctl("analyze", str(rep), "--format", "json", "--nsys", nsys_bin, "--allow-no-kernels")
    assert by_report.returncode == 0, by_report.stderr
    assert (tmp_path / "copy.sqlite").is_file()
    a, b = json.loads(by_sqlite.stdout), json.loads(by_report.stdout)
    assert [(r["name"], r["instances"]) for r in a["ranges"]] == [
        (r["name"], r["instances"]) for r in b["ranges"]
    ]


def test_export_without_kernels_is_refused_unless_expected(captured: Path, tmp_path: Path) -> None:
    """A CPU capture holds no kernels: analyzed in its run folder (the manifest says cpu) or with
    --allow-no-kernels; on its own it is refused, since a GPU profile without kernels is broken."""
    alone = tmp_path / "alone.sqlite"
    alone.write_bytes((captured / "run.sqlite").read_bytes())
    refused = run_perfctl("analyze", str(alone))
    assert refused.returncode == 2, refused.stderr
    assert "no CUDA kernels" in refused.stderr and "--allow-no-kernels" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "analysis.json").exists()
    allowed = run_perfctl("analyze", str(alone), "--allow-no-kernels", "--format", "json")
    assert allowed.returncode == 0, allowed.stderr
    assert any("no CUDA kernels" in w for w in json.loads(allowed.stdout)["warnings"])


def test_existing_run_folder_is_refused_then_replaced_with_force(captured: Path, nsys_bin: str) -> None:
    before = (captured / "manifest.json").read_bytes()
    proc = run_perfctl("capture", "--out", str(captured), "--num-pages", "1", "--nsys", nsys_bin)
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "--force" in proc.stderr and "Traceback" not in proc.stderr
    assert (captured / "manifest.json").read_bytes() == before


def test_capture_options_reach_the_driver(tmp_path: Path, nsys_bin: str) -> None:
    out = tmp_path / "exact-folder"
    proc = run_perfctl(
        "capture",
        "--out",
        str(out),
        "--num-pages",
        "1",
        "--max-new-tokens",
        "3",
        "--warmup",
        "0",
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "--seed",
        "3",
        "--trace",
        "nvtx,osrt",
        "--nsys",
        nsys_bin,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["workload"]["seed"] == 3 and m["workload"]["warmup"] == 0
    assert "--trace=nvtx,osrt" in m["nsys"]["command"]
    assert m["driver"]["dtype"] == "float32" and m["driver"]["device"] == "cpu"
    analysis = json.loads(run_perfctl("analyze", str(out), "--format", "json", "--top", "1").stdout)
    names = {r["name"] for r in analysis["ranges"] if r["domain"] == "perfctl"}
    assert "warmup" not in names and {"page", "vision", "prefill", "decode"} <= names
    decode = next(s for s in analysis["stages"] if s["stage"] == "decode")
    assert decode["instances"] == 2


def test_tool_all_adds_a_clean_timing_pass_and_efficiency(tmp_path: Path, nsys_bin: str) -> None:
    """--tool all: the nsys pass, then the same workload without a profiler (stage edges
    synchronized); analyze puts the analytic FLOPs over those clean stage times. With a local tile."""
    run = tmp_path / "all"
    proc = run_perfctl(
        "capture", "--tool", "all", "--num-pages", "1", "--max-new-tokens", "3", "--tiles", "1",
        "--out", str(run), "--nsys", nsys_bin, "--nsys-telemetry",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "then a torch.profiler pass" in proc.stdout
    manifest = json.loads((run / "manifest.json").read_text())
    timing = manifest["timing"]
    assert timing["status"] == "ok" and timing["pages_completed"] == 1 and timing["sync_stage_edges"]
    workload = json.loads((run / "timing" / "workload.json").read_text())
    assert workload["sync_stage_edges"] is True
    clean = json.loads((run / "timing" / "pages.jsonl").read_text().splitlines()[-1])  # after the warm-up
    assert clean["decode_steps"] == 2 and all(v > 0 for v in clean["stage_wall_ns"].values())

    analyzed = run_perfctl("analyze", str(run), "--format", "json")
    assert analyzed.returncode == 0, analyzed.stderr
    eff = json.loads(analyzed.stdout)["efficiency"]
    assert eff["available"] is True
    info = json.loads((run / "timing" / "driver-info.json").read_text())
    # one local 768² tile: its 144 encoder queries join the global view's 144 + 1 separator
    assert info["local_tiles_per_page"] == 1 and info["image_tokens_per_page"] == 145 + 144
    assert eff["inputs"]["tokens"]["prompt_total"] == info["prompt_tokens_per_page"]
    assert eff["inputs"]["tokens"]["image"] == 145 + 144
    for stage in ("vision", "prefill", "decode"):
        s = eff["stages"][stage]
        assert s["flops_per_page"] > 0 and s["clean_seconds_per_page"] > 0 and s["nsys_over_clean"] > 0
        assert s["mfu"] is None  # a CPU run: no peak to divide by, and it says why
    assert "CPU" in eff["inputs"]["peak_source"]
    timing_stats = json.loads(analyzed.stdout)["timing"]["statistics"]
    assert timing_stats["stages"]["decode"]["count"] == 1
    assert timing_stats["decode_step_latency"]["count"] == 2  # 3 new tokens: 2 decode steps
    assert 0 < timing_stats["time_to_first_token"]["mean"] < clean["wall_ns"]
    telemetry = json.loads(analyzed.stdout)["timing"]["telemetry"]
    assert telemetry == {"available": False, "reason": "absent: the workload runs on the CPU"}
    # --nsys-telemetry: the nsys pass samples too (nothing to sample on a CPU run, and it says so)
    assert manifest["nsys"]["telemetry"] is True
    assert json.loads((run / "workload.json").read_text())["telemetry"] == str(run / "telemetry.jsonl")
    assert json.loads(analyzed.stdout)["nsys_pass"]["telemetry"] == telemetry
    # every clean page records the host's side: process CPU time, steal (a CPU run has no CUDA probe)
    assert clean["host_cpu"]["process_cpu_ns"] > 0 and "stage_gpu_ns" not in clean
    # the torch.profiler pass: operators per stage, a Chrome trace
    assert manifest["torch"]["status"] == "ok" and (run / "torch" / "trace.json.gz").is_file()
    operators = json.loads(analyzed.stdout)["operators"]
    assert operators["source"] == "torch.profiler pass (torch/operators.json)"
    for stage in ("vision", "prefill", "decode"):
        top = operators["stages"][stage]["top"]
        assert top and top[0]["calls"] > 0 and top[0]["self_cpu_us"] > 0, stage
    names = {op["name"] for op in operators["stages"]["decode"]["top"]}
    assert any(n.startswith("aten::") for n in names)


def test_profile_pages_limits_the_profiled_passes_not_the_clean_one(tmp_path: Path, nsys_bin: str) -> None:
    """--profile-pages 1 with 2 pages x 2 repeats: nsys and torch.profiler run page 1 once, the clean
    pass all 4; the profiler overhead compares the nsys page with the clean runs of the same file."""
    run = tmp_path / "subset"
    proc = run_perfctl(
        "capture", "--tool", "all", "--num-pages", "2", "--repeats", "2", "--profile-pages", "1",
        "--max-new-tokens", "2", "--out", str(run), "--nsys", nsys_bin,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["workload"]["profile_pages"] == 1 and manifest["workload"]["repeats"] == 2
    assert (manifest["pages_completed"], manifest["pages_expected"]) == (1, 1)
    assert (manifest["timing"]["pages_completed"], manifest["timing"]["pages_expected"]) == (4, 4)
    assert (manifest["torch"]["pages_completed"], manifest["torch"]["pages_expected"]) == (1, 1)
    nsys_workload = json.loads((run / "workload.json").read_text())
    assert len(nsys_workload["pages"]) == 1 and nsys_workload["repeats"] == 1
    assert len(json.loads((run / "timing" / "workload.json").read_text())["pages"]) == 2

    analyzed = run_perfctl("analyze", str(run), "--format", "json")
    assert analyzed.returncode == 0, analyzed.stderr
    analysis = json.loads(analyzed.stdout)
    assert not [w for w in analysis["warnings"] if "page" in w], analysis["warnings"]
    assert len(analysis["pages"]) == 1 and analysis["timing"]["statistics"]["page"]["count"] == 4
    eff = analysis["efficiency"]
    assert eff["inputs"]["clean_pages"] == 4 and eff["inputs"]["overhead_clean_pages"] == 2
    assert all(eff["stages"][s]["nsys_over_clean"] > 0 for s in ("vision", "prefill", "decode"))
