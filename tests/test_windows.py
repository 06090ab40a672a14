"""Analysis window by window (perfctl.nsys_export.windows) against the whole export at once: on every
real export, with windows from one activity up, every figure of analysis.json is the same, or the
windows refuse (NotWindowable) and the export is analyzed at once, as analyze_export does."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from conftest import decompress_fixture
from perfctl.analysis.analyze import analyze_export, analyze_tables, load_export
from perfctl.nsys_export.windows import NotWindowable, activity_windows, load_gpu_activities

EXPORTS = (
    "h200-tiny-ocr2",
    "h200-nvtx-matmul",
    "h200-graphs-node",
    "h200-two-streams",
    "h200-nsys2023-threads-graphs",
)


@pytest.mark.parametrize("name", EXPORTS)
def test_windows_add_up_to_the_whole_export(name: str, export_dir: Path) -> None:
    tables = load_export(decompress_fixture(f"{name}.sqlite.xz", export_dir))
    whole = analyze_tables(tables, iter([load_gpu_activities(tables.schema)]))
    for target in (3, 50, 1000):
        try:
            windowed = analyze_tables(tables, activity_windows(tables.schema, target))
        except NotWindowable:
            continue  # (a launch outside its window: analyze_export then takes the export at once)
        assert windowed == whole, target


def test_the_tiny_model_export_is_cut_into_many_windows(tiny_gpu_export: Path) -> None:
    """Between a launch-bound model's kernels the GPU idles all the time: windows of about the target."""
    tables = load_export(tiny_gpu_export)
    sizes = [len(a) for a in activity_windows(tables.schema, 500)]
    assert len(sizes) >= 10 and min(sizes[:-1]) >= 500 and max(sizes) < 1000


def test_an_activity_table_out_of_start_order_is_analyzed_at_once(
    tiny_gpu_export: Path, tmp_path: Path
) -> None:
    export = tmp_path / "shuffled.sqlite"
    shutil.copyfile(tiny_gpu_export, export)
    with sqlite3.connect(export) as conn:  # the first kernel now starts after the second
        first, second = conn.execute(
            "SELECT rowid, start FROM CUPTI_ACTIVITY_KIND_KERNEL ORDER BY rowid LIMIT 2"
        ).fetchall()
        later = second[1] + 1 - first[1]  # (its end moves with it: a kernel that ends before it
        conn.execute(  # starts is a bad row, left out: nsys_export.checks)
            'UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET start = start + ?, "end" = "end" + ? WHERE rowid = ?',
            (later, later, first[0]),
        )
    tables = load_export(export)
    with pytest.raises(NotWindowable, match="start order"):
        list(activity_windows(tables.schema, 10))
    whole = analyze_tables(tables, iter([load_gpu_activities(tables.schema)]))
    note = (
        "the export could not be cut into GPU-idle windows (CUPTI_ACTIVITY_KIND_KERNEL is not in start order)"
    )
    analysis = analyze_export(export)
    assert analysis["warnings"][-1].startswith(note)  # (and said so)
    assert analysis == {**whole, "warnings": [*whole["warnings"], analysis["warnings"][-1]]}
