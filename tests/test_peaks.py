"""The dense-peak table: dense (not sparse) figures with a source each, strict name matching, unknown
GPUs reported as unknown, the override winning, dtype aliases, and the docs in step with the table."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from perfctl.hardware import (
    DTYPES,
    GPU_PEAKS,
    canonical_dtype,
    dense_peak_tflops,
    gpu_by_key,
    match_gpu,
    peak_bandwidth_gbs,
    resolve_bandwidth,
    resolve_peak,
)
from perfctl.hardware.peaks import GpuPeaks, peak_table_markdown, sources_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "gpu-peaks.md"


def _gpu(key: str) -> GpuPeaks:
    gpu = gpu_by_key(key)
    assert gpu is not None, key
    return gpu


def test_every_entry_has_a_source_and_sane_numbers() -> None:
    keys = [g.key for g in GPU_PEAKS]
    names = [n for g in GPU_PEAKS for n in g.nvml_names]
    assert len(set(keys)) == len(keys) and len(set(names)) == len(names)
    for g in GPU_PEAKS:
        assert len(g.source) > 40
        assert any(doc in g.source for doc in ("datasheet", "whitepaper", "page", "specifications")), g.key
        assert g.nvml_names and all(n.startswith("NVIDIA ") for n in g.nvml_names)
        assert g.sm_count is not None and g.sm_count > 0
        assert g.memory_bandwidth_gbs > 0 and peak_bandwidth_gbs(g) == g.memory_bandwidth_gbs
        assert g.bf16_tflops is not None and g.bf16_tflops == g.fp16_tflops
        assert g.fp32_tflops is not None and g.tf32_tflops is not None
        # tensor rates rise as precision falls; plain FP32 never beats TF32 tensor cores
        assert g.fp32_tflops <= g.tf32_tflops < g.bf16_tflops
        if g.fp8_tflops is not None:
            assert g.fp8_tflops == pytest.approx(2 * g.bf16_tflops, rel=0.02)


def test_required_gpus_are_in_the_table() -> None:
    for key in (
        "a100-sxm4-40gb", "a100-sxm4-80gb", "a100-pcie-40gb", "a100-pcie-80gb",
        "h100-sxm", "h100-pcie", "h100-nvl", "h200-sxm", "h200-nvl",
        "l40s", "l4", "a10", "b200", "rtx-4090", "rtx-5090",
    ):  # fmt: skip
        _gpu(key)


@pytest.mark.parametrize(
    ("key", "printed_sparse"),
    [
        # the sparse figures NVIDIA prints ("with sparsity"); dense is half
        ("h100-sxm", {"tf32": 989, "bf16": 1979, "fp16": 1979, "fp8": 3958}),
        ("h200-sxm", {"tf32": 989, "bf16": 1979, "fp16": 1979, "fp8": 3958}),
        ("h100-pcie", {"tf32": 756, "bf16": 1513, "fp16": 1513, "fp8": 3026}),
        ("h100-nvl", {"tf32": 835, "bf16": 1671, "fp16": 1671, "fp8": 3341}),
        ("h200-nvl", {"tf32": 835, "bf16": 1671, "fp16": 1671, "fp8": 3341}),
        ("l4", {"tf32": 120, "bf16": 242, "fp16": 242, "fp8": 485}),
        ("b200", {"tf32": 2200, "bf16": 4500, "fp16": 4500, "fp8": 9000}),
    ],
)
def test_hopper_and_later_figures_are_dense_not_sparse(key: str, printed_sparse: dict[str, float]) -> None:
    gpu = _gpu(key)
    for dtype, sparse in printed_sparse.items():
        dense = dense_peak_tflops(gpu, dtype)
        assert dense == sparse / 2, (key, dtype)


def test_h100_and_h200_headline_values() -> None:
    for key in ("h100-sxm", "h200-sxm"):
        gpu = _gpu(key)
        assert dense_peak_tflops(gpu, "bf16") == 989.5
        assert dense_peak_tflops(gpu, "fp8") == 1979.0
        assert dense_peak_tflops(gpu, "tf32") == 494.5
        assert dense_peak_tflops(gpu, "fp32") == 67.0
    assert peak_bandwidth_gbs(_gpu("h100-sxm")) == 3350.0
    assert peak_bandwidth_gbs(_gpu("h200-sxm")) == 4800.0


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
        ("NVIDIA A100-PCIE-40GB", "a100-pcie-40gb"),
        ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("NVIDIA H200", "h200-sxm"),
        ("NVIDIA H200 NVL", "h200-nvl"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA A10", "a10"),
        ("NVIDIA B200", "b200"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("NVIDIA GeForce RTX 5090", "rtx-5090"),
        # older drivers left out "NVIDIA "; case and spacing do not matter
        ("A100-SXM4-40GB", "a100-sxm4-40gb"),
        ("  nvidia   h200  nvl ", "h200-nvl"),
        ("NVIDIA A100-PCIe-40GB", "a100-pcie-40gb"),
    ],
)
def test_variant_names_map_to_their_own_row(name: str, key: str) -> None:
    gpu = match_gpu(name)
    assert gpu is not None and gpu.key == key


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA A100",  # which one? 40/80 GB, SXM/PCIe differ in bandwidth
        "NVIDIA A10G",  # AWS variant, no NVIDIA datasheet
        "NVIDIA A10M",
        "NVIDIA A100-SXM-64GB",
        "NVIDIA H100",  # PCI 0x2339, not the 80GB HBM3 SXM board
        "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
        "NVIDIA A100-SXM4-40GB MIG 3g.20gb",
        "NVIDIA H800",
        "NVIDIA H20",
        "NVIDIA GH200 480GB",
        "NVIDIA H200 NVL2",
        "NVIDIA L40",
        "NVIDIA GeForce RTX 4090 D",
        "NVIDIA GeForce RTX 4090 Laptop GPU",
        "NVIDIA GeForce RTX 5090 D",
        "NVIDIA GeForce RTX 409",
        "NVIDIA GB200",
        "Tesla T4",
        "AMD Instinct MI300X",
        "",
        "H100",
    ],
)
def test_unknown_or_ambiguous_names_match_nothing(name: str) -> None:
    assert match_gpu(name) is None


def test_no_prefix_or_substring_matching() -> None:
    assert match_gpu("NVIDIA L4") is _gpu("l4") and match_gpu("NVIDIA L40S") is _gpu("l40s")
    assert match_gpu("NVIDIA H200 NVL") is _gpu("h200-nvl") and match_gpu("NVIDIA H200") is _gpu("h200-sxm")
    assert match_gpu("NVIDIA H100 NVL") is not match_gpu("NVIDIA H100 PCIe")


def test_a10_a100_and_a10g_are_told_apart() -> None:
    assert match_gpu("NVIDIA A10") is _gpu("a10")
    assert match_gpu("NVIDIA A10G") is None
    assert match_gpu("NVIDIA A100") is None
    assert match_gpu("NVIDIA A100-SXM4-80GB") is _gpu("a100-sxm4-80gb")
    assert dense_peak_tflops(_gpu("a10"), "bf16") == 125.0
    assert dense_peak_tflops(_gpu("a100-sxm4-80gb"), "bf16") == 312.0


def test_sm_count_must_agree_when_given() -> None:
    assert match_gpu("NVIDIA H200", 132) is _gpu("h200-sxm")
    assert match_gpu("NVIDIA H200", None) is _gpu("h200-sxm")
    assert match_gpu("NVIDIA H200", 16) is None  # a MIG slice reporting the board's name
    assert match_gpu("NVIDIA H100 PCIe", 114) is _gpu("h100-pcie")
    assert match_gpu("NVIDIA H100 PCIe", 132) is None
    choice = resolve_peak("NVIDIA H200", 16, "bf16")
    assert choice.value is None and choice.reason is not None and "16 SMs" in choice.reason


def test_unknown_gpu_is_reported_as_unknown_with_no_number() -> None:
    for name in ("NVIDIA A10G", "Some Future GPU", None, ""):
        choice = resolve_peak(name, None, "bfloat16")
        assert choice.value is None and not choice.known
        assert choice.origin == "unknown" and choice.gpu is None
        assert choice.source.startswith("unknown: ") and choice.reason
        assert "--peak-tflops" in choice.reason
        assert "unknown" in choice.describe()
        bw = resolve_bandwidth(name, None)
        assert bw.value is None and bw.origin == "unknown" and bw.unit == "GB/s"
    assert "'Some Future GPU'" in (resolve_peak("Some Future GPU", None, "bf16").reason or "")


def test_missing_dtype_on_a_known_gpu_is_unknown_too() -> None:
    choice = resolve_peak("NVIDIA A100-SXM4-80GB", 108, "float8_e4m3fn")  # A100 has no FP8
    assert choice.value is None and choice.origin == "unknown" and choice.gpu is _gpu("a100-sxm4-80gb")
    int8 = resolve_peak("NVIDIA H200", 132, "int8")  # no dtype row: unknown, not an exception
    assert int8.value is None and int8.reason is not None and "int8" in int8.reason


def test_table_choice_says_which_entry_and_source() -> None:
    choice = resolve_peak("NVIDIA H100 80GB HBM3", 132, "torch.bfloat16")
    gpu = _gpu("h100-sxm")
    assert choice.value == 989.5 and choice.unit == "TFLOP/s" and choice.origin == "table"
    assert choice.source == f"table: {gpu.label} ({gpu.source})"
    assert choice.dtype == "bf16" and choice.gpu is gpu and choice.known
    assert "989.5 TFLOP/s" in choice.describe()
    bw = resolve_bandwidth("NVIDIA H100 80GB HBM3", 132)
    assert bw.value == 3350.0 and bw.source == f"table: {gpu.label} ({gpu.source})"


def test_override_wins_and_says_so() -> None:
    known = resolve_peak("NVIDIA H200", 132, "bf16", override_tflops=700.0)
    assert known.value == 700.0 and known.origin == "override" and known.source == "override"
    assert known.gpu is _gpu("h200-sxm")  # still identified, so a report can show both
    unknown = resolve_peak("Some Future GPU", None, "bf16", override_tflops=1234.5)
    assert unknown.value == 1234.5 and unknown.origin == "override" and unknown.gpu is None
    bw = resolve_bandwidth("Some Future GPU", None, override_gbs=2000.0)
    assert bw.value == 2000.0 and bw.origin == "override"
    for bad in (0.0, -5.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="positive"):
            resolve_peak("NVIDIA H200", 132, "bf16", override_tflops=bad)
        with pytest.raises(ValueError, match="positive"):
            resolve_bandwidth("NVIDIA H200", 132, override_gbs=bad)


@pytest.mark.parametrize(
    ("alias", "canon"),
    [
        ("bfloat16", "bf16"),
        ("bf16", "bf16"),
        ("torch.bfloat16", "bf16"),
        ("BF16", "bf16"),
        ("float16", "fp16"),
        ("half", "fp16"),
        ("torch.float16", "fp16"),
        ("fp16", "fp16"),
        ("float32", "fp32"),
        ("torch.float32", "fp32"),
        ("float", "fp32"),
        ("fp32", "fp32"),
        ("tf32", "tf32"),
        ("float8", "fp8"),
        ("fp8", "fp8"),
        ("float8_e4m3fn", "fp8"),
        ("torch.float8_e5m2", "fp8"),
    ],
)
def test_dtype_aliases(alias: str, canon: str) -> None:
    assert canonical_dtype(alias) == canon


def test_float32_means_plain_fp32_not_tf32() -> None:
    h100 = _gpu("h100-sxm")
    assert dense_peak_tflops(h100, "float32") == 67.0
    assert dense_peak_tflops(h100, "tf32") == 494.5
    assert resolve_peak("NVIDIA H100 80GB HBM3", None, "torch.float32").value == 67.0


def test_unknown_dtype_name_raises_in_the_direct_api() -> None:
    with pytest.raises(ValueError, match="unknown dtype"):
        canonical_dtype("int8")
    with pytest.raises(ValueError, match="unknown dtype"):
        dense_peak_tflops(_gpu("h100-sxm"), "float8_e4m3fnuz")  # AMD's FP8 flavour


def test_dtypes_constant_matches_the_columns() -> None:
    assert DTYPES == ("fp32", "tf32", "bf16", "fp16", "fp8")
    for g in GPU_PEAKS:
        for d in DTYPES:
            assert dense_peak_tflops(g, d) == g.dense_tflops(d)


def test_docs_show_the_table_as_it_is() -> None:
    doc = DOC.read_text()
    assert peak_table_markdown() in doc, "docs/gpu-peaks.md is out of step: paste peak_table_markdown()"
    assert sources_markdown() in doc, "docs/gpu-peaks.md is out of step: paste sources_markdown()"


def test_a_real_h200_export_matches_the_h200_row(matmul_export: Path) -> None:
    conn = sqlite3.connect(f"file:{matmul_export}?mode=ro", uri=True)
    try:
        name, sms, bandwidth = conn.execute(
            "SELECT name, smCount, memoryBandwidth FROM TARGET_INFO_GPU"
        ).fetchone()
    finally:
        conn.close()
    gpu = match_gpu(name, sms)
    assert gpu is _gpu("h200-sxm")
    # nsys computes bandwidth from memory clock and bus width (bytes/s); the datasheet rounds it
    assert bandwidth / 1e9 == pytest.approx(gpu.memory_bandwidth_gbs, rel=0.01)
