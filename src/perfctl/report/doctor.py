"""`perfctl doctor`'s text: one line per check (the fix below a warning or a failure), then the counts."""

from __future__ import annotations

from perfctl.commands.doctor import CheckResult, report_json


def render_doctor_text(results: list[CheckResult]) -> str:
    lines = []
    for r in results:
        lines.append(f"{r.status:<5} {r.name:<13} {r.found}")
        if r.fix and r.status in ("warn", "fail"):
            lines.append(f"{'':<19}fix: {r.fix}")
    counts = report_json(results)["counts"]
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)
