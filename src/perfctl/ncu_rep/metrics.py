"""The Nsight Compute metrics perfctl collects and how it reads each kernel's work from them.

perfctl's default collection (`PERFCTL_SECTIONS` plus `PERFCTL_METRICS`) is the SpeedOfLight,
Occupancy and LaunchStats sections and the counters of executed floating-point work and DRAM traffic.
Any other section set a user asks for gets `PERFCTL_METRICS` added, so every report perfctl makes can
be read the same way.

FLOPs by precision, as ncu's own roofline sections count them: on the CUDA cores, per thread
instruction with the predicate on, an add or multiply is 1 operation and a fused multiply-add 2; on
the tensor cores, `sm__ops_path_tensor_src_<type>` already counts operations (a 4096^3 bf16 matrix
multiply on an H200 read exactly 2 * 4096^3 from `sm__ops_path_tensor_src_bf16_dst_fp32.sum`,
../shared/docs/h200-production.md and tests/test_ncu_report.py).
"""

from __future__ import annotations

from typing import Final

# precision -> (metric, operations per count)
FLOP_COUNTERS: Final[dict[str, tuple[tuple[str, float], ...]]] = {
    "fp64": (
        ("smsp__sass_thread_inst_executed_op_dadd_pred_on.sum", 1.0),
        ("smsp__sass_thread_inst_executed_op_dmul_pred_on.sum", 1.0),
        ("smsp__sass_thread_inst_executed_op_dfma_pred_on.sum", 2.0),
    ),
    "fp32": (
        ("smsp__sass_thread_inst_executed_op_fadd_pred_on.sum", 1.0),
        ("smsp__sass_thread_inst_executed_op_fmul_pred_on.sum", 1.0),
        ("smsp__sass_thread_inst_executed_op_ffma_pred_on.sum", 2.0),
    ),
    "fp16": (
        ("smsp__sass_thread_inst_executed_op_hadd_pred_on.sum", 1.0),
        ("smsp__sass_thread_inst_executed_op_hmul_pred_on.sum", 1.0),
        ("smsp__sass_thread_inst_executed_op_hfma_pred_on.sum", 2.0),
    ),
    "fp64_tensor": (("sm__ops_path_tensor_src_fp64.sum", 1.0),),
    "tf32_tensor": (("sm__ops_path_tensor_src_tf32_dst_fp32.sum", 1.0),),
    "fp16_tensor": (("sm__ops_path_tensor_src_fp16.sum", 1.0),),
    "bf16_tensor": (("sm__ops_path_tensor_src_bf16_dst_fp32.sum", 1.0),),
    "fp8_tensor": (("sm__ops_path_tensor_src_fp8.sum", 1.0),),
}

DURATION = "gpu__time_duration.sum"
DRAM_READ = "dram__bytes_read.sum"
DRAM_WRITE = "dram__bytes_write.sum"
SM_THROUGHPUT = "sm__throughput.avg.pct_of_peak_sustained_elapsed"
MEMORY_THROUGHPUT = "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed"
DRAM_THROUGHPUT = "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed"
ACHIEVED_OCCUPANCY = "sm__warps_active.avg.pct_of_peak_sustained_active"
SM_CLOCK = "sm__cycles_elapsed.avg.per_second"
MAX_SM_CLOCK_KHZ = "device__attribute_max_gpu_frequency_khz"
DEVICE_NAME = "device__attribute_display_name"
SM_COUNT = "device__attribute_multiprocessor_count"
REPLAY_PASSES = "profiler__replayer_passes"
GRID = ("launch__grid_dim_x", "launch__grid_dim_y", "launch__grid_dim_z")
BLOCK = ("launch__block_dim_x", "launch__block_dim_y", "launch__block_dim_z")

# What `perfctl capture --ncu-set` takes: perfctl's own collection first (the default), then ncu's sets.
PERFCTL_SET: Final = "perfctl"
NCU_SETS: Final = (PERFCTL_SET, "basic", "detailed", "full", "roofline")
# ncu's --clock-control: base (ncu's default) locks the GPU's clocks at base for repeatable counters
NCU_CLOCKS: Final = ("base", "none")

PERFCTL_SECTIONS: Final = ("SpeedOfLight", "Occupancy", "LaunchStats")
PERFCTL_METRICS: Final = (
    *(metric for counters in FLOP_COUNTERS.values() for metric, _ in counters),
    DURATION,
    DRAM_READ,
    DRAM_WRITE,
    SM_THROUGHPUT,
    MEMORY_THROUGHPUT,
    DRAM_THROUGHPUT,
    ACHIEVED_OCCUPANCY,
    SM_CLOCK,
)

# The bound of a kernel, from its compute (SM_THROUGHPUT) and memory (MEMORY_THROUGHPUT) throughput as
# percentages of their peaks, the metrics and threshold of ncu's own SpeedOfLight "Bottleneck" rule
# (sections/SpeedOfLight.py, ncu 2025.3.1: latency_bound_threshold = 60): when neither reaches 60 % the
# kernel keeps neither unit busy (too few warps, too little work: a latency issue); otherwise it is
# bound by the unit nearer its peak.
LATENCY_BOUND_PCT: Final = 60.0
