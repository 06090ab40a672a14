"""Independent references for the Nsight Compute tests: ncu's own CSV of a report (`ncu --import
--csv --page raw --print-units base`), read here without perfctl, and an nsys export's kernel counts
per stage and launch configuration by plain SQL (no perfctl reader)."""

from __future__ import annotations

import csv
import io
import lzma
import re
import sqlite3
from collections import defaultdict
from pathlib import Path

NVTX_COLUMN = "thread Domain:Push/Pop_Range:PL_Type:PL_Value:CLR_Type:Color:Msg_Type:Msg"
STAGES = ("vision", "prefill", "decode")
# the FLOP counters and weights, spelled out again here (docs/analysis-json.md, KernelFlops)
FLOPS = {
    "fp64": {"dadd": 1, "dmul": 1, "dfma": 2},
    "fp32": {"fadd": 1, "fmul": 1, "ffma": 2},
    "fp16": {"hadd": 1, "hmul": 1, "hfma": 2},
}
TENSOR = {
    "fp64_tensor": "sm__ops_path_tensor_src_fp64.sum",
    "tf32_tensor": "sm__ops_path_tensor_src_tf32_dst_fp32.sum",
    "fp16_tensor": "sm__ops_path_tensor_src_fp16.sum",
    "bf16_tensor": "sm__ops_path_tensor_src_bf16_dst_fp32.sum",
    "fp8_tensor": "sm__ops_path_tensor_src_fp8.sum",
}


def ncu_csv_rows(path: Path) -> list[dict[str, str]]:
    """ncu's CSV rows (a header, a units row, then one row per result), numbers without separators."""
    if path.suffix == ".xz":
        with lzma.open(path, "rt") as f:
            raw = f.read()
    else:
        raw = path.read_text()
    rows = list(csv.reader(io.StringIO(raw)))
    header = rows[0]
    keep = {"Grid Size", "Block Size", "Kernel Name", NVTX_COLUMN}
    return [
        {h: v if h in keep else v.replace(",", "") for h, v in zip(header, r, strict=True)} for r in rows[2:]
    ]


def csv_flops(row: dict[str, str]) -> dict[str, float]:
    out = {
        precision: sum(
            float(row[f"smsp__sass_thread_inst_executed_op_{op}_pred_on.sum"]) * w for op, w in ops.items()
        )
        for precision, ops in FLOPS.items()
    }
    out |= {precision: float(row[metric]) for precision, metric in TENSOR.items()}
    out["total"] = sum(out.values())
    return out


def csv_stage(row: dict[str, str]) -> str | None:
    """The innermost perfctl stage in a row's push/pop stack ("perfctl:decode:..." entries)."""
    found = re.findall(r'"perfctl:([a-z]+):', row[NVTX_COLUMN])
    stages = [name for name in found if name in STAGES]
    return stages[-1] if stages else None


def csv_dims(text: str) -> tuple[int, int, int]:
    x, y, z = (int(v) for v in text.strip("()").split(","))
    return x, y, z


def stage_config_counts(export: Path) -> dict[str, dict[tuple[str, tuple[int, ...], tuple[int, ...]], int]]:
    """stage -> (demangled name, grid, block) -> kernels, by SQL: each kernel's launching runtime call
    (same correlation id and process) inside a perfctl stage range on the same thread."""
    conn = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    text = "coalesce(s.value, e.text)"
    rows = conn.execute(
        f"""SELECT {text}, d.value, k.gridX, k.gridY, k.gridZ, k.blockX, k.blockY, k.blockZ
            FROM CUPTI_ACTIVITY_KIND_KERNEL k
            JOIN CUPTI_ACTIVITY_KIND_RUNTIME r
              ON r.correlationId = k.correlationId AND (r.globalTid >> 24) = (k.globalPid >> 24)
            JOIN NVTX_EVENTS e ON e.globalTid = r.globalTid AND e.start <= r.start AND r.start <= e."end"
            JOIN NVTX_EVENTS dom ON dom.eventType = 75 AND dom.domainId = e.domainId
                 AND (dom.globalTid >> 24) = (e.globalTid >> 24) AND dom.text = 'perfctl'
            LEFT JOIN StringIds s ON s.id = e.textId
            JOIN StringIds d ON d.id = k.demangledName
            WHERE {text} IN ('vision', 'prefill', 'decode')"""
    ).fetchall()
    conn.close()
    out: dict[str, dict[tuple[str, tuple[int, ...], tuple[int, ...]], int]] = {
        s: defaultdict(int) for s in STAGES
    }
    for stage, name, gx, gy, gz, bx, by, bz in rows:
        out[stage][(name, (gx, gy, gz), (bx, by, bz))] += 1
    return out
