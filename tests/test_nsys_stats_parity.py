"""perfctl's kernel attribution against the installed `nsys stats -r nvtxkernsum`, run live on the
same real GPU exports (CI installs nsys; this is the comparison NVIDIA's tool makes itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import decompress_fixture
from nsys_reference import perfctl_totals, run_nvtxkernsum
from perfctl.analysis.analyze import analyze_export

pytestmark = pytest.mark.nsys


@pytest.mark.parametrize(
    "fixture", ["h200-nvtx-matmul", "h200-tiny-ocr2", "h200-graphs-node", "h200-graphs-graph"]
)
def test_kernel_count_and_time_equal_nsys_stats(
    fixture: str, export_dir: Path, nsys_bin: str, tmp_path: Path
) -> None:
    export = decompress_fixture(f"{fixture}.sqlite.xz", export_dir)
    expected = run_nvtxkernsum(nsys_bin, export, tmp_path)
    assert expected, "nsys stats found no kernels in a GPU export"
    assert perfctl_totals(analyze_export(export)) == expected
