"""Kernel -> NVTX range attribution: exact against nsys's own answers on real GPU exports, and the
semantics of NVIDIA's projection on small hand-made tables."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import decompress_fixture
from nsys_reference import nvtxkernsum_totals, perfctl_totals
from perfctl.analysis.analyze import analyze_export
from perfctl.analysis.attribution import Slices, attribute_activities_to_ranges
from perfctl.analysis.intervals import union_length
from perfctl.nsys_export.events import Activities, launch_order

FIXTURES = Path(__file__).parent / "fixtures"


def _by_name(analysis: dict, domain: str, name: str) -> dict:  # type: ignore[type-arg]
    return next(r for r in analysis["ranges"] if r["domain"] == domain and r["name"] == name)


def test_matmul_fixture_answers_exactly(matmul_export: Path) -> None:
    analysis = analyze_export(matmul_export)
    prefill = _by_name(analysis, "perfctl", "prefill")
    decode = _by_name(analysis, "perfctl", "decode")
    assert (prefill["kernel_count"], prefill["kernel_time_ns"]) == (10, 1_700_987)
    assert (decode["kernel_count"], decode["kernel_time_ns"]) == (15, 72_285)
    assert decode["instances"] == 5 and prefill["instances"] == 1
    # decode's kernels never overlap: busy time equals their summed time
    assert decode["gpu_busy_ns"] == 72_285
    assert analysis["export"]["schema_version"] == "3.0.0"
    assert analysis["export"]["gpus"][0]["name"] == "NVIDIA H200"


@pytest.mark.parametrize(
    "fixture, reference",
    [
        ("matmul_export", "h200-nvtx-matmul.nvtxkernsum.csv"),
        ("tiny_gpu_export", "h200-tiny-ocr2.nvtxkernsum.csv"),
    ],
)
def test_equals_recorded_nsys_stats(fixture: str, reference: str, request: pytest.FixtureRequest) -> None:
    """Every range name's kernel count and kernel time equal what nsys stats printed for the export."""
    export = request.getfixturevalue(fixture)
    expected = nvtxkernsum_totals((FIXTURES / reference).read_text())
    assert perfctl_totals(analyze_export(export)) == expected


def test_tiny_gpu_capture_stages(tiny_gpu_export: Path) -> None:
    analysis = analyze_export(tiny_gpu_export)
    stages = {s["stage"]: s for s in analysis["stages"]}
    assert stages["vision"]["instances"] == 2
    assert stages["prefill"]["instances"] == 2
    assert stages["decode"]["instances"] == 2 * 7  # 8 new tokens: 1 from prefill, 7 decode steps
    for s in stages.values():
        assert s["kernel_count"] > 0
        assert 0 < s["gpu_busy_ns"] <= s["kernel_time_ns"]
        assert s["top_kernels"], s["stage"]
    pages = analysis["pages"]
    assert [p["sequence"] for p in pages] == [0, 1]
    for page in pages:
        assert page["stages"]["decode"]["instances"] == 7
        inner = sum(page["stages"][s]["wall_ns"] for s in ("vision", "prefill", "decode"))
        assert 0 < inner <= page["wall_ns"]
    # the per-page split adds up to the stage totals
    assert sum(p["stages"]["decode"]["kernel_time_ns"] for p in pages) == stages["decode"]["kernel_time_ns"]


def _ranges(rows: list[tuple[int, int, int]], other_thread: set[int] = frozenset()) -> pd.DataFrame:  # type: ignore[assignment]
    return pd.DataFrame(
        {
            "start": [r[0] for r in rows],
            "end": [r[1] for r in rows],
            "thread": [r[2] for r in rows],
            "ended_on_other_thread": [i in other_thread for i in range(len(rows))],
        }
    )


def _launches(rows: list[tuple[int, int, int]]) -> Activities:
    """Kernels launched by an API call at (start, end) on a thread; thread -1: no launch record.
    Kernel i keeps activity id i; rows are put in launch order as the loader does."""
    n = len(rows)
    col = np.array(rows, dtype=np.int64).reshape(n, 3)
    order = launch_order(col[:, 2], col[:, 0])
    col = col[order]
    zeros = np.zeros(n, dtype=np.int64)
    return Activities(
        activity=order,
        kind=zeros.astype(np.int8),
        start=col[:, 1] + 10,
        end=col[:, 1] + 20,
        short_id=zeros.astype(np.int32),
        name_id=zeros.astype(np.int32),
        bytes=zeros,
        launch_thread=col[:, 2],
        launch_start=col[:, 0],
        launch_end=col[:, 1],
        n_launched=int((col[:, 2] >= 0).sum()),
    )


def _as_pairs(runs: Slices, acts: Activities) -> set[tuple[int, int]]:
    """(range row, activity id) for every activity row of every run."""
    return {
        (int(r), int(acts.activity[i]))
        for r, lo, hi in zip(runs.range_row, runs.lo, runs.hi, strict=True)
        for i in range(lo, hi)
    }


def _pairs(ranges: pd.DataFrame, acts: Activities) -> set[tuple[int, int]]:
    return _as_pairs(attribute_activities_to_ranges(ranges, acts), acts)


def test_projection_semantics() -> None:
    ranges = _ranges(
        [
            (100, 200, 1),  # 0: outer
            (110, 150, 1),  # 1: nested inside 0
            (100, 200, 2),  # 2: same time, other thread
            (300, 400, 1),  # 3: a start/end range ended on another thread: nsys ignores it
        ],
        other_thread={3},
    )
    acts = _launches(
        [
            (110, 150, 1),  # 0: exactly on range 1's edges (inclusive) -> ranges 0 and 1
            (190, 210, 1),  # 1: launch call ends after range 0 ends -> nothing
            (120, 130, 2),  # 2: thread 2 -> range 2 only
            (320, 330, 1),  # 3: inside range 3, which does not take part -> nothing
            (-1, -1, -1),  # 4: no launch record -> nothing
            (99, 101, 1),  # 5: starts before range 0 -> nothing
        ]
    )
    assert _pairs(ranges, acts) == {(0, 0), (1, 0), (2, 2)}


def test_projection_many_threads_and_empty_inputs() -> None:
    rng = np.random.default_rng(7)
    n_threads, n = 5, 2000
    starts = rng.integers(0, 10_000, n)
    acts = _launches([(s, s + 3, t) for s, t in zip(starts, rng.integers(0, n_threads, n), strict=True)])
    ranges = _ranges([(1000 * i, 1000 * i + 999, t) for i in range(10) for t in range(n_threads)])
    got = _pairs(ranges, acts)
    brute = {
        (ri, int(acts.activity[ai]))
        for ri, r in ranges.iterrows()
        for ai in range(len(acts))
        if acts.launch_thread[ai] == r.thread
        and r.start <= acts.launch_start[ai]
        and acts.launch_end[ai] <= r.end
    }
    assert got == brute
    assert _pairs(ranges.iloc[0:0], acts) == set()
    assert _pairs(ranges, _launches([])) == set()


def test_projection_when_a_threads_calls_nest() -> None:
    """Recorded API calls of one thread that nest (one call's span inside another's) break the
    rising-ends order; the projection must stay exact: launch call inside the range, nothing else."""
    ranges = _ranges([(90, 300, 1), (110, 150, 1), (115, 135, 1), (125, 300, 1)])
    acts = _launches(
        [
            (100, 200, 1),  # 0: an outer call
            (120, 130, 1),  # 1: nested in call 0
            (140, 150, 1),  # 2: nested in call 0
            (210, 220, 1),  # 3: after call 0
        ]
    )
    brute = {
        (ri, ai)
        for ri, (s, e, t) in enumerate([(90, 300, 1), (110, 150, 1), (115, 135, 1), (125, 300, 1)])
        for ai, (ls, le, lt) in enumerate([(100, 200, 1), (120, 130, 1), (140, 150, 1), (210, 220, 1)])
        if lt == t and s <= ls and le <= e
    }
    assert (
        _pairs(ranges, acts)
        == brute
        == {(0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (2, 1), (3, 2), (3, 3)}
    )
    # range 3 starts inside call 0 and holds calls 2 and 3 but not call 0's start: two rows, one run
    runs = attribute_activities_to_ranges(ranges, acts)
    assert len(runs) >= len(ranges)


def test_union_length_counts_overlap_once() -> None:
    starts = np.array([0, 5, 20, 21, 40], dtype=np.int64)
    ends = np.array([10, 8, 30, 25, 41], dtype=np.int64)
    assert union_length(starts, ends) == 10 + 10 + 1
    assert union_length(np.array([], dtype=np.int64), np.array([], dtype=np.int64)) == 0


@pytest.mark.parametrize("mode", ["graph", "node"])
def test_graph_replay_exports_equal_nsys_stats(mode: str, export_dir: Path) -> None:
    export = decompress_fixture(f"h200-graphs-{mode}.sqlite.xz", export_dir)
    expected = nvtxkernsum_totals((FIXTURES / f"h200-graphs-{mode}.nvtxkernsum.csv").read_text())
    analysis = analyze_export(export)
    assert perfctl_totals(analysis) == expected
    replay = _by_name(analysis, "perfctl", "graph_replay")
    assert analysis["totals"]["graph_launches"] == 2
    if mode == "node":
        # two replays of a 12-kernel graph: the kernels belong to the range that launched the graph
        assert (replay["launches"], replay["kernel_count"]) == (2, 24)
        assert analysis["totals"]["graph_launches_without_activity"] == 0
        assert not any("CUDA graph" in w for w in analysis["warnings"])
    else:
        # whole-graph tracing in nsys 2022.4 keeps nothing of the replays: said, not hidden
        assert replay["kernel_count"] == 0
        assert analysis["totals"]["graph_launches_without_activity"] == 2
        assert any("--cuda-graph-trace=node" in w for w in analysis["warnings"])


def test_other_thread_launches_are_found_apart_from_the_projection() -> None:
    from perfctl.analysis.attribution import attribute_other_threads

    pid = lambda p, t: (p << 24) | t  # noqa: E731 - serialized globalTid: process bits above the thread
    ranges = _ranges([(100, 200, pid(7, 1))])
    acts = _launches(
        [
            (120, 130, pid(7, 1)),  # 0: same thread: nsys's projection has it, not "other threads"
            (140, 150, pid(7, 2)),  # 1: a worker thread of the same process, inside the window
            (140, 150, pid(8, 2)),  # 2: another process
            (250, 260, pid(7, 2)),  # 3: the worker, after the range closed
        ]
    )
    assert _pairs(ranges, acts) == {(0, 0)}
    assert _as_pairs(attribute_other_threads(ranges, acts), acts) == {(0, 1)}


# scripts/fixture_programs/threads_and_graphs.py captured on an H200 by two nsys generations, with the
# export schema each writes
THREADS_AND_GRAPHS = {
    "h200-nsys2023-threads-graphs": "3.7.2",
    "h200-nsys2024-threads-graphs": "3.11.1",
}


def _csv_rows(fixture: str) -> list[dict[str, str]]:
    return list(csv.DictReader((FIXTURES / f"{fixture}.nvtx_kern_sum.csv").read_text().splitlines()))


@pytest.mark.parametrize("fixture", THREADS_AND_GRAPHS)
def test_worker_thread_launches_in_a_real_export(fixture: str, export_dir: Path) -> None:
    """nsys 2023.4 and 2024.2 record a worker thread's launches (2022.4 aborts its trace there). nsys's
    projection gives them to the worker's own range only; perfctl reports them for the main thread's
    waiting range apart, as other_threads, and keeps the nsys-compatible figures equal to nsys's."""
    export = decompress_fixture(f"{fixture}.sqlite.xz", export_dir)
    rows = _csv_rows(fixture)
    expected = nvtxkernsum_totals((FIXTURES / f"{fixture}.nvtx_kern_sum.csv").read_text())
    analysis = analyze_export(export)
    assert analysis["export"]["schema_version"] == THREADS_AND_GRAPHS[fixture]
    assert perfctl_totals(analysis) == expected

    # in nsys's own answer, worker_body's kernels were launched by a thread other than main_thread's
    tids = {r["NVTX Range"]: r["TID"] for r in rows}
    assert tids["perfctl:worker_body"] != tids["perfctl:main_thread"]
    assert "perfctl:worker_window" not in expected

    body = _by_name(analysis, "perfctl", "worker_body")
    window = _by_name(analysis, "perfctl", "worker_window")
    body_totals = expected["perfctl:worker_body"]
    assert (body["kernel_count"], body["kernel_time_ns"]) == body_totals
    assert body["kernel_count"] == body["launches"] == 12  # 3 steps x 4 kernels
    assert (window["kernel_count"], window["kernel_time_ns"], window["launches"]) == (0, 0, 0)
    # the worker's kernels, found apart from the projection: exactly worker_body's
    assert (window["other_threads"]["kernel_count"], window["other_threads"]["kernel_time_ns"]) == body_totals
    for name in ("worker_body", "main_thread", "graph_replay"):
        assert _by_name(analysis, "perfctl", name)["other_threads"]["kernel_count"] == 0, name
    assert any("other threads" in w for w in analysis["warnings"])


@pytest.mark.parametrize("fixture", THREADS_AND_GRAPHS)
def test_graph_replays_in_node_mode_in_a_real_export(fixture: str, export_dir: Path) -> None:
    """The same capture replays a 12-kernel CUDA graph twice under --cuda-graph-trace=node."""
    export = decompress_fixture(f"{fixture}.sqlite.xz", export_dir)
    expected = nvtxkernsum_totals((FIXTURES / f"{fixture}.nvtx_kern_sum.csv").read_text())
    analysis = analyze_export(export)
    replay = _by_name(analysis, "perfctl", "graph_replay")
    assert (replay["kernel_count"], replay["kernel_time_ns"]) == expected["perfctl:graph_replay"]
    assert (replay["launches"], replay["kernel_count"]) == (2, 24)
    assert analysis["totals"]["graph_launches"] == 2
    assert analysis["totals"]["graph_launches_without_activity"] == 0
    assert not any("CUDA graph" in w for w in analysis["warnings"])
    # no range here nests another, so nsys lists every kernel in exactly one row (unattributed ones
    # under an empty range name): perfctl read the whole kernel table of the export
    rows = _csv_rows(fixture)
    assert analysis["totals"]["kernels"] == sum(int(r["Kern Inst"]) for r in rows)
    assert analysis["totals"]["kernel_time_ns"] == sum(int(r["Total Time (ns)"]) for r in rows)


def test_overlapping_kernels_busy_time_is_their_union(export_dir: Path) -> None:
    """Matmuls on two CUDA streams overlap on the GPU: busy time is the union of their intervals,
    checked against a plain loop over the range's kernels read straight from the export."""
    import sqlite3

    from conftest import decompress_fixture

    export = decompress_fixture("h200-two-streams.sqlite.xz", export_dir)
    analysis = analyze_export(export)
    expected = nvtxkernsum_totals((FIXTURES / "h200-two-streams.nvtxkernsum.csv").read_text())
    assert perfctl_totals(analysis) == expected
    with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
        start, end, tid = conn.execute(
            "SELECT e.start, e.end, e.globalTid FROM NVTX_EVENTS AS e LEFT JOIN StringIds AS s "
            "ON e.textId = s.id WHERE coalesce(s.value, e.text) = 'two_streams'"
        ).fetchone()
        kernels = conn.execute(
            "SELECT k.start, k.end FROM CUPTI_ACTIVITY_KIND_KERNEL AS k "
            "JOIN CUPTI_ACTIVITY_KIND_RUNTIME AS r ON k.correlationId = r.correlationId "
            "WHERE r.globalTid = ? AND r.start >= ? AND r.end <= ?",
            (tid, start, end),
        ).fetchall()
        every = conn.execute("SELECT start, end FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchall()

    def union(intervals: list[tuple[int, int]]) -> int:
        total, reach = 0, None
        for s, e in sorted(intervals):
            if reach is None or s > reach:
                total, reach = total + e - s, e
            elif e > reach:
                total, reach = total + e - reach, e
        return total

    two = _by_name(analysis, "perfctl", "two_streams")
    assert two["gpu_busy_ns"] == union(kernels) < two["kernel_time_ns"]
    assert two["gpu_span_ns"] == max(e for _, e in kernels) - min(s for s, _ in kernels)
    assert two["per_instance"]["gpu_busy_ns"]["max"] == two["gpu_busy_ns"]
    assert analysis["totals"]["gpu_busy_ns"] == union(every) < analysis["totals"]["kernel_time_ns"]
