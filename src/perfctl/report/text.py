"""A short terminal summary of an analysis."""

from __future__ import annotations

from typing import Any

from perfctl.report.formatting import count, ms


def render_text(analysis: dict[str, Any]) -> str:
    lines = []
    export = analysis["export"]
    gpus = ", ".join(g.get("name", "?") for g in export["gpus"]) or "no GPU in the export"
    lines.append(
        f"export {export['path']} (nsys {export['nsys_version']}, schema {export['schema_version']}; {gpus})"
    )
    for warning in analysis["warnings"]:
        lines.append(f"warning: {warning}")
    lines.append(
        f"{'stage':<10}{'instances':>10}{'wall':>16}{'kernels':>10}{'kernel time':>16}{'GPU busy':>16}"
    )
    for s in analysis["stages"]:
        lines.append(
            f"{s['stage']:<10}{count(s['instances']):>10}{ms(s['wall_ns']):>16}"
            f"{count(s['kernel_count']):>10}{ms(s['kernel_time_ns']):>16}{ms(s['gpu_busy_ns']):>16}"
        )
    return "\n".join(lines)
