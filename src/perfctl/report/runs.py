"""`perfctl runs` as a terminal table: one line per recorded run, its failure reason below it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perfctl.report.formatting import count, ms, pct

COLUMNS = (
    "run id",
    "started (UTC)",
    "status",
    "model",
    "GPU / device",
    "pages",
    "vision",
    "prefill",
    "decode",
    "page MFU",
    "kernels",
)


def _cells(run: dict[str, Any]) -> list[str]:
    started = (run.get("started_at") or "–")[:16].replace("T", " ")
    pages = f"{count(run.get('pages_completed'))}/{count(run.get('pages_expected'))}"
    return [
        str(run["run_id"]),
        started,
        str(run.get("status") or "–"),
        str(run.get("model") or "–"),
        str(run.get("gpu") or run.get("device") or "–"),
        pages,
        *(ms(run.get(f"{stage}_mean_ns")) for stage in ("vision", "prefill", "decode")),
        pct(run.get("page_mfu")),
        count(run.get("kernel_count")),
    ]


def render_runs_text(runs: list[dict[str, Any]], profiles: Path, filtered: bool = False) -> str:
    if not runs:
        if filtered:
            return f"no run recorded in {profiles} matches"
        return f"no runs recorded in {profiles} (captures and analyses record themselves there, in index.db)"
    rows = [_cells(r) for r in runs]
    widths = [max(len(x) for x in col) for col in zip(COLUMNS, *rows, strict=True)]
    lines = [
        "stage times: mean per page (the clean timing pass when the run has one); — before an analysis",
        "  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip(),
    ]
    for run, row in zip(runs, rows, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if run.get("reason"):
            lines.append(f"    reason: {' '.join(str(run['reason']).split())}")
    return "\n".join(lines)
