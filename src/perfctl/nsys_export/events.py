"""Load the events perfctl analyzes into DataFrames: NVTX ranges and GPU activities with their launches.

Each loader selects only the columns it needs and resolves names the way nsys's own reports do, so
that the analysis can be a set of pure functions over these frames.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd

from perfctl.nsys_export.schema import ExportSchema

# A serialized globalTid is (vm << 56) | (pid << 24) | tid; the process part masks the thread away.
_PROCESS_MASK = ~0xFFFFFF  # as int64: clears the 24 thread bits, keeps vm and pid
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
ACTIVITY_COLUMNS = [
    "activity",
    "kind",
    "start",
    "end",
    "duration",
    "process",
    "correlation_id",
    "device",
    "stream",
    "short_name",
    "name",
    "bytes",
    "launch_thread",
    "launch_start",
    "launch_end",
]


def load_nvtx_ranges(conn: sqlite3.Connection, schema: ExportSchema) -> pd.DataFrame:
    """One row per NVTX push/pop or start/end range, with its domain name and text resolved.

    As in nsys's reports: a range whose end was never recorded ends at the last NVTX timestamp of
    the export; the domain of a range is the domain-create event with the same domain id in the same
    process; registered strings (`textId`) take precedence over inline `text`.
    """
    if not schema.has("NVTX_EVENTS"):
        return pd.DataFrame(columns=RANGE_COLUMNS)
    pushpop = {schema.event_type("NvtxPushPopRange"), schema.event_type("NvtxtPushPopRange")}
    startend = {schema.event_type("NvtxStartEndRange"), schema.event_type("NvtxtStartEndRange")}
    kinds = sorted(pushpop | startend)
    has_text_id = schema.has_column("NVTX_EVENTS", "textId")
    text_expr = "coalesce(s.value, e.text)" if has_text_id else "e.text"
    join = "LEFT JOIN StringIds AS s ON e.textId = s.id" if has_text_id else ""
    payload_cols = [
        c
        for c in ("int64Value", "uint64Value", "int32Value", "uint32Value")
        if schema.has_column("NVTX_EVENTS", c)
    ]
    payload_expr = f"coalesce({', '.join('e.' + c for c in payload_cols)})" if payload_cols else "NULL"
    end_tid = "e.endGlobalTid" if schema.has_column("NVTX_EVENTS", "endGlobalTid") else "NULL"
    marks = ",".join("?" * len(kinds))
    frame = pd.read_sql_query(
        f"""SELECT e.rowid AS range_id, e.start, e.end, e.eventType AS event_type,
                   e.globalTid AS thread, e.domainId AS domain_id, {text_expr} AS name,
                   {payload_expr} AS payload, {end_tid} AS end_thread
            FROM NVTX_EVENTS AS e {join}
            WHERE e.eventType IN ({marks})""",
        conn,
        params=kinds,
    )
    if frame.empty:
        return pd.DataFrame(columns=RANGE_COLUMNS)

    last_ts = conn.execute("SELECT max(max(start), coalesce(max(end), 0)) FROM NVTX_EVENTS").fetchone()[0]
    frame["end"] = frame["end"].fillna(last_ts).astype("int64")
    frame["style"] = np.where(frame["event_type"].isin(pushpop), "PushPop", "StartEnd")
    frame["ended_on_other_thread"] = frame["end_thread"].notna()
    frame["domain"] = _resolve_domains(conn, schema, frame)
    frame["name"] = frame["name"].fillna("")
    return frame[RANGE_COLUMNS].sort_values(["thread", "start"], kind="stable").reset_index(drop=True)


def _resolve_domains(conn: sqlite3.Connection, schema: ExportSchema, ranges: pd.DataFrame) -> pd.Series:
    create = schema.event_type("NvtxDomainCreate")
    text_expr = "coalesce(s.value, e.text)" if schema.has_column("NVTX_EVENTS", "textId") else "e.text"
    join = "LEFT JOIN StringIds AS s ON e.textId = s.id" if "coalesce" in text_expr else ""
    domains = pd.read_sql_query(
        f"""SELECT e.domainId AS domain_id, e.globalTid AS thread, {text_expr} AS domain, min(e.start)
            FROM NVTX_EVENTS AS e {join} WHERE e.eventType = ? GROUP BY 1, 2""",
        conn,
        params=[create],
    )
    if domains.empty:
        return pd.Series("", index=ranges.index, dtype="object")
    domains["pid_bits"] = domains["thread"].astype("int64") & _PID_BITS_MASK
    domains = domains.drop_duplicates(["domain_id", "pid_bits"])[["domain_id", "pid_bits", "domain"]]
    keys = pd.DataFrame(
        {
            "domain_id": ranges["domain_id"],
            "pid_bits": ranges["thread"].astype("int64") & _PID_BITS_MASK,
        }
    )
    merged = keys.merge(domains, on=["domain_id", "pid_bits"], how="left")
    return pd.Series(merged["domain"].fillna("").to_numpy(), index=ranges.index, dtype="object")


def load_gpu_activities(conn: sqlite3.Connection, schema: ExportSchema) -> pd.DataFrame:
    """Kernels, memcpys and memsets, each joined to the CUDA API call that launched it.

    The launch is the `CUPTI_ACTIVITY_KIND_RUNTIME` row with the same correlation id in the same
    process (correlation ids are unique per process only). An activity whose launch is missing keeps
    NaN launch columns; it can then not be attributed to any range.
    """
    parts = []
    names = _string_lookup(conn)
    if schema.has("CUPTI_ACTIVITY_KIND_KERNEL"):
        k = pd.read_sql_query(
            """SELECT start, end, globalPid AS process, correlationId AS correlation_id,
                      deviceId AS device, streamId AS stream, shortName AS short_id,
                      demangledName AS name_id
               FROM CUPTI_ACTIVITY_KIND_KERNEL""",
            conn,
        )
        k["kind"] = "kernel"
        k["short_name"] = k["short_id"].map(names)
        k["name"] = k["name_id"].map(names)
        k["bytes"] = 0
        parts.append(k.drop(columns=["short_id", "name_id"]))
    for table, kind in (("CUPTI_ACTIVITY_KIND_MEMCPY", "memcpy"), ("CUPTI_ACTIVITY_KIND_MEMSET", "memset")):
        if schema.has(table):
            m = pd.read_sql_query(
                f"""SELECT start, end, globalPid AS process, correlationId AS correlation_id,
                           deviceId AS device, streamId AS stream, bytes FROM {table}""",
                conn,
            )
            m["kind"] = kind
            m["short_name"] = f"[CUDA {kind}]"
            m["name"] = f"[CUDA {kind}]"
            parts.append(m)
    if not parts:
        return pd.DataFrame(columns=ACTIVITY_COLUMNS)
    acts = pd.concat(parts, ignore_index=True)
    acts["duration"] = acts["end"] - acts["start"]
    acts["activity"] = np.arange(len(acts), dtype="int64")  # identity of the GPU event before any join

    if schema.has("CUPTI_ACTIVITY_KIND_RUNTIME"):
        launches = pd.read_sql_query(
            """SELECT correlationId AS correlation_id, globalTid AS launch_thread,
                      start AS launch_start, end AS launch_end
               FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE correlationId IS NOT NULL""",
            conn,
        )
        launches["process"] = launches["launch_thread"].astype("int64") & _PROCESS_MASK
        # An inner-join fan-out (several API rows with one correlation id) is kept, as nsys keeps it.
        acts = acts.merge(launches, on=["process", "correlation_id"], how="left")
    else:
        acts["launch_thread"] = np.nan
        acts["launch_start"] = np.nan
        acts["launch_end"] = np.nan
    return acts[ACTIVITY_COLUMNS].reset_index(drop=True)


def _string_lookup(conn: sqlite3.Connection) -> dict[int, str]:
    return {int(i): str(v) for i, v in conn.execute("SELECT id, value FROM StringIds")}
