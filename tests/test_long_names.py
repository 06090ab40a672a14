"""Names of any length: memory and output do not grow with them. A copy of a real export gets eight
kernel names (the StringIds values of the eight kernels with the most time) and three NVTX range
names (inline texts: two equal, one differing only at its end) of 16 MB, then of 32 MB, each.
`perfctl analyze` through the CLI: it succeeds, every output stays small and the same size for both
lengths, distinct names stay distinct (first 8 KiB, size, sha256 of the whole), equal names stay one,
and the analyzing process's peak RSS stays far below what it was (16 MB names: 5.6 GB and a 2.6 GB
analysis.json before names were bounded, 144 MB after, on this project's 2-core VM)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import decompress_fixture
from perfctl.nsys_export.names import DIGEST_HEX, NAME_BYTES
from untrusted_support import copy, sha256

LENGTHS = {"16MB": 16 << 20, "32MB": 32 << 20}
KERNEL_PREFIX = "void long_kernel<"
RANGE_PREFIX = "range "
OUTPUTS = ("analysis.json", "report.html", "summary.md")
OUTPUT_LIMIT = 4 << 20  # bytes of any output: eleven bounded names in every table they belong to
# Peak RSS of the analysis of the 32 MB names: a few times what a normal analysis takes (the names
# pass through SQLite one at a time), a fraction of what unbounded names took (5.6 GB at 16 MB).
RSS_LIMIT_MB = 1024

# Runs `perfctl ARGS` as its only child and prints the child's peak RSS (MB) as its last line.
_MEASURE = """
import resource, subprocess, sys
proc = subprocess.run([sys.executable, "-m", "perfctl", *sys.argv[1:]], capture_output=True, text=True)
sys.stderr.write(proc.stderr)
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


def _long_names(export: Path, size: int) -> tuple[list[int], list[int]]:
    """Give the eight costliest kernels' names and three decode ranges' texts `size` characters each
    (SQL builds them: the test never holds them); returns (kernel name ids, range rowids)."""
    with sqlite3.connect(export) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT demangledName FROM CUPTI_ACTIVITY_KIND_KERNEL GROUP BY demangledName "
                'ORDER BY sum("end" - start) DESC LIMIT 8'
            )
        ]
        for i in ids:  # alike for their first megabytes: only their ends tell them apart
            conn.execute(
                "UPDATE StringIds SET value = ? || replace(hex(zeroblob(?)), '0', 'k') || ', ' || ? || '>' "
                "WHERE id = ?",
                (KERNEL_PREFIX, size // 2, i, i),
            )
        ranges = [17, 18, 31]  # decode ranges; 17 and 18 get the same text
        for rowid, tag in zip(ranges, ("same", "same", "other"), strict=True):
            conn.execute(
                "UPDATE NVTX_EVENTS SET textId = NULL, text = ? || replace(hex(zeroblob(?)), '0', 'r') || ? "
                "WHERE rowid = ?",
                (RANGE_PREFIX, size // 2, tag, rowid),
            )
    conn.close()
    return ids, ranges


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, export_dir: Path) -> dict[str, dict[str, Any]]:
    """Per length: the export, its long values' (size, sha256), the CLI's outputs and peak RSS."""
    original = decompress_fixture("h200-tiny-ocr2.sqlite.xz", export_dir)
    out: dict[str, dict[str, Any]] = {}
    for label, size in LENGTHS.items():
        folder = tmp_path_factory.mktemp(label)
        export = copy(original, folder / "long.sqlite")
        ids, ranges = _long_names(export, size)
        with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
            full = [conn.execute("SELECT value FROM StringIds WHERE id = ?", (i,)).fetchone()[0] for i in ids]
            full += [
                conn.execute("SELECT text FROM NVTX_EVENTS WHERE rowid = ?", (r,)).fetchone()[0]
                for r in ranges
            ]
        conn.close()
        digests = {(len(v.encode()), hashlib.sha256(v.encode()).hexdigest()) for v in full}
        del full
        before = sha256(export)
        proc = subprocess.run(
            [sys.executable, "-c", _MEASURE, "analyze", str(export), "--out-dir", str(folder / "out")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        code, rss_mb = (int(v) for v in proc.stdout.split())
        assert code == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert sha256(export) == before
        out[label] = {"export": export, "digests": digests, "out": folder / "out", "rss_mb": rss_mb}
    return out


def test_outputs_stay_small_and_do_not_grow_with_the_names(runs: dict[str, dict[str, Any]]) -> None:
    sizes = {label: {n: (r["out"] / n).stat().st_size for n in OUTPUTS} for label, r in runs.items()}
    for label, by_name in sizes.items():
        assert max(by_name.values()) < OUTPUT_LIMIT, (label, by_name)
    for name in OUTPUTS:  # twice the length, the same output (the sizes' digits are as many)
        assert abs(sizes["32MB"][name] - sizes["16MB"][name]) <= sizes["16MB"][name] // 100, sizes


def test_the_analysis_takes_little_memory(runs: dict[str, dict[str, Any]]) -> None:
    for label, run in runs.items():
        assert run["rss_mb"] < RSS_LIMIT_MB, (label, run["rss_mb"])


def _names(analysis: dict[str, Any]) -> tuple[set[str], dict[str, int]]:
    """(every kernel name the analysis lists, range name -> instances)."""
    kernels = set()
    for r in [*analysis["ranges"], *analysis["stages"]]:
        kernels |= set(r["kernel_time_by_name"]) | {k["name"] for k in r["top_kernels"]}
    return kernels, {r["name"]: r["instances"] for r in analysis["ranges"]}


@pytest.mark.parametrize("label", LENGTHS)
def test_distinct_long_names_stay_distinct_and_equal_ones_one(
    runs: dict[str, dict[str, Any]], label: str
) -> None:
    run = runs[label]
    analysis = json.loads((run["out"] / "analysis.json").read_text())
    kernels, ranges = _names(analysis)
    long_kernels = sorted(k for k in kernels if k.startswith(KERNEL_PREFIX))
    long_ranges = {n: i for n, i in ranges.items() if n.startswith(RANGE_PREFIX)}
    assert len(long_kernels) == 8 and sorted(long_ranges.values()) == [1, 2]
    seen = set()
    for name in [*long_kernels, *long_ranges]:
        head, marker = name.rsplit("… [", 1)  # the first 8 KiB, then "N bytes, sha256 H]"
        assert len(head.encode()) == NAME_BYTES
        size, digest = marker.removesuffix("]").split(" bytes, sha256 ")
        seen.add((int(size.replace(",", "")), digest))
    full = {(size, digest[:DIGEST_HEX]) for size, digest in run["digests"]}
    assert seen == full  # each name's size and the hash of its whole value
    report = (run["out"] / "report.html").read_text()
    assert all(f"sha256 {d}]" in report for _, d in seen)


def test_a_long_version_and_gpu_name_are_bounded_too(tmp_path: Path, export_dir: Path) -> None:
    """Other text an export hands to every output: its nsys version (EXPORT_META_DATA) and GPU name
    (TARGET_INFO_GPU), 16 MB each."""
    export = copy(decompress_fixture("h200-tiny-ocr2.sqlite.xz", export_dir), tmp_path / "long.sqlite")
    size = LENGTHS["16MB"]
    with sqlite3.connect(export) as conn:
        conn.execute(
            "UPDATE EXPORT_META_DATA SET value = replace(hex(zeroblob(?)), '0', 'v') "
            "WHERE name = 'EXPORT_PRODUCT_VERSION'",
            (size // 2,),
        )
        conn.execute("UPDATE TARGET_INFO_GPU SET name = replace(hex(zeroblob(?)), '0', 'g')", (size // 2,))
    conn.close()
    proc = subprocess.run(
        [sys.executable, "-m", "perfctl", "analyze", str(export), "--out-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert all((tmp_path / "out" / n).stat().st_size < OUTPUT_LIMIT for n in OUTPUTS)
    export_info = json.loads((tmp_path / "out" / "analysis.json").read_text())["export"]
    for text in (export_info["nsys_version"], export_info["gpus"][0]["name"]):
        assert text.endswith("]") and f"… [{size:,} bytes, sha256 " in text


def test_long_texts_in_the_run_folders_records_are_bounded(tmp_path: Path) -> None:
    """A run folder's own records are untrusted too: a hand-edited manifest.json whose model name,
    and a torch/operators.json whose top operator's name, hold 16 MB each. `perfctl analyze` of the
    real H100 run folder so altered succeeds, every output stays small, and each long text is shown
    bounded (first NAME_BYTES bytes, size, sha256 of the whole); the records are not changed."""
    from conftest import copy_run_fixture, run_perfctl

    run = copy_run_fixture("h100-tiny-ocr2-all", tmp_path / "run")
    size = LENGTHS["16MB"]
    model = "model-" + "m" * size
    operator = "aten::long_" + "o" * size
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["model_spec"]["name"] = model
    (run / "manifest.json").write_text(json.dumps(manifest))
    operators = json.loads((run / "torch" / "operators.json").read_text())
    operators["decode"]["top"][0]["name"] = operator
    (run / "torch" / "operators.json").write_text(json.dumps(operators))
    before = {p: sha256(run / p) for p in ("manifest.json", "torch/operators.json")}
    out = tmp_path / "out"
    proc = run_perfctl("analyze", str(run), "--format", "json", "--out-dir", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for name in OUTPUTS:
        assert (out / name).stat().st_size < OUTPUT_LIMIT, name
    analysis = json.loads((out / "analysis.json").read_text())
    for text, shown in (
        (model, analysis["run"]["model_spec"]["name"]),
        # the renamed operator (cudaLaunchKernel, first by self CPU time) is ranked by device time now
        (
            operator,
            next(
                op["name"]
                for op in analysis["operators"]["stages"]["decode"]["top"]
                if op["name"].startswith("aten::long_")
            ),
        ),
    ):
        digest = hashlib.sha256(text.encode()).hexdigest()[:DIGEST_HEX]
        assert shown == f"{text[:NAME_BYTES]}… [{len(text):,} bytes, sha256 {digest}]"
    assert {p: sha256(run / p) for p in before} == before
