"""The driver's per-page records (`pages.jsonl`): one JSON object per finished page (with --batch-size
per finished batch, its pages in its `rows`), appended as the page finishes so that a crash keeps the
pages already done. Warm-up pages are recorded too, marked
`"warmup": true`, and left out of every count and figure. Written by `perfctl.driver`, read by the
capture (how many pages finished) and by the analysis (the clean timing pass).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def append_page_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record as one line, whole or not at all: one write() of the complete line, and a
    write that fails part-way (a full disk) is cut back off before the error is raised."""
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        written = 0
        try:
            while written < len(line):
                written += os.write(fd, line[written:])
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def read_page_records(path: Path) -> list[dict[str, Any]]:
    """The measured pages' records, warm-up pages left out; [] when there is no file. A last line
    without its newline is a record whose writer died mid-write: it is not a finished page."""
    if not path.is_file():
        return []
    lines = path.read_text().split("\n")[:-1]  # the part after the last newline is never whole
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if not r.get("warmup")]


def input_index(record: dict[str, Any]) -> Any:
    """Which of the pass's inputs a record's generate call ran: its page's index in the page list, or
    with --batch-size its batch's index in the batch list (`batch_index`); None in neither."""
    return record.get("page_index", record.get("batch_index"))


def stage_time_key(records: list[dict[str, Any]]) -> str:
    """Which stage clock a pass's records are read by: `stage_gpu_ns` (CUDA events, the GPU's clock)
    when every record has it, else `stage_wall_ns` (the host clock between synchronized edges), so that
    MFU and throughput divide by the same times."""
    return "stage_gpu_ns" if all(r.get("stage_gpu_ns") for r in records) else "stage_wall_ns"
