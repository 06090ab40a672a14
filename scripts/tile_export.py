"""Make a large nsys export from a real one by tiling it in time (for benchmarks).

Copy k (k = 1..N-1) of the events is shifted by k x (the export's time span + 1 ms), and its CUDA
correlation ids by k x (largest id + 1), so every kernel still matches its own launch, and every
launch still lies inside the copies of the NVTX ranges it lay in. Domain create/destroy events are
not copied (one domain per process, as in a real capture). ANALYSIS_DETAILS keeps the first copy's
session, so every later copy ends past the recorded session end: an inconsistent export on purpose
(the one of issue 14), which `nsys stats` counts as recorded and `perfctl analyze` too, warning that
it is inconsistent (tests/test_session_end.py). It is a valid export for both tools.

    python scripts/tile_export.py BASE.sqlite OUT.sqlite --kernels 2000000
"""

from __future__ import annotations

import argparse
import math
import shutil
import sqlite3
from pathlib import Path

TIMED_TABLES = (
    "NVTX_EVENTS",
    "CUPTI_ACTIVITY_KIND_KERNEL",
    "CUPTI_ACTIVITY_KIND_RUNTIME",
    "CUPTI_ACTIVITY_KIND_MEMCPY",
    "CUPTI_ACTIVITY_KIND_MEMSET",
    "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION",
)


def tile(base: Path, out: Path, copies: int) -> int:
    """Write `copies` tiles of `base` to `out`; returns the number of kernels in `out`."""
    shutil.copyfile(base, out)
    conn = sqlite3.connect(out)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    present = [t for t in TIMED_TABLES if t in tables]
    lo = min(conn.execute(f"SELECT min(start) FROM {t}").fetchone()[0] or 0 for t in present)
    hi = max(conn.execute(f"SELECT max(coalesce(end, start)) FROM {t}").fetchone()[0] or 0 for t in present)
    span = hi - lo + 1_000_000
    corr = (
        max(
            conn.execute(f"SELECT coalesce(max(correlationId), 0) FROM {t}").fetchone()[0]
            for t in present
            if any(c[1] == "correlationId" for c in conn.execute(f"PRAGMA table_info({t})"))
        )
        + 1
    )
    for table in present:
        cols = [c[1] for c in conn.execute(f"PRAGMA table_info({table})")]
        last = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
        where = f"rowid <= {last}" + (" AND eventType NOT IN (75, 76)" if table == "NVTX_EVENTS" else "")
        for k in range(1, copies):
            exprs = []
            for c in cols:
                if c in ("start", "end"):
                    exprs.append(f"{c} + {k * span}")
                elif c == "correlationId":
                    exprs.append(f"{c} + {k * corr}")
                else:
                    exprs.append(c)
            names, values = ", ".join(cols), ", ".join(exprs)
            conn.execute(f"INSERT INTO {table} ({names}) SELECT {values} FROM {table} WHERE {where}")
        conn.commit()
    kernels = int(conn.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0])
    conn.execute("VACUUM")
    conn.close()
    return kernels


def copies_for(base: Path, kernels: int) -> int:
    with sqlite3.connect(f"file:{base}?mode=ro", uri=True) as conn:
        have = conn.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0]
    if not have:
        raise SystemExit(f"{base} has no kernels to tile")
    return max(1, math.ceil(kernels / have))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--kernels", type=int, default=2_000_000, help="at least this many kernels")
    args = parser.parse_args()
    n = tile(args.base, args.out, copies_for(args.base, args.kernels))
    print(f"{args.out}: {n:,} kernels")


if __name__ == "__main__":
    main()
