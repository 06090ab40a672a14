"""perfctl's kernel attribution against the installed `nsys stats -r nvtxkernsum`, run live on the
same real GPU exports (CI installs nsys; this is the comparison NVIDIA's tool makes itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsys_reference import perfctl_totals, run_nvtxkernsum
from perfctl.analysis.analyze import analyze_export

pytestmark = pytest.mark.nsys


@pytest.mark.parametrize("fixture", ["matmul_export", "tiny_gpu_export"])
def test_kernel_count_and_time_equal_nsys_stats(
    fixture: str, request: pytest.FixtureRequest, nsys_bin: str, tmp_path: Path
) -> None:
    export = request.getfixturevalue(fixture)
    expected = run_nvtxkernsum(nsys_bin, export, tmp_path)
    assert expected, "nsys stats found no kernels in a GPU export"
    assert perfctl_totals(analyze_export(export)) == expected
