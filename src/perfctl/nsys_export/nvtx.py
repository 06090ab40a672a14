"""Load an export's NVTX ranges (a DataFrame: a real export holds thousands, not millions) and the
session's end they are measured against.

Names and domains are resolved the way nsys's own reports resolve them (registered strings first,
a domain by its id within the process), and bounded (`names`). The range rows' timestamps and ids
are checked in SQL as they are read (`checks` has the rules): bad rows are left out and counted, a
range row whose thread, domain or payload is no integer refuses the export.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from perfctl.errors import BadInput
from perfctl.nsys_export.checks import (
    TIMESTAMP_LIMIT,
    TIMESTAMP_LIMIT_TEXT,
    BadRows,
    RowChecks,
    describe_timestamps,
)
from perfctl.nsys_export.columns import read_frame
from perfctl.nsys_export.names import NAME_BYTES, head_sql, read_name, size_sql
from perfctl.nsys_export.schema import ExportSchema

# pandas is imported where it is used: its import takes half a second, which `perfctl analyze`
# spends while the export's readers already decode (nsys_export.windows)
if TYPE_CHECKING:
    import pandas as pd

# nsys's reports match NVTX domains on the pid bits of a serialized globalTid alone
_PID_BITS_MASK = 0x0000FFFFFF000000

RANGE_COLUMNS = [
    "range_id",
    "start",
    "end",
    "thread",
    "domain",
    "name",
    "style",
    "payload",
    "ended_on_other_thread",
]


def _nvtx_text(schema: ExportSchema) -> tuple[str, str, str]:
    """(SQL text expression, join, SQL rowid of the StringIds row it came from or -1) for an NVTX
    row's text: registered string first, as nsys does."""
    if schema.has_column("NVTX_EVENTS", "textId"):
        return (
            "coalesce(s.value, e.text)",
            "LEFT JOIN StringIds AS s ON e.textId = s.id",
            "coalesce(CASE WHEN s.value IS NOT NULL THEN s.rowid END, -1)",
        )
    return "e.text", "", "-1"


def _nvtx_names(conn: sqlite3.Connection, frame: pd.DataFrame) -> list[str]:
    """The names of NVTX rows read as (name: `head_sql`, name_size: `size_sql`, name_row, range_id),
    bounded (`names.read_name`): a long text is hashed from its StringIds row (once per row: ranges
    share their registered strings) or from the event's own text."""
    heads, sizes = frame["name"].tolist(), frame["name_size"].fillna(0).astype(np.int64).tolist()
    string_rows, event_rows = frame["name_row"].tolist(), frame["range_id"].tolist()
    decoded: dict[bytes, str] = {}  # (the ranges of a run share a few names: each decoded once)
    by_string_row: dict[int, str] = {}
    names = []
    for head, size, string_row, event_row in zip(heads, sizes, string_rows, event_rows, strict=True):
        if head is None:
            names.append("")
            continue
        if size <= NAME_BYTES:  # whole: decoded here (bytes that are not UTF-8: read_name refuses)
            name = decoded.get(head)
            if name is None:
                with contextlib.suppress(UnicodeDecodeError):
                    name = decoded[head] = bytes(head).decode("utf-8")
            if name is not None:
                names.append(name)
                continue
        row = int(string_row)
        if row < 0:  # the event's own text
            names.append(read_name(conn, head, size, "NVTX_EVENTS", "text", int(event_row)))
            continue
        if row not in by_string_row:
            by_string_row[row] = read_name(conn, head, size, "StringIds", "value", row)
        names.append(by_string_row[row])
    return names


# An NVTX range row's problems (SQL CASE codes): 1-7 its timestamps cannot be (the row is left out:
# checks.BadRows), 101-103 an id the analysis needs is no integer (the export is refused).
_RANGE_TIMESTAMP_PROBLEMS = {
    1: "NULL",
    2: "not an integer",
    3: "negative",
    4: f"past {TIMESTAMP_LIMIT_TEXT}",
    5: "not an integer",
    6: "end before start",
    7: f"past {TIMESTAMP_LIMIT_TEXT}",
}
_RANGE_ID_PROBLEMS = {101: "globalTid", 102: "domainId", 103: "payload"}  # code -> column


def _range_problem_sql(payload_expr: str) -> str:
    limit = TIMESTAMP_LIMIT
    return f"""CASE
        WHEN typeof(e.globalTid) != 'integer' THEN 101
        WHEN typeof(e.domainId) NOT IN ('integer', 'null') THEN 102
        WHEN typeof({payload_expr}) NOT IN ('integer', 'null') THEN 103
        WHEN e.start IS NULL THEN 1
        WHEN typeof(e.start) != 'integer' THEN 2
        WHEN e.start < 0 THEN 3
        WHEN e.start >= {limit} THEN 4
        WHEN e."end" IS NULL THEN 0
        WHEN typeof(e."end") != 'integer' THEN 5
        WHEN e."end" < e.start THEN 6
        WHEN e."end" >= {limit} THEN 7
        ELSE 0 END"""


def _integer_or(expr: str, otherwise: int | str) -> str:
    """SQL: `expr` where it is an integer, else `otherwise` (so that pandas reads an int64 column)."""
    return f"CASE WHEN typeof({expr}) = 'integer' THEN {expr} ELSE {otherwise} END"


def load_nvtx_ranges(
    conn: sqlite3.Connection, schema: ExportSchema, checks: RowChecks | None = None
) -> pd.DataFrame:
    """One row per NVTX push/pop or start/end range, with its domain name and text resolved.

    As in nsys's reports: a range whose end was never recorded ends at the last NVTX timestamp of
    the export; the domain of a range is the domain-create event with the same domain id in the same
    process; registered strings (`textId`) take precedence over inline `text`. Names are bounded
    (`names`). A range whose timestamps cannot be is left out (`checks`: a few are said in `checks`'s
    warnings, more refuse the export at once); one whose thread, domain or payload is no integer
    refuses the export. With `checks`, also how many ranges end past the session's end.
    """
    import pandas as pd

    if not schema.has("NVTX_EVENTS"):
        return pd.DataFrame(columns=RANGE_COLUMNS)
    pushpop = {schema.event_type("NvtxPushPopRange"), schema.event_type("NvtxtPushPopRange")}
    startend = {schema.event_type("NvtxStartEndRange"), schema.event_type("NvtxtStartEndRange")}
    kinds = ",".join(str(k) for k in sorted(pushpop | startend))
    text_expr, join, string_row = _nvtx_text(schema)
    payload_cols = [
        c
        for c in ("int64Value", "uint64Value", "int32Value", "uint32Value")
        if schema.has_column("NVTX_EVENTS", c)
    ]
    payload_expr = f"coalesce({', '.join('e.' + c for c in payload_cols)})" if payload_cols else "NULL"
    end_tid = "e.endGlobalTid IS NOT NULL" if schema.has_column("NVTX_EVENTS", "endGlobalTid") else "0"
    frame = read_frame(
        schema.path,
        f"""SELECT e.rowid AS range_id, {_integer_or("e.start", -1)} AS start,
                   {_integer_or('e."end"', -1)} AS "end", e."end" IS NULL AS never_ended,
                   e.eventType AS event_type, {_integer_or("e.globalTid", -1)} AS thread,
                   {_integer_or("e.domainId", 0)} AS domain_id,
                   {head_sql(text_expr)} AS name, {size_sql(text_expr)} AS name_size,
                   {string_row} AS name_row, {_integer_or(payload_expr, "NULL")} AS payload,
                   {end_tid} AS ended_on_other_thread, {_range_problem_sql(payload_expr)} AS problem
            FROM NVTX_EVENTS AS e {join}
            WHERE e.eventType IN ({kinds})""",
    )
    if frame.empty:
        return pd.DataFrame(columns=RANGE_COLUMNS)
    frame = _without_bad_ranges(conn, schema, frame, checks, payload_expr)
    if frame.empty:
        return pd.DataFrame(columns=RANGE_COLUMNS)
    frame["name"] = _nvtx_names(conn, frame)
    start, end = frame["start"].to_numpy(np.int64), frame["end"].to_numpy(np.int64)
    never_ended = frame["never_ended"].to_numpy(dtype=bool)
    if never_ended.any():
        last = max(int(start.max()), int(end[~never_ended].max(initial=0)), _last_other_nvtx(conn, kinds))
        frame["end"] = np.where(never_ended, last, end)
    if checks is not None and checks.session_end is not None:
        checks.ranges_past_session_end = int(np.count_nonzero(~never_ended & (end > checks.session_end)))
    frame["style"] = np.where(frame["event_type"].isin(pushpop), "PushPop", "StartEnd")
    frame["ended_on_other_thread"] = frame["ended_on_other_thread"].astype(bool)
    frame["domain"] = _resolve_domains(conn, schema, frame)
    return frame[RANGE_COLUMNS].sort_values(["thread", "start"], kind="stable").reset_index(drop=True)


def _without_bad_ranges(
    conn: sqlite3.Connection,
    schema: ExportSchema,
    frame: pd.DataFrame,
    checks: RowChecks | None,
    payload_expr: str,
) -> pd.DataFrame:
    """The range rows without those whose timestamps cannot be (counted in `checks`, or refused here
    when more than a few and no `checks` takes them); a row with an id that is no integer refuses
    the export."""
    problem = frame["problem"].to_numpy(np.int64)
    if not problem.any():
        return frame
    rowid = frame["range_id"].to_numpy(np.int64)
    fatal = np.flatnonzero(problem >= min(_RANGE_ID_PROBLEMS))
    if len(fatal):
        at = fatal[np.argmin(rowid[fatal])]
        first, column = int(rowid[at]), _RANGE_ID_PROBLEMS[int(problem[at])]
        expr = {"payload": payload_expr}.get(column, f"e.{column}")
        (kind,) = conn.execute(f"SELECT typeof({expr}) FROM NVTX_EVENTS AS e WHERE e.rowid = ?", (first,))
        raise BadInput(
            f"{schema.path} is not a usable nsys export: NVTX_EVENTS rowid {first}: {column} is "
            f"{kind[0]}, not an integer (a thread, domain or payload the analysis needs)"
        )
    bad = problem > 0
    first = int(rowid[bad].min())
    start, start_type, end, end_type = conn.execute(
        'SELECT start, typeof(start), "end", typeof("end") FROM NVTX_EVENTS WHERE rowid = ?', (first,)
    ).fetchone()
    tally = BadRows(
        "NVTX_EVENTS",
        "NVTX ranges",
        examined=len(frame),
        count=int(bad.sum()),
        problems=Counter(_RANGE_TIMESTAMP_PROBLEMS[int(p)] for p in problem[bad].tolist()),
        first=f"{first}: {describe_timestamps(start, start_type, end, end_type, end_optional=True)}",
    )
    if checks is not None:
        checks.nvtx(tally)
    elif not tally.tolerated():
        raise tally.refusal(schema.path)
    return frame[~bad].reset_index(drop=True)


def _last_other_nvtx(conn: sqlite3.Connection, kinds: str) -> int:
    """The last sound timestamp of the NVTX rows that are not ranges (marks, domain events)."""
    sound = f"BETWEEN 0 AND {TIMESTAMP_LIMIT - 1}"
    row = conn.execute(
        f"""SELECT max(CASE WHEN typeof(start) = 'integer' AND start {sound} THEN start END),
                   max(CASE WHEN typeof("end") = 'integer' AND "end" {sound} THEN "end" END)
            FROM NVTX_EVENTS WHERE eventType IS NULL OR eventType NOT IN ({kinds})"""
    ).fetchone()
    return max((int(v) for v in row if v is not None), default=0)


def session_end(conn: sqlite3.Connection, schema: ExportSchema) -> int | None:
    """The end of the capture session on the events' clock, or None where the export does not record
    it soundly. nsys counts event times from the session's start and records the session's length as
    `ANALYSIS_DETAILS.duration`; an export written with `--ts-normalize` (UTC since 1970) or
    `--ts-shift` has every time shifted by `EXPORT_CONFIG_TIME_SHIFT` (META_DATA_EXPORT, nsys 2023.4
    and later; nsys 2022.4 has no such options)."""
    if not schema.has_column("ANALYSIS_DETAILS", "duration"):
        return None
    (duration,) = conn.execute(
        "SELECT max(duration) FROM ANALYSIS_DETAILS WHERE typeof(duration) = 'integer' AND duration > 0"
    ).fetchone()
    if duration is None:
        return None
    shift = 0
    for table in ("META_DATA_EXPORT", "EXPORT_META_DATA"):
        if schema.has_column(table, "name") and schema.has_column(table, "value"):
            row = conn.execute(
                f"SELECT value FROM {table} WHERE name = 'EXPORT_CONFIG_TIME_SHIFT'"
            ).fetchone()
            if row is not None:
                try:
                    shift = int(str(row[0]).strip())
                except ValueError:
                    return None  # (a shift that is no integer: no session end to trust)
    return int(duration) + shift


# nsys 2024.2 records its session's start and stop as diagnostic messages (nsys 2022.4 and 2023.4
# write no DIAGNOSTIC_EVENT table); the stop, where recorded, is at ANALYSIS_DETAILS.duration
SESSION_STARTED, SESSION_STOPPED = "Profiling has started.", "Profiling has stopped."


def session_stop_recorded(conn: sqlite3.Connection, schema: ExportSchema) -> bool | None:
    """Whether nsys recorded the stop of the session it recorded the start of; None where the export
    records neither. Measured with scripts/probe_unended_range_ends.py (nsys 2024.2.3.38, a second
    nsys session profiling beside each capture): some exports then lack the stop message, and in
    some of those ANALYSIS_DETAILS.duration is far short of the session (1.51 s of a program that
    ran 3.1 s) while the ranges the program never ended end at its real end, past `duration`."""
    if not (
        schema.has_column("DIAGNOSTIC_EVENT", "text") and schema.has_column("DIAGNOSTIC_EVENT", "timestamp")
    ):
        return None
    started, stopped = conn.execute(
        """SELECT count(CASE WHEN text = ? THEN 1 END), count(CASE WHEN text = ? THEN 1 END)
           FROM DIAGNOSTIC_EVENT""",
        (SESSION_STARTED, SESSION_STOPPED),
    ).fetchone()
    return None if not started else bool(stopped)


def unended_range_ids(conn: sqlite3.Connection, schema: ExportSchema) -> frozenset[int]:
    """The `range_id`s of ranges that were never ended: the program stopped inside them (a crash, a
    kill, Ctrl-C). Some nsys versions leave their end NULL; nsys 2022.4, 2023.4 and 2024.2 end them
    exactly at the end of the session (`session_end`), where no real end can be. A range ending after
    that is a real range of an inconsistent export (a tiled one), or, where nsys did not record its
    session's stop (`session_stop_recorded`), possibly a never-ended one that nsys ended past a
    `duration` recorded too short: nothing in the export tells which, so `nsys stats` counts it and
    so does perfctl (checks.RowChecks warns, naming the cause it can see)."""
    if not schema.has("NVTX_EVENTS"):
        return frozenset()
    names = ("NvtxPushPopRange", "NvtxtPushPopRange", "NvtxStartEndRange", "NvtxtStartEndRange")
    kinds = [schema.event_type(n) for n in names]
    marks = ",".join("?" * len(kinds))
    end = session_end(conn, schema)
    rows = conn.execute(
        f'SELECT rowid FROM NVTX_EVENTS WHERE eventType IN ({marks}) AND ("end" IS NULL OR "end" = ?)',
        (*kinds, end),
    )
    return frozenset(int(r[0]) for r in rows)


def created_domains(conn: sqlite3.Connection, schema: ExportSchema) -> dict[tuple[int, int], str]:
    """The NVTX domains the export's domain-create events name: (domain id, process bits of the
    creating thread) -> the domain's (bounded) name, the first creation winning, as nsys's reports."""
    text_expr, join, string_row = _nvtx_text(schema)
    rows = read_frame(
        schema.path,
        f"""SELECT e.domainId AS domain_id, e.globalTid AS thread, {head_sql(text_expr)} AS name,
                   {size_sql(text_expr)} AS name_size, {string_row} AS name_row,
                   e.rowid AS range_id, min(e.start) AS first
            FROM NVTX_EVENTS AS e {join}
            WHERE e.eventType = {int(schema.event_type("NvtxDomainCreate"))}
              AND typeof(e.domainId) = 'integer' AND typeof(e.globalTid) = 'integer'
            GROUP BY 1, 2 ORDER BY first""",
    )
    names: dict[tuple[int, int], str] = {}
    if not rows.empty:
        texts = _nvtx_names(conn, rows)
        for domain_id, thread, text in zip(
            rows["domain_id"].tolist(), rows["thread"].tolist(), texts, strict=True
        ):
            names.setdefault((int(domain_id), int(thread) & _PID_BITS_MASK), text)
    return names


def _resolve_domains(conn: sqlite3.Connection, schema: ExportSchema, ranges: pd.DataFrame) -> pd.Series:
    import pandas as pd

    names = created_domains(conn, schema)
    if not names:
        return pd.Series("", index=ranges.index, dtype="object")
    pid_bits = ranges["thread"].to_numpy(np.int64) & _PID_BITS_MASK
    keys = zip(ranges["domain_id"].to_numpy(np.int64).tolist(), pid_bits.tolist(), strict=True)
    return pd.Series([names.get(k, "") for k in keys], index=ranges.index, dtype="object")
