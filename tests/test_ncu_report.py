"""perfctl's reading of an Nsight Compute report against ncu's own answer for it and against known
work: a real H200 report (tests/fixtures/h200-ncu-known-work.ncu-rep.xz) of a 4096³ bf16 GEMM, a
256 MiB fp32 elementwise multiply and a CUDA graph node, and `ncu --import --csv --page raw` of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, decompress_fixture
from ncu_reference import NVTX_COLUMN, csv_flops, ncu_csv_rows
from perfctl.analysis.result_ncu import FLOP_PRECISIONS, NcuKernel
from perfctl.capture.ncu import ecmascript_escape
from perfctl.ncu_rep import metrics
from perfctl.ncu_rep.reader import classify_bound, read_ncu_report

pytest.importorskip("ncu_report", reason="NVIDIA's ncu-report package reads .ncu-rep files")

GEMM_FLOPS = 2 * 4096**3
ELEMENTWISE_BYTES = 256 * 2**20


@pytest.fixture(scope="module")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return decompress_fixture("h200-ncu-known-work.ncu-rep.xz", tmp_path_factory.mktemp("ncu"))


@pytest.fixture(scope="module")
def kernels(report_path: Path) -> list[NcuKernel]:
    return read_ncu_report(report_path)["kernels"]


def ncu_answer() -> list[dict[str, str]]:
    return ncu_csv_rows(FIXTURES / "h200-ncu-known-work.raw.csv")


def _csv_number(row: dict[str, str], metric: str) -> float:
    return float(row[metric])


def test_known_work_reads_as_arithmetic_says(kernels: list[NcuKernel]) -> None:
    gemm, elementwise, node = kernels
    assert gemm["flops"]["bf16_tensor"] == GEMM_FLOPS and gemm["flops"]["total"] == GEMM_FLOPS
    assert gemm["nvtx_range"] == "gemm" and gemm["nvtx_stack"] == ["page", "gemm"]
    # x * 2 over 64 Mi floats: one fp32 multiply each, 256 MiB read (and written back, part of it still
    # in the L2 when the kernel ends)
    assert elementwise["flops"]["fp32"] == ELEMENTWISE_BYTES // 4 == elementwise["flops"]["total"]
    assert elementwise["dram_bytes_read"] == pytest.approx(ELEMENTWISE_BYTES, rel=0.001)
    assert node["nvtx_range"] == "graph" and node["grid"] == [1024, 1, 1]
    assert [k["bound"] for k in kernels] == ["compute", "memory", "latency"]
    assert gemm["max_sm_clock_hz"] == 1.98e9 and gemm["replay_passes"] == 14


def test_every_figure_equals_ncus_own_csv(kernels: list[NcuKernel]) -> None:
    answer = ncu_answer()
    assert len(answer) == len(kernels) == 3
    for kernel, row in zip(kernels, answer, strict=True):
        assert kernel["id"] == int(row["ID"])
        assert kernel["duration_ns"] == _csv_number(row, metrics.DURATION)
        assert kernel["dram_bytes_read"] == _csv_number(row, metrics.DRAM_READ)
        assert kernel["dram_bytes_write"] == _csv_number(row, metrics.DRAM_WRITE)
        assert dict(kernel["flops"]) == csv_flops(row)
        # the CSV prints percentages and clocks to 2 decimals
        for key, metric in (
            ("sm_throughput_pct", metrics.SM_THROUGHPUT),
            ("memory_throughput_pct", metrics.MEMORY_THROUGHPUT),
            ("dram_throughput_pct", metrics.DRAM_THROUGHPUT),
            ("achieved_occupancy_pct", metrics.ACHIEVED_OCCUPANCY),
            ("sm_clock_hz", metrics.SM_CLOCK),
        ):
            assert kernel[key] == pytest.approx(_csv_number(row, metric), abs=0.006), key  # type: ignore[literal-required]
        assert row["Grid Size"] == "({}, {}, {})".format(*kernel["grid"])
        assert row["Block Size"] == "({}, {}, {})".format(*kernel["block"])
        assert kernel["replay_passes"] == _csv_number(row, metrics.REPLAY_PASSES)
        assert kernel["short_name"] in row["Kernel Name"] or kernel["short_name"].startswith("nvjet")
        assert f'"perfctl:{kernel["nvtx_range"]}:' in row[NVTX_COLUMN]


def test_the_flop_counters_name_every_precision_once() -> None:
    assert tuple(metrics.FLOP_COUNTERS) == FLOP_PRECISIONS
    counted = [name for counters in metrics.FLOP_COUNTERS.values() for name, _ in counters]
    assert len(counted) == len(set(counted)) and set(counted) <= set(metrics.PERFCTL_METRICS)


def test_bound_follows_ncus_bottleneck_rule() -> None:
    # ncu's SpeedOfLight rule: neither unit at 60 % of its peak is a latency issue
    assert classify_bound(59.9, 59.9) == "latency"
    assert classify_bound(60.0, 10.0) == "compute"
    assert classify_bound(10.0, 85.0) == "memory"
    assert classify_bound(None, 85.0) == "unknown"


def test_demangled_names_are_escaped_for_ncus_regex() -> None:
    name = "void at::native::vectorized_elementwise_kernel<(int)4, at::AUnaryFunctor<float>>(int, T2, T3)"
    escaped = ecmascript_escape(name)
    assert escaped == (
        r"void at::native::vectorized_elementwise_kernel<\(int\)4, at::AUnaryFunctor<float>>\(int, T2, T3\)"
    )
    assert ecmascript_escape("a.b*c+d?e|f[g]{h}^$\\/") == r"a\.b\*c\+d\?e\|f\[g\]\{h\}\^\$\\\/"
    # (an escaped letter or underscore is an error or a character class in ECMAScript: never escaped)
    assert ecmascript_escape("nvjet_sm90_tst") == "nvjet_sm90_tst"


def _perfctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perfctl", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_analyze_a_report_alone_prints_its_kernels(report_path: Path) -> None:
    before = report_path.read_bytes()
    proc = _perfctl("analyze", str(report_path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    assert [k["name"][:5] for k in data["kernels"]] == ["nvjet", "void ", "void "]
    documented = {
        "name", "nvtx_range", "duration_ns", "flops", "dram_bytes_read", "dram_bytes_write",
        "arithmetic_intensity", "sm_throughput_pct", "dram_throughput_pct", "achieved_occupancy_pct", "bound",
    }  # fmt: skip
    assert all(documented <= set(k) for k in data["kernels"])
    assert data["kernels"][0]["flops"]["bf16_tensor"] == GEMM_FLOPS
    assert data["devices"] == [{"name": "NVIDIA H200", "sm_count": 132, "max_sm_clock_hz": 1.98e9}]
    text = _perfctl("analyze", str(report_path))
    assert text.returncode == 0 and "nvjet\\_sm90" in text.stdout and "| compute |" in text.stdout
    assert report_path.read_bytes() == before


@pytest.mark.parametrize(
    "content",
    [b"", b"not a report at all", b"NVR\x00" + b"\x00" * 64],
    ids=["empty", "text", "magic-then-nothing"],
)
def test_a_file_that_is_no_report_is_refused_in_one_line(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.ncu-rep"
    bad.write_bytes(content)
    proc = _perfctl("analyze", str(bad))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and str(bad) in proc.stderr
    assert bad.read_bytes() == content


def test_a_cut_short_report_is_refused_or_read_in_part(tmp_path: Path, report_path: Path) -> None:
    whole = report_path.read_bytes()
    for size in (100_000, 2_000_000, len(whole) - 1000):
        cut = tmp_path / f"cut-{size}.ncu-rep"
        cut.write_bytes(whole[:size])
        proc = _perfctl("analyze", str(cut), "--format", "json")
        assert "Traceback" not in proc.stderr, size
        if proc.returncode == 2:
            assert len(proc.stderr.strip().splitlines()) == 1
        else:
            assert proc.returncode == 0
            read = json.loads(proc.stdout)
            assert all(k["short_name"] not in ("", "None") for k in read["kernels"])
