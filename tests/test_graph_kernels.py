"""Kernels replayed from CUDA graphs (graphNodeId set under --cuda-graph-trace=node) per NVTX range and
stage, and CUDA graph launches per range (perfctl.analysis.graph_kernels), on real exports of nsys
2022.4 (schema 3.0.0), 2023.4 (3.7.2) and 2024.2 (3.11.1): perfctl's figures equal a plain-SQL count
written here, eager exports have 0 graph kernels, an export without the graphNodeId column says null
(and warns), and the reports say per step how many kernels ran inside graphs and how many one by one."""

from __future__ import annotations

import shutil
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from conftest import decompress_fixture
from perfctl.analysis.analyze import analyze_export, analyze_tables, load_export
from perfctl.errors import BadInput
from perfctl.nsys_export.windows import activity_windows, load_gpu_activities
from perfctl.report.html import render_html
from perfctl.report.markdown import render_markdown
from perfctl.report.text import render_text

GRAPH_EXPORTS = (
    "h200-nsys2024-compiled-decode",  # 2024.2: compiled decode, batch 1
    "h200-nsys2024-compiled-b16",  # 2024.2: compiled decode, batch 16
    "h200-graphs-node",  # 2022.4: a 12-kernel graph replayed twice, traced node by node
    "h200-graphs-graph",  # 2022.4: the same, traced as a whole (the replays' kernels not recorded)
    "h200-nsys2023-threads-graphs",  # 2023.4: the graph program with a worker thread
    "h200-nsys2024-threads-graphs",  # 2024.2: the same
)
EAGER_EXPORTS = ("h200-nsys2024-full-ocr2", "h200-tiny-ocr2", "h200-nvtx-matmul")

# NVTX ranges as nsys's projection sees them: push/pop and start/end ranges that ended on the thread
# they began on, with their domain's name (the domain-create event of that id in that process) and
# their text (a registered string first). Kernels: each joined to its launching runtime call by
# correlation id within the process. A kernel belongs to a range when its launch call was made on the
# range's thread, inside the range.
_SQL_RANGES = """
    SELECT e.rowid AS range_id, e.start, e."end", e.globalTid AS tid, e.eventType AS style,
           coalesce((SELECT coalesce(ds.value, d.text) FROM NVTX_EVENTS AS d
                     LEFT JOIN StringIds AS ds ON d.textId = ds.id
                     WHERE d.eventType = 75 AND d.domainId = e.domainId
                       AND (d.globalTid >> 24) = (e.globalTid >> 24)
                     ORDER BY d.rowid LIMIT 1), '') AS domain,
           coalesce(s.value, e.text) AS name
    FROM NVTX_EVENTS AS e LEFT JOIN StringIds AS s ON e.textId = s.id
    WHERE e.eventType IN (59, 60) AND e."end" IS NOT NULL
      AND (e.endGlobalTid IS NULL OR e.endGlobalTid = e.globalTid)
"""
_SQL_CALLS = """
    SELECT r.correlationId AS corr, r.globalTid AS tid, r.start, r."end", n.value AS api
    FROM CUPTI_ACTIVITY_KIND_RUNTIME AS r JOIN StringIds AS n ON r.nameId = n.id
"""
_SQL_KERNELS = f"""
    SELECT k.rowid AS kernel_id, k.graphNodeId IS NOT NULL AS in_graph, c.tid, c.start, c."end"
    FROM CUPTI_ACTIVITY_KIND_KERNEL AS k
    JOIN ({_SQL_CALLS}) AS c ON c.corr = k.correlationId AND (c.tid >> 24) = (k.globalPid >> 24)
"""


def sql_graph_figures(export: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (domain, range name), by plain SQL: instances; kernels and graph kernels counted as nsys counts
    them (distinct per thread and range style, added up); graph launch calls inside the instances;
    and the graph kernels of each instance (distinct per instance)."""
    conn = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    try:
        conn.execute(f"CREATE TEMP TABLE ranges AS {_SQL_RANGES}")
        conn.execute(f"CREATE TEMP TABLE kernels AS {_SQL_KERNELS}")
        conn.execute("CREATE INDEX temp.kernels_by_launch ON kernels (tid, start)")
        by_name: dict[tuple[str, str], dict[str, Any]] = defaultdict(
            lambda: {
                "instances": 0,
                "kernels": 0,
                "graph_kernels": 0,
                "graph_launches": 0,
                "per_instance": [],
            }
        )
        for domain, name, kernels, graph_kernels in conn.execute(
            """SELECT domain, name, sum(n), sum(g) FROM (
                   SELECT r.domain, r.name, count(DISTINCT k.kernel_id) AS n,
                          count(DISTINCT CASE WHEN k.in_graph THEN k.kernel_id END) AS g
                   FROM ranges AS r JOIN kernels AS k
                     ON k.tid = r.tid AND k.start >= r.start AND k."end" <= r."end"
                   GROUP BY r.domain, r.name, r.tid, r.style)
               GROUP BY domain, name"""
        ):
            by_name[(domain, name)].update(kernels=kernels, graph_kernels=graph_kernels)
        for domain, name, graph_kernels, launches in conn.execute(
            f"""SELECT r.domain, r.name,
                   (SELECT count(DISTINCT k.kernel_id) FROM kernels AS k
                    WHERE k.tid = r.tid AND k.start >= r.start AND k."end" <= r."end" AND k.in_graph),
                   (SELECT count(*) FROM ({_SQL_CALLS}) AS c
                    WHERE c.tid = r.tid AND c.start >= r.start AND c."end" <= r."end"
                      AND (c.api GLOB 'cuda*GraphLaunch*' OR c.api GLOB 'cuGraphLaunch*'))
               FROM ranges AS r ORDER BY r.range_id"""
        ):
            item = by_name[(domain, name)]
            item["instances"] += 1
            item["graph_launches"] += launches
            item["per_instance"].append(graph_kernels)
        (graph_launches,) = conn.execute(
            f"""SELECT count(*) FROM ({_SQL_CALLS})
                WHERE api GLOB 'cuda*GraphLaunch*' OR api GLOB 'cuGraphLaunch*'"""
        ).fetchone()
    finally:
        conn.close()
    by_name[("", "(all)")] = {"graph_launches": graph_launches}
    return dict(by_name)


@pytest.fixture(scope="module")
def analyses(export_dir: Path) -> dict[str, tuple[Path, Any]]:
    """Each export's path and perfctl's analysis of it (analyzed once for the module)."""
    out = {}
    for name in (*GRAPH_EXPORTS, *EAGER_EXPORTS):
        export = decompress_fixture(f"{name}.sqlite.xz", export_dir)
        out[name] = (export, analyze_export(export))
    return out


def _range(analysis: Any, domain: str, name: str) -> Any:
    return next(r for r in analysis["ranges"] if (r["domain"], r["name"]) == (domain, name))


def _stage(analysis: Any, stage: str) -> Any:
    return next(s for s in analysis["stages"] if s["stage"] == stage)


@pytest.mark.parametrize("name", (*GRAPH_EXPORTS, *EAGER_EXPORTS))
def test_graph_figures_equal_a_plain_sql_count(name: str, analyses: dict[str, tuple[Path, Any]]) -> None:
    export, analysis = analyses[name]
    expected = sql_graph_figures(export)
    assert analysis["totals"]["graph_launches"] == expected.pop(("", "(all)"))["graph_launches"]
    assert {(r["domain"], r["name"]) for r in analysis["ranges"]} == set(expected)
    for r in analysis["ranges"]:
        sql = expected[(r["domain"], r["name"])]
        where = f"{r['domain']}:{r['name']}"
        assert r["instances"] == sql["instances"], where
        assert r["kernel_count"] == sql["kernels"], where  # (the split is of nsys's own count)
        assert r["graph_kernel_count"] == sql["graph_kernels"], where
        assert r["graph_launches"] == sql["graph_launches"], where
        per_step = r["per_instance"]["graph_kernel_count"]
        values = sql["per_instance"]
        assert per_step["mean"] == pytest.approx(sum(values) / len(values)), where
        assert (per_step["min"], per_step["max"]) == (min(values), max(values)), where
    for s in analysis["stages"]:  # a stage's summary is its range's, the split included
        if s["instances"]:
            r = _range(analysis, "perfctl", s["stage"])
            assert (s["graph_kernel_count"], s["graph_launches"]) == (
                r["graph_kernel_count"],
                r["graph_launches"],
            )
            assert s["per_instance"]["graph_kernel_count"] == r["per_instance"]["graph_kernel_count"]


def test_compiled_decode_splits_as_the_fixture_readme_says(analyses: dict[str, tuple[Path, Any]]) -> None:
    """tests/fixtures/README.md: 62 decode ranges with 21,702 kernels, 18,662 replayed from CUDA graphs,
    3,040 launched one by one; 92 cudaGraphLaunch calls (62 in the decode steps, 30 in the warm-up)."""
    _, analysis = analyses["h200-nsys2024-compiled-decode"]
    decode = _stage(analysis, "decode")
    assert (decode["instances"], decode["kernel_count"], decode["graph_kernel_count"]) == (62, 21_702, 18_662)
    assert decode["kernel_count"] - decode["graph_kernel_count"] == 3_040
    assert decode["graph_launches"] == 62 and analysis["totals"]["graph_launches"] == 92
    assert _range(analysis, "perfctl", "warmup")["graph_launches"] == 30
    steps = decode["per_instance"]["graph_kernel_count"]
    assert steps["min"] == steps["max"] == 301  # one replay of the 301-node decode graph per step
    for stage in ("vision", "prefill"):  # only the decode step is compiled
        assert _stage(analysis, stage)["graph_kernel_count"] == 0


def test_compiled_decode_at_batch_16(analyses: dict[str, tuple[Path, Any]]) -> None:
    _, analysis = analyses["h200-nsys2024-compiled-b16"]
    decode = _stage(analysis, "decode")
    assert decode["instances"] == 127
    assert 0 < decode["graph_kernel_count"] < decode["kernel_count"]
    assert decode["graph_launches"] == 127  # one replay per step
    steps = decode["per_instance"]["graph_kernel_count"]
    assert steps["min"] == steps["max"] == decode["graph_kernel_count"] / 127


def test_graph_traced_as_a_whole_keeps_the_launches_but_no_kernels(
    analyses: dict[str, tuple[Path, Any]],
) -> None:
    """nsys 2022.4 under --cuda-graph-trace=graph records none of the replayed kernels: the range still
    counts its two graph launches, and 0 graph kernels is what the export holds (a warning says the
    work is missing)."""
    node = _range(analyses["h200-graphs-node"][1], "perfctl", "graph_replay")
    whole = _range(analyses["h200-graphs-graph"][1], "perfctl", "graph_replay")
    assert (node["kernel_count"], node["graph_kernel_count"], node["graph_launches"]) == (24, 24, 2)
    assert (whole["kernel_count"], whole["graph_kernel_count"], whole["graph_launches"]) == (0, 0, 2)
    assert any("--cuda-graph-trace=node" in w for w in analyses["h200-graphs-graph"][1]["warnings"])


@pytest.mark.parametrize("name", EAGER_EXPORTS)
def test_eager_exports_have_no_graph_kernels(name: str, analyses: dict[str, tuple[Path, Any]]) -> None:
    _, analysis = analyses[name]
    for r in [*analysis["ranges"], *analysis["stages"]]:
        assert r["graph_kernel_count"] == 0 and r["graph_launches"] == 0  # 0, not null: the column is there
        assert r["per_instance"]["graph_kernel_count"]["max"] == 0
    for text in (render_text(analysis), render_markdown(analysis), render_html(analysis, None)):
        assert "CUDA graphs" not in text and "one by one" not in text


def _sentence(analysis: Any) -> str:
    """The decode line the reports print, from the analysis's own per-step means."""
    decode = _stage(analysis, "decode")
    kernels = decode["per_instance"]["kernel_count"]["mean"]
    graph = decode["per_instance"]["graph_kernel_count"]["mean"]
    return (
        f"decode: {kernels:,.0f} kernels per step, {graph:,.0f} replayed from CUDA graphs "
        f"(1 graph launch per step), {kernels - graph:,.0f} launched one by one"
    )


def test_the_reports_say_per_step_how_many_kernels_ran_inside_graphs(
    analyses: dict[str, tuple[Path, Any]],
) -> None:
    _, analysis = analyses["h200-nsys2024-compiled-decode"]
    line = _sentence(analysis)
    assert line == (
        "decode: 350 kernels per step, 301 replayed from CUDA graphs (1 graph launch per step), "
        "49 launched one by one"
    )
    assert line in render_text(analysis).splitlines()
    summary = render_markdown(analysis)
    assert f"## CUDA graphs\n\n- {line}.\n" in summary
    assert f"<p>{line}.</p>" in render_html(analysis, None)
    # vision and prefill run eagerly: no line for them
    assert "vision:" not in summary.split("## CUDA graphs", 1)[1].split("\n## ", 1)[0]
    b16 = analyses["h200-nsys2024-compiled-b16"][1]
    assert _sentence(b16) in render_text(b16).splitlines()


def test_windows_add_up_to_the_whole_export(export_dir: Path) -> None:
    """The graph figures of an export cut into windows equal those of the export at once: nsys 2024.2's
    graph program in windows of 20 activities (5 windows, the two replays in two of them)."""
    tables = load_export(decompress_fixture("h200-nsys2024-threads-graphs.sqlite.xz", export_dir))
    windows = list(activity_windows(tables.schema, 20))
    assert [int(w.in_graph.sum()) for w in windows if w.in_graph is not None] == [0, 0, 12, 12, 0]
    whole = analyze_tables(tables, iter([load_gpu_activities(tables.schema)]))
    assert analyze_tables(tables, iter(windows)) == whole


def _copy(export: Path, to: Path) -> Path:
    shutil.copyfile(export, to)
    return to


def test_an_export_without_the_graph_node_column_says_null_not_zero(
    analyses: dict[str, tuple[Path, Any]], tmp_path: Path
) -> None:
    """An export whose kernel table lacks graphNodeId cannot tell graph kernels from the others: every
    graph kernel figure is null, a warning says why, and every other figure is as before."""
    export, before = analyses["h200-graphs-node"]
    copy = _copy(export, tmp_path / "no-graph-node.sqlite")
    with sqlite3.connect(copy) as conn:
        conn.execute("ALTER TABLE CUPTI_ACTIVITY_KIND_KERNEL DROP COLUMN graphNodeId")
    after = analyze_export(copy)
    (warning,) = [w for w in after["warnings"] if "graphNodeId" in w]
    assert "graph_kernel_count is null" in warning
    for r in [*after["ranges"], *after["stages"]]:
        assert r["graph_kernel_count"] is None and r["per_instance"]["graph_kernel_count"] is None
    assert _range(after, "perfctl", "graph_replay")["graph_launches"] == 2  # (calls are still counted)

    def without_split(analysis: Any) -> Any:
        out = {**analysis, "warnings": [w for w in analysis["warnings"] if "graphNodeId" not in w]}
        out.pop("export")
        for key in ("ranges", "stages"):
            out[key] = [
                {
                    **{k: v for k, v in r.items() if k != "graph_kernel_count"},
                    "per_instance": {k: v for k, v in r["per_instance"].items() if k != "graph_kernel_count"},
                }
                for r in analysis[key]
            ]
        return out

    assert without_split(after) == without_split(before)
    for text in (render_text(after), render_markdown(after), render_html(after, None)):
        assert "replayed from CUDA graphs (" not in text  # (no per-stage line; the warning is there)


def test_a_graph_launch_recorded_twice_counts_its_kernels_once(
    analyses: dict[str, tuple[Path, Any]], tmp_path: Path
) -> None:
    """A second runtime row with the graph launch's correlation id (nsys's join keeps a row for each
    match, and so do perfctl's activities): its 12 kernels are still counted once per range, as nsys
    counts kernels, and the range holds one more graph launch call, as the SQL count says."""
    export, _ = analyses["h200-graphs-node"]
    copy = _copy(export, tmp_path / "twice.sqlite")
    with sqlite3.connect(copy) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(CUPTI_ACTIVITY_KIND_RUNTIME)")]
        listed = ", ".join(f'"{c}"' for c in columns)
        rowid = conn.execute(
            "SELECT r.rowid FROM CUPTI_ACTIVITY_KIND_RUNTIME AS r JOIN StringIds AS n ON r.nameId = n.id "
            "WHERE n.value GLOB 'cudaGraphLaunch*' ORDER BY r.start LIMIT 1"
        ).fetchone()[0]
        conn.execute(
            f"INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME ({listed}) SELECT {listed} "
            f"FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE rowid = {rowid}"
        )
    analysis = analyze_export(copy)
    replay = _range(analysis, "perfctl", "graph_replay")
    sql = sql_graph_figures(copy)[("perfctl", "graph_replay")]
    assert (
        (replay["kernel_count"], replay["graph_kernel_count"])
        == (sql["kernels"], sql["graph_kernels"])
        == (
            24,
            24,
        )
    )
    assert replay["graph_launches"] == sql["graph_launches"] == 3


def test_a_graph_node_id_that_is_no_integer_refuses_the_export(
    analyses: dict[str, tuple[Path, Any]], tmp_path: Path
) -> None:
    export, _ = analyses["h200-graphs-node"]
    copy = _copy(export, tmp_path / "bad-node.sqlite")
    with sqlite3.connect(copy) as conn:
        rowid = conn.execute(
            "SELECT rowid FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE graphNodeId IS NOT NULL LIMIT 1"
        ).fetchone()[0]
        conn.execute(f"UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET graphNodeId = 'node' WHERE rowid = {rowid}")
    with pytest.raises(BadInput, match=f"rowid {rowid}: graphNodeId is text, not an integer"):
        analyze_export(copy)
