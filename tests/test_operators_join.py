"""Operators of the torch.profiler pass joined to the nsys pass's kernels, on a real GPU run:
`perfctl capture --model deepseek-ocr2-tiny --device cuda --num-pages 2 --max-new-tokens 8 --tool all`
on an H100 (tests/fixtures/h100-tiny-ocr2-all: the export, the manifest, the torch pass's operators)."""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path

from perfctl.analysis.operators import cxx_demangle
from perfctl.commands.analyze import analyze_path

RUN = Path(__file__).parent / "fixtures" / "h100-tiny-ocr2-all"


def _run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(RUN, run, ignore=shutil.ignore_patterns("*.xz"))
    with lzma.open(RUN / "run.sqlite.xz") as src, (run / "run.sqlite").open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return run


def test_operator_kernels_are_found_in_the_nsys_stages(tmp_path: Path) -> None:
    analysis = analyze_path(_run_folder(tmp_path)).analysis
    stages = analysis["operators"]["stages"]
    for stage, (matched, total, same_calls) in {
        "vision": (12, 14, 12),
        "prefill": (22, 23, 22),
        "decode": (18, 18, 17),
    }.items():
        kernels = [k for op in stages[stage]["top"] for k in op["kernels"]]
        assert len(kernels) == total
        assert sum(k["nsys_time_ns"] is not None for k in kernels) == matched, stage
        # the same workload ran in both passes: a matched kernel was launched as often in each
        assert sum(k["nsys_calls"] == k["calls"] for k in kernels) == same_calls, stage
    # work outside every stage has no nsys stage to be found in
    assert all(k["nsys_time_ns"] is None for op in stages["other"]["top"] for k in op["kernels"])


def test_the_profilers_demangling_is_reproduced() -> None:
    mangled = (
        "_ZN2at6native18elementwise_kernelILi128ELi4EZNS0_22gpu_kernel_impl_nocastIZZZNS0_23direct_copy_"
        "kernel_cudaERNS_18TensorIteratorBaseEENKUlvE1_clEvENKUlvE12_clEvEUlN3c108BFloat16EE_EEvS4_RKT_EUliE_"
        "EEviT1_"
    )
    demangled = cxx_demangle(mangled)
    assert demangled is not None
    assert demangled.startswith(
        "void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast"
    )
    assert "{lambda()#3}" in demangled  # the C++ ABI spelling torch.profiler shows, not nsys's
    assert cxx_demangle("nvjet_sm90_tst_64x8_64x16_4x1_v_bz_TNT") is None  # not mangled
