"""What the untrusted-export tests share: copies of a real export changed through SQLite itself, the CLI
run on them, and the checks every such run must pass (exit code, one line, no traceback, the input
unchanged)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import run_perfctl


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def copy(export: Path, target: Path) -> Path:
    shutil.copyfile(export, target)
    return target


def allow_null_timestamps(export: Path, table: str) -> None:
    """Drop NOT NULL from `table`'s start and end, as a writer other than nsys could have left them
    (nsys's schema forbids NULL there; the rows' records do not change)."""
    conn = sqlite3.connect(export)
    try:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        loosened = re.sub(r"\b(start|end)(\s+INTEGER)\s+NOT NULL", r"\1\2", sql)
        assert loosened != sql
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (loosened, table))
        conn.commit()
    finally:
        conn.close()


def update(export: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    with sqlite3.connect(export) as conn:
        for sql, args in statements:
            assert conn.execute(sql, args).rowcount == 1, sql
    conn.close()


def delete_rows(export: Path, rows: dict[str, list[int]]) -> None:
    with sqlite3.connect(export) as conn:
        for table, rowids in rows.items():
            conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", [(r,) for r in rowids])
    conn.close()


def analyze_json(
    export: Path, out: Path, *options: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`perfctl analyze EXPORT --format json [OPTIONS]` through the CLI; the export must come out
    unchanged, and stderr holds no traceback."""
    before = sha256(export)
    proc = run_perfctl("analyze", str(export), "--format", "json", "--out-dir", str(out), *options)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert sha256(export) == before, "the export was changed"
    analysis = json.loads(proc.stdout) if proc.returncode == 0 else {}
    return proc, analysis


def refused(export: Path, out: Path) -> str:
    """`perfctl analyze` refusing `export` as bad input: exit 2, one line on stderr (returned), no
    traceback, the export unchanged, no analysis written."""
    proc, _ = analyze_json(export, out)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfctl: error: "), proc.stderr
    assert not (out / "analysis.json").exists()
    return lines[0]


def without_path_and_warnings(analysis: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: v for k, v in analysis.items() if k != "warnings"},
        # where the export was read from (its path, and `source`: which file and why) names the file
        "export": {**analysis["export"], "path": None, "source": None},
    }


DURATION_KEYS = re.compile(r"(_ns|_time|wall|busy|span)$")


def negative_durations(value: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Every negative number under a duration's key, at any depth (launch-to-start delays may be
    negative: a kernel's start is measured from its launch call's, on another clock)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k != "launch_to_start_ns":
                yield from negative_durations(v, (*path, str(k)))
    elif isinstance(value, list):
        for v in value:
            yield from negative_durations(v, path)
    elif isinstance(value, int | float) and value < 0 and any(DURATION_KEYS.search(k) for k in path):
        yield f"{'.'.join(path)}={value}"
