"""Kernel categories from names: real kernel names seen in the H200/H100 captures, one per rule."""
# ruff: noqa: E501  (real kernel names are long)

from __future__ import annotations

import pytest

from perfctl.analysis.analyze import analyze_export
from perfctl.analysis.kernel_categories import CATEGORIES, categorize


@pytest.mark.parametrize(
    "name, category",
    [
        (
            "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevComm *, unsigned long, ncclWork *)",
            "communication",
        ),
        (
            "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 64, 128, 4>>(Flash_fwd_params)",
            "attention",
        ),
        (
            "fmha_cutlassF_bf16_aligned_64x128_rf_sm80(PyTorchMemEffAttention::AttentionKernel<...>::Params)",
            "attention",
        ),
        ("nvjet_sm90_tst_64x8_64x16_4x1_v_bz_TNT", "gemm"),
        (
            "sm80_xmma_gemm_f32f32_f32f32_f32_nn_n_tilesize64x64x8_stage3_warpsize1x4x1_ffma_aligna4_alignc4_execute_kernel__5x_cublas",
            "gemm",
        ),
        (
            "void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast<at::native::direct_copy_kernel_cuda(at::TensorIteratorBase &)>>(int, T3)",
            "copy",
        ),
        (
            "void at::native::<unnamed>::CatArrayBatchedCopy<at::native::<unnamed>::OpaqueType<2>, unsigned int, 4, 64, 64>(...)",
            "copy",
        ),
        (
            "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::func_wrapper_t<float, sum_functor>>>(T3)",
            "reduction",
        ),
        (
            "void at::native::<unnamed>::cunn_SoftMaxForward<4, float, float, float, at::native::<unnamed>::SoftMaxForwardEpilogue>(T3 *, const T1 *, int)",
            "reduction",
        ),
        (
            "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<long>, std::array<char *, 1>>(int, T2, T3)",
            "elementwise",
        ),
        (
            "void at::native::vectorized_gather_kernel<16, long>(char *, char *, long *, int, long, long, long, long, bool)",
            "elementwise",
        ),
        ("some_custom_kernel", "other"),
    ],
)
def test_rules(name: str, category: str) -> None:
    assert categorize(name) == category


def test_every_stage_splits_its_kernel_time_by_category(tiny_gpu_export) -> None:  # type: ignore[no-untyped-def]
    analysis = analyze_export(tiny_gpu_export)
    for stage in analysis["stages"]:
        by_category = stage["kernel_time_by_category"]
        assert set(by_category) == set(CATEGORIES)
        # distinct kernels: the categories add up to the stage's kernel time (no nested same-name ranges)
        assert sum(by_category.values()) == stage["kernel_time_ns"]
        assert all(k["category"] in CATEGORIES for k in stage["top_kernels"])
    decode = next(s for s in analysis["stages"] if s["stage"] == "decode")
    assert decode["kernel_time_by_category"]["gemm"] > 0
