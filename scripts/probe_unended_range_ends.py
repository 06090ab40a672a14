"""Where an nsys ends the NVTX ranges a program never ended, capture after capture.

Runs scripts/fixture_programs/unended_ranges.py (a program killed inside its ranges, or with --ending
exit one that exits with them open) under one nsys,
N times, optionally beside CPU-spinning processes, exports each report to SQLite and prints, per
capture, the ranges nsys lost, the end it wrote for the never-ended ones against the session's recorded end
(ANALYSIS_DETAILS.duration) and against every other time the export records after the last ended
event: the diagnostic messages (with their text), and the largest value of every integer column of
every table. It is the evidence behind the never-ended rule in perfctl/nsys_export/nvtx.py.

    python scripts/probe_unended_range_ends.py --nsys PATH [--captures 10] [--spinners 2] [--beside-nsys]
        [--ending kill|exit]

--beside-nsys keeps a second nsys session profiling a sleeping program during every capture.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

PROGRAM = Path(__file__).resolve().parent / "fixture_programs" / "unended_ranges.py"
OPENED = ("outer", "ended", "open_start_end", "open_inner", "open_elsewhere")  # the program's, in order
RANGES = "(59, 60, 70, 71)"  # NVTX push/pop and start/end ranges, registered or not


def _spin() -> None:
    while True:
        pass


def _profile_command(nsys: str, output: Path, *python_args: str) -> list[str]:
    """`nsys profile` of this Python running `python_args`, NVTX traced only, into `output`."""
    return [
        nsys, "profile", "--trace=nvtx", "--sample=none", "--cpuctxsw=none", "--force-overwrite=true",
        "-o", str(output), sys.executable, *python_args,
    ]  # fmt: skip


def _nsys_beside(nsys: str, folder: Path) -> None:
    """Another nsys session, one after another, for as long as the probe runs."""
    index = 0
    while True:
        index += 1
        subprocess.run(
            _profile_command(nsys, folder / f"beside{index % 2}", "-c", "import time; time.sleep(2)"),
            capture_output=True,
            check=False,
            timeout=300,
        )


def _capture(nsys: str, folder: Path, index: int, ending: str) -> Path:
    report = folder / f"run{index}.nsys-rep"
    proc = subprocess.run(
        _profile_command(nsys, report.with_suffix(""), str(PROGRAM), ending),
        capture_output=True,
        check=False,
        timeout=300,
        text=True,
    )
    report.with_suffix(".log").write_text(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    export = report.with_suffix(".sqlite")
    subprocess.run(
        [nsys, "export", "--type", "sqlite", "--force-overwrite=true", "-o", str(export), str(report)],
        capture_output=True,
        check=True,
        timeout=300,
    )
    return export


def _integer_maxima(conn: sqlite3.Connection) -> dict[str, int]:
    """table.column -> the largest integer it holds (ids included: the reader looks for a match)."""
    maxima: dict[str, int] = {}
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for column in [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]:
            (value,) = conn.execute(
                f'SELECT max("{column}") FROM "{table}" WHERE typeof("{column}") = \'integer\''
            ).fetchone()
            if value is not None:
                maxima[f"{table}.{column}"] = int(value)
    return maxima


def describe(export: Path) -> list[str]:
    conn = sqlite3.connect(export)
    duration, start, stop = conn.execute(
        "SELECT duration, startTime, stopTime FROM ANALYSIS_DETAILS"
    ).fetchone()
    ends = [
        int(r[0])
        for r in conn.execute(
            f'SELECT DISTINCT "end" FROM NVTX_EVENTS WHERE eventType IN {RANGES} AND "end" >= ?',
            (duration,),
        )
    ]
    lines = [
        f"{export.name}: duration {duration} (startTime {start}, stopTime {stop}); "
        f"never-ended ranges end at {[e - duration for e in ends]} ns past duration"
    ]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "DIAGNOSTIC_EVENT" in tables:  # (nsys 2022.4 writes none)
        stopped = conn.execute("SELECT count(*) FROM DIAGNOSTIC_EVENT WHERE text = 'Profiling has stopped.'")
        lines[0] += f"; 'Profiling has stopped.' recorded: {stopped.fetchone()[0] > 0}"
    kept = {
        r[0]
        for r in conn.execute(
            f"SELECT coalesce(s.value, e.text) FROM NVTX_EVENTS e LEFT JOIN StringIds s ON s.id = e.textId "
            f"WHERE e.eventType IN {RANGES}"
        )
    }
    lines[0] += f"; ranges lost: {[name for name in OPENED if name not in kept]}"
    if ends == [duration] or not ends:
        return lines
    log = export.with_suffix(".log").read_text().strip().splitlines()
    lines += [f"    nsys profile said: {line[:120]}" for line in log if line.strip()]
    end = max(ends)
    diagnostics = "SELECT timestamp, text FROM DIAGNOSTIC_EVENT ORDER BY timestamp"
    for ts, text in conn.execute(diagnostics) if "DIAGNOSTIC_EVENT" in tables else []:
        lines.append(f"    diagnostic at end{ts - end:+d} ns: {str(text)[:90]}")
    for name, value in sorted(_integer_maxima(conn).items()):
        if abs(value - end) <= 2 * (end - duration):
            lines.append(f"    max {name} = end{value - end:+d} ns")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsys", required=True)
    parser.add_argument("--captures", type=int, default=10)
    parser.add_argument("--spinners", type=int, default=2, help="CPU-spinning processes beside")
    parser.add_argument("--beside-nsys", action="store_true", help="a second nsys session beside")
    parser.add_argument("--ending", choices=("kill", "exit"), default="kill", help="how the program stops")
    parser.add_argument("--keep", type=Path, help="keep the reports and exports in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.spinners)]
        if args.beside_nsys:
            spinners.append(
                multiprocessing.Process(target=_nsys_beside, args=(args.nsys, Path(tmp)), daemon=True)
            )
        for s in spinners:
            s.start()
        try:
            for index in range(args.captures):
                for line in describe(_capture(args.nsys, Path(tmp), index, args.ending)):
                    print(line, flush=True)
        finally:
            for s in spinners:
                s.terminate()


if __name__ == "__main__":
    main()
