"""The driver's per-page records (`pages.jsonl`): one JSON object per finished page, appended as the
page finishes so that a crash keeps the pages already done. Warm-up pages are recorded too, marked
`"warmup": true`, and left out of every count and figure. Written by `perfctl.driver`, read by the
capture (how many pages finished) and by the analysis (the clean timing pass).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def append_page_record(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as out:
        out.write(json.dumps(record) + "\n")


def read_page_records(path: Path) -> list[dict[str, Any]]:
    """The measured pages' records, warm-up pages left out; [] when there is no file."""
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if not r.get("warmup")]
