"""perfctl's kernel attribution against NVIDIA's own NVTX kernel summary, run live on the same real GPU
exports with every installed reference nsys: 2022.4 (`nsys stats -r nvtxkernsum`), 2023.4 and 2024.2
(`nsys stats -r nvtx_kern_sum`). The exports come from several generations too: export schema 3.0.0
(nsys 2022.4), 3.7.2 (nsys 2023.4) and 3.11.1 (nsys 2024.2), so each nsys also reads another
generation's export. nsys
2024.2 reads both as they are (it neither refuses nor re-exports them; its CSV equals 2023.4's)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from conftest import FIXTURES, decompress_fixture
from nsys_reference import nvtxkernsum_totals, perfctl_totals, run_kern_sum
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
    # nsys 2024.2 with the host's CUDA 13 CUPTI linked in (scripts/gpu-host-nsys.sh), on an H200
    "h200-nsys2024-tiny-ocr2": ("3.11.1", "2024.2.3.38"),
    "h200-nsys2024-threads-graphs": ("3.11.1", "2024.2.3.38"),
    # the full-size DeepSeek-OCR-2 (random weights), 2 pages x 16 new tokens after 1 warm-up page
    "h200-nsys2024-full-ocr2": ("3.11.1", "2024.2.3.38"),
    # the same model with --decode compiled (static cache, transformers' torch.compile, CUDA graphs
    # traced node by node): 2 pages x 32 new tokens, 62 decode steps, most kernels replayed from graphs
    "h200-nsys2024-compiled-decode": ("3.11.1", "2024.2.3.38"),
    # compiled decode at --batch-size 16: one generate call of 16 pages x 128 new tokens
    "h200-nsys2024-compiled-b16": ("3.11.1", "2024.2.3.38"),
}


@pytest.mark.parametrize("fixture", GPU_FIXTURES)
def test_kernel_count_and_time_equal_the_recorded_answer(fixture: str, export_dir: Path) -> None:
    """The answer of the nsys that made the export, recorded beside it when it was captured."""
    recorded = sorted(FIXTURES.glob(f"{fixture}.*.csv"))
    assert len(recorded) == 1, recorded
    export = decompress_fixture(f"{fixture}.sqlite.xz", export_dir)
    assert perfctl_totals(_analysis(export)) == nvtxkernsum_totals(recorded[0].read_text())


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


def test_full_size_pages_have_the_shape_measured_on_the_h200(export_dir: Path) -> None:
    """The full-size export: 2 pages, each 1 vision + 1 prefill + 15 decode ranges, the decode steps
    launching 712 kernels each, as the published benchmark measured on 30 pages (docs/benchmarks.md)."""
    analysis = _analysis(decompress_fixture("h200-nsys2024-full-ocr2.sqlite.xz", export_dir))
    stages = {s["stage"]: s for s in analysis["stages"]}
    assert {k: stages[k]["instances"] for k in ("vision", "prefill", "decode")} == {
        "vision": 2,
        "prefill": 2,
        "decode": 30,
    }
    assert stages["decode"]["kernel_count"] == 30 * 712
    assert len(analysis["pages"]) == 2 and analysis["totals"]["unattributed_kernels"] >= 0
