"""Exports of every nsys generation read alike: a live CPU capture (`perfctl capture --device cpu`) under
each installed reference nsys (2022.4, 2023.4, 2024.2), and the committed CPU export of nsys 2024.2
(schema 3.11.1). A CPU run has no kernels, so the parity here is on NVTX ranges: per range, instances and
summed wall time equal that very nsys's `nsys stats -r nvtx_sum` (2022.4: `nvtxsum`); its NVTX kernel
summary finds no kernels, and neither does perfctl."""

from __future__ import annotations

import json
import sqlite3
from functools import cache
from pathlib import Path

import pytest

from conftest import FIXTURES, decompress_fixture, run_perfctl
from nsys_reference import (
    NO_KERNELS,
    kern_sum_report,
    nsys_version,
    nvtx_sum_totals,
    perfctl_nvtx_totals,
    perfctl_totals,
    run_nvtx_sum,
    run_stats,
)
from perfctl.analysis.analyze import analyze_export

pytestmark = pytest.mark.nsys

# The export schema each nsys generation (by release year) writes, as measured on real exports.
SCHEMA_OF_NSYS = {2022: "3.0.0", 2023: "3.7.2", 2024: "3.11.1"}
CPU_2024 = "cpu-nsys2024-tiny-ocr2"  # 2 pages x 4 new tokens after 1 warm-up page
CPU_2024_RANGES = {"load": 1, "warmup": 1, "page": 2, "vision": 2, "prefill": 2, "decode": 6}
LIVE_RANGES = {"load": 1, "warmup": 1, "page": 1, "vision": 1, "prefill": 1, "decode": 2}  # 1 page, 3 tokens


@cache
def _analysis(export: Path) -> dict:  # type: ignore[type-arg]
    return analyze_export(export)


def _perfctl_counts(analysis: dict) -> dict[str, int]:  # type: ignore[type-arg]
    return {r["name"]: r["instances"] for r in analysis["ranges"] if r["domain"] == "perfctl"}


@pytest.fixture(scope="session")
def cpu_2024_export(export_dir: Path) -> Path:
    return decompress_fixture(f"{CPU_2024}.sqlite.xz", export_dir)


def test_nsys2024_export_is_read_as_a_checked_schema(cpu_2024_export: Path) -> None:
    analysis = _analysis(cpu_2024_export)
    assert (analysis["export"]["schema_version"], analysis["export"]["nsys_version"]) == (
        "3.11.1",
        "2024.2.3.38",
    )
    assert not any("schema" in w for w in analysis["warnings"]), analysis["warnings"]
    # the domain comes from the domain-create event, the names from StringIds (textId)
    assert _perfctl_counts(analysis) == CPU_2024_RANGES
    assert analysis["totals"]["kernels"] == 0


def test_nsys2024_export_equals_its_recorded_nvtx_sum(cpu_2024_export: Path) -> None:
    """nsys 2024.2's own `nvtx_sum` of this export, recorded beside it when it was captured."""
    recorded = nvtx_sum_totals((FIXTURES / f"{CPU_2024}.nvtx_sum.csv").read_text())
    assert perfctl_nvtx_totals(_analysis(cpu_2024_export)) == recorded
    assert sum(n for n, _ in recorded.values()) == sum(CPU_2024_RANGES.values())


def test_nsys2024_export_equals_every_nsys_nvtx_sum(
    cpu_2024_export: Path, reference_nsys: str, tmp_path: Path
) -> None:
    """Each reference nsys reads the 3.11.1 export (the older ones too) and agrees with perfctl."""
    assert perfctl_nvtx_totals(_analysis(cpu_2024_export)) == run_nvtx_sum(
        reference_nsys, cpu_2024_export, tmp_path
    )


def test_unknown_version_of_the_newer_meta_table_is_named_then_analyzed(
    cpu_2024_export: Path, tmp_path: Path
) -> None:
    """A schema newer than 3.11 (META_DATA_EXPORT, as nsys 2023-2025 write it): a warning naming the
    version, then the same ranges."""
    newer = tmp_path / "newer.sqlite"
    newer.write_bytes(cpu_2024_export.read_bytes())
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE META_DATA_EXPORT SET value = '3.99.0' WHERE name = 'EXPORT_SCHEMA_VERSION'")
    proc = run_perfctl("analyze", str(newer), "--format", "json", "--allow-no-kernels")
    assert proc.returncode == 0, proc.stderr
    analysis = json.loads(proc.stdout)
    assert any("3.99.0" in w and "not been checked" in w for w in analysis["warnings"]), analysis["warnings"]
    assert perfctl_nvtx_totals(analysis) == perfctl_nvtx_totals(_analysis(cpu_2024_export))


@pytest.fixture(scope="session")
def live_cpu_run(reference_nsys: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`perfctl capture --device cpu` under this reference nsys: 1 page x 3 new tokens."""
    run = tmp_path_factory.mktemp("live") / "run"
    proc = run_perfctl(
        "capture", "--tool", "nsys", "--device", "cpu", "--num-pages", "1", "--max-new-tokens", "3",
        "--out", str(run), "--nsys", reference_nsys,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run


@pytest.mark.slow
def test_live_cpu_capture_ranges_arrive_in_this_nsys_schema(live_cpu_run: Path, reference_nsys: str) -> None:
    manifest = json.loads((live_cpu_run / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["nsys"]["importer_found"]
    assert manifest["nsys"]["version"].startswith(".".join(map(str, nsys_version(reference_nsys)[:2])))
    analysis = _analysis(live_cpu_run / "run.sqlite")
    year = nsys_version(reference_nsys)[0]
    assert year in SCHEMA_OF_NSYS, f"nsys {year}: which export schema it writes is not recorded here yet"
    assert analysis["export"]["schema_version"] == SCHEMA_OF_NSYS[year]
    assert not any("schema" in w for w in analysis["warnings"]), analysis["warnings"]
    assert _perfctl_counts(analysis) == LIVE_RANGES


@pytest.mark.slow
def test_live_cpu_capture_equals_this_nsys_stats(
    live_cpu_run: Path, reference_nsys: str, tmp_path: Path
) -> None:
    export = live_cpu_run / "run.sqlite"
    analysis = _analysis(export)
    assert perfctl_nvtx_totals(analysis) == run_nvtx_sum(reference_nsys, export, tmp_path)
    # no kernels: nsys skips its kernel summary, saying so, and perfctl attributes none
    csv_text, message = run_stats(reference_nsys, export, tmp_path, kern_sum_report(reference_nsys))
    assert NO_KERNELS in message and not csv_text.strip()
    assert perfctl_totals(analysis) == {} and analysis["totals"]["kernels"] == 0
