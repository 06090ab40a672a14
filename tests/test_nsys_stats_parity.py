"""perfctl's kernel attribution against NVIDIA's own NVTX kernel summary, run live on the same real GPU
exports with every installed reference nsys: 2022.4 (`nsys stats -r nvtxkernsum`), 2023.4 and 2024.2
(`nsys stats -r nvtx_kern_sum`). The exports come from several generations too: export schema 3.0.0
(nsys 2022.4) and 3.7.2 (nsys 2023.4), so each nsys also reads another generation's export. nsys
2024.2 reads both as they are (it neither refuses nor re-exports them; its CSV equals 2023.4's)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from conftest import decompress_fixture
from nsys_reference import perfctl_totals, run_kern_sum
from perfctl.analysis.analyze import analyze_export

pytestmark = pytest.mark.nsys

# Every committed GPU export, with the export schema version and nsys that wrote it.
GPU_FIXTURES = {
    "h200-nvtx-matmul": ("3.0.0", "2022.4.2.1"),
    "h200-tiny-ocr2": ("3.0.0", "2022.4.2.1"),
    "h200-graphs-node": ("3.0.0", "2022.4.2.1"),
    "h200-graphs-graph": ("3.0.0", "2022.4.2.1"),
    "h200-two-streams": ("3.0.0", "2022.4.2.1"),
    "h200-nsys2023-threads-graphs": ("3.7.2", "2023.4.4.54"),
}


@cache
def _analysis(export: Path) -> dict:  # type: ignore[type-arg]
    return analyze_export(export)


@pytest.mark.parametrize("fixture", GPU_FIXTURES)
def test_kernel_count_and_time_equal_nsys_stats(
    fixture: str, reference_nsys: str, export_dir: Path, tmp_path: Path
) -> None:
    export = decompress_fixture(f"{fixture}.sqlite.xz", export_dir)
    expected = run_kern_sum(reference_nsys, export, tmp_path)
    assert expected, "nsys stats found no kernels in a GPU export"
    assert perfctl_totals(_analysis(export)) == expected


@pytest.mark.parametrize("fixture", GPU_FIXTURES)
def test_export_schema_version_is_reported(fixture: str, export_dir: Path) -> None:
    """perfctl reads the schema stamp from either generation's table (EXPORT_META_DATA in 3.0,
    META_DATA_EXPORT in 3.7), so the parity above really covers both export schema families."""
    schema, nsys = GPU_FIXTURES[fixture]
    export = _analysis(decompress_fixture(f"{fixture}.sqlite.xz", export_dir))["export"]
    assert (export["schema_version"], export["nsys_version"]) == (schema, nsys)
