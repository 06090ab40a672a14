"""A stability verdict that blames the right cause, on real H200 run folders through the command line.

`h200-llama1b-warmup0`: a Llama-3.2-1B-sized model over two prompts of different length, --warmup 0:
the first page of each prompt length is its first use in the process (3.6 s and 2.0 s against 0.39 s
later), and under nsys those pages load kernels (cuLibraryLoadData) and wait in cuKernelSetAttribute.
`h200-llama1b-warmup1`: the same with the default warm-up, which runs both prompt lengths first.
The module-load counts are checked against a plain SQL join over the same export, done here."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from conftest import copy_run_fixture, run_perfctl
from nsys_reference import nvtxkernsum_totals, perfctl_totals

WARMUP0, WARMUP1 = "h200-llama1b-warmup0", "h200-llama1b-warmup1"


def _tree_sha256(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _analyze(run: Path) -> dict:  # type: ignore[type-arg]
    before = _tree_sha256(run)
    proc = run_perfctl("analyze", str(run), "--format", "json", "--out-dir", str(run.parent / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _tree_sha256(run) == before  # the run folder is input: never changed
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _calls_by_sql(export: Path, range_name: str) -> dict[tuple[int | None, str], int]:
    """{(range payload, API name): calls} of the module-load APIs starting inside perfctl's ranges of
    that name, on the range's thread: an independent count, straight from the export."""
    conn = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            """SELECT e.int64Value, s.value, count(*)
               FROM NVTX_EVENTS e JOIN StringIds t ON t.id = e.textId
               JOIN CUPTI_ACTIVITY_KIND_RUNTIME r ON r.globalTid = e.globalTid
                    AND r.start >= e.start AND r.start <= e.end
               JOIN StringIds s ON s.id = r.nameId
               WHERE t.value = ? AND (s.value GLOB 'cuLibraryLoad*' OR s.value GLOB 'cuModuleLoad*')
               GROUP BY 1, 2""",
            (range_name,),
        ).fetchall()
    finally:
        conn.close()
    return {(payload, api): n for payload, api, n in rows}


@pytest.fixture(scope="module")
def warmup0(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:  # type: ignore[type-arg]
    run = copy_run_fixture(WARMUP0, tmp_path_factory.mktemp("w0") / "run")
    return run, _analyze(run)


@pytest.fixture(scope="module")
def warmup1(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:  # type: ignore[type-arg]
    run = copy_run_fixture(WARMUP1, tmp_path_factory.mktemp("w1") / "run")
    return run, _analyze(run)


def test_warmup0_verdict_names_first_use_and_lazy_loading(warmup0: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    run, analysis = warmup0
    by_sql = _calls_by_sql(run / "run.sqlite", "page")
    assert by_sql[(0, "cuLibraryLoadData")] == 59 and by_sql[(1, "cuLibraryLoadData")] == 20
    stats = analysis["timing"]["statistics"]
    for stage in ("prefill", "decode"):
        verdict = stats["stages"][stage]["verdict"]
        assert verdict["stable"] is False and verdict["cause"] == "first_use", verdict
        assert (
            verdict["why"].split(": ", 1)[1].startswith("first use of an input shape / lazy kernel loading")
        )
        assert verdict["first_use"]["pages"] == verdict["first_use"]["shape_first_seen"] == [0, 1]
        # the pages of each shape's second run are steady: the rest is within the threshold
        assert verdict["first_use"]["cv_without_those_pages"] < stats["threshold_cv"]
        # the old verdict blamed a trend (clocks, throttling); the host is not blamed either
        assert "steadily" not in verdict["why"] and "host" not in verdict["why"]
    page = stats["page"]["verdict"]
    assert page["cause"] == "first_use"
    assert "59 cuLibraryLoadData + 2 cuModuleLoadData" in page["why"]
    assert "20 cuLibraryLoadData" in page["why"]
    assert page["first_use"]["module_loads"] == {
        "cuLibraryLoadData": by_sql[(0, "cuLibraryLoadData")] + by_sql[(1, "cuLibraryLoadData")],
        "cuModuleLoadData": by_sql[(0, "cuModuleLoadData")],
    }
    # per stage: the prefill of page 0 holds the loads that page's prefill range holds in the export
    prefill = {
        p["sequence"]: p["stages"]["prefill"]["module_loads"] for p in analysis["first_use"]["nsys_pages"]
    }
    assert prefill[0]["cuLibraryLoadData"] == 31 and prefill[1]["cuLibraryLoadData"] == 5
    assert sum(prefill[0].values()) + sum(prefill[1].values()) == sum(
        _calls_by_sql(run / "run.sqlite", "prefill").values()
    )
    assert analysis["first_use"]["nsys_pages_with_first_use"] == [0, 1]


def test_warmup0_findings_advise_the_warmup_not_the_host(warmup0: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    _, analysis = warmup0
    unstable = [f for f in analysis["findings"] if f["id"] == "unstable"]
    assert {f["stage"] for f in unstable} == {"prefill", "decode"}
    for finding in unstable:
        assert finding["next"].startswith("warm up every input shape before measuring")
        assert "quiet host" not in finding["next"] and "lock the GPU clocks" not in finding["next"]
        assert finding["evidence"]["first_use"]["pages"] == [0, 1]
    (first_use,) = [f for f in analysis["findings"] if f["id"] == "first_use"]
    assert first_use["evidence"]["module_loads"] == {"cuLibraryLoadData": 79, "cuModuleLoadData": 2}
    assert "79 cuLibraryLoadData" in first_use["text"]


def test_default_warmup_takes_first_use_out_of_the_measured_pages(warmup1: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    run, analysis = warmup1
    by_sql = _calls_by_sql(run / "run.sqlite", "page")
    assert by_sql == {}  # no measured page loads a module
    stats = analysis["timing"]["statistics"]
    for stage in ("prefill", "decode"):
        verdict = stats["stages"][stage]["verdict"]
        assert verdict["stable"] is True and "cause" not in verdict
        assert "first use" not in verdict["why"]
    assert stats["page"]["verdict"]["stable"] is True
    assert not [f for f in analysis["findings"] if f["id"] == "first_use"]
    first_use = analysis["first_use"]
    assert first_use["nsys_pages_with_first_use"] == []
    # the warm-up took the loads upon itself: as many as the export's warm-up ranges hold
    warmup_loads = _calls_by_sql(run / "run.sqlite", "warmup")
    assert first_use["warmup"]["module_loads"]["cuLibraryLoadData"] == sum(
        n for (_, api), n in warmup_loads.items() if api == "cuLibraryLoadData"
    )
    assert first_use["warmup"]["lazy_loading"] is True
    # steady pages still set kernel attributes, but about a microsecond each: not lazy loading
    for page in first_use["nsys_pages"]:
        calls = sum(page["kernel_attribute_calls"].values())
        assert calls > 0 and page["kernel_attribute_ns"] / calls < 10_000 and not page["lazy_loading"]
    info = json.loads((run / "timing" / "driver-info.json").read_text())
    assert [s["warmup_runs"] for s in info["input_shapes"]] == [1, 1]


@pytest.mark.parametrize("fixture", [WARMUP0, WARMUP1])
def test_kernel_attribution_equals_nsys_stats_recorded_on_the_host(
    fixture: str,
    warmup0: tuple[Path, dict],
    warmup1: tuple[Path, dict],  # type: ignore[type-arg]
) -> None:
    """These exports are checked like every GPU fixture: nsys 2024.2's nvtx_kern_sum, run on the H200
    right after the capture, is the reference."""
    run, analysis = warmup0 if fixture == WARMUP0 else warmup1
    recorded = (run / "run.nvtx_kern_sum.csv").read_text()
    assert perfctl_totals(analysis) == nvtxkernsum_totals(recorded)


def _without_shape_flags(run: Path) -> None:
    """The run's page records as an older perfctl wrote them: no input shape, no first-of-shape flag."""
    for name in ("pages.jsonl", "timing/pages.jsonl"):
        records = [json.loads(line) for line in (run / name).read_text().splitlines()]
        for r in records:
            r.pop("shape_first_seen", None)
            r.pop("input_shape", None)
        (run / name).write_text("".join(json.dumps(r) + "\n" for r in records))


def test_records_without_shape_flags_still_get_the_export_evidence(tmp_path: Path) -> None:
    """Page records that do not say which page was the first of its shape (an older perfctl): the
    module loads the nsys pass made inside the same page and repeat name the cause on their own."""
    run = copy_run_fixture(WARMUP0, tmp_path / "run")
    _without_shape_flags(run)
    analysis = _analyze(run)
    verdict = analysis["timing"]["statistics"]["page"]["verdict"]
    assert verdict["cause"] == "first_use" and verdict["first_use"]["pages"] == [0, 1]
    assert verdict["first_use"]["shape_first_seen"] == []
    assert "59 cuLibraryLoadData" in verdict["why"] and "first run of its input shape" not in verdict["why"]
    assert "no warm-up ran these shapes" not in verdict["why"]


def test_without_the_nsys_pass_records_the_clean_pass_is_judged_on_its_own(tmp_path: Path) -> None:
    """No flags and no nsys-pass page records to join the export's pages to the clean pass's: the
    export still shows the nsys pass's first-use pages, and the clean verdict falls back to what its
    spread shows by itself (no first-use cause is invented)."""
    run = copy_run_fixture(WARMUP0, tmp_path / "run")
    _without_shape_flags(run)
    (run / "pages.jsonl").unlink()
    analysis = _analyze(run)
    assert analysis["first_use"]["nsys_pages_with_first_use"] == [0, 1]
    assert analysis["first_use"]["nsys_pages_first_of_shape"] == []
    (finding,) = [f for f in analysis["findings"] if f["id"] == "first_use"]
    assert finding["evidence"]["module_loads"]["cuLibraryLoadData"] == 79
    verdict = analysis["timing"]["statistics"]["stages"]["decode"]["verdict"]
    assert verdict["stable"] is False and "cause" not in verdict


def _host_slow_around_the_first_pages(run: Path) -> None:
    """The clean pass's speed probe (a fixed Python loop timed before each page) made 3x slower before
    pages 0 and 1: host evidence that, alone, explains their slowness."""
    path = run / "timing" / "pages.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        if r["sequence"] in (0, 1):
            r["host_cpu"]["speed_probe_ns"] *= 3
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_first_use_evidence_comes_before_the_host(tmp_path: Path) -> None:
    """Host evidence and first-use evidence on the same pages: the verdict names first use, and the
    host is not blamed for them."""
    run = copy_run_fixture(WARMUP0, tmp_path / "run")
    _host_slow_around_the_first_pages(run)
    verdict = _analyze(run)["timing"]["statistics"]["stages"]["decode"]["verdict"]
    assert verdict["cause"] == "first_use" and "host" not in verdict["why"]


def test_the_host_stays_the_explanation_without_first_use_evidence(tmp_path: Path) -> None:
    """The same host evidence on a run folder that holds no first-use evidence (no flags, no nsys-pass
    records to join the export to): the host is named, as before."""
    run = copy_run_fixture(WARMUP0, tmp_path / "run")
    _host_slow_around_the_first_pages(run)
    _without_shape_flags(run)
    (run / "pages.jsonl").unlink()
    verdict = _analyze(run)["timing"]["statistics"]["stages"]["decode"]["verdict"]
    assert "cause" not in verdict and "the host CPU's speed varied" in verdict["why"]
