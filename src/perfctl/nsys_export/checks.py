"""What an untrusted export's rows may hold, checked where they are read, chunk by chunk.

Timestamps (NVTX ranges, GPU activities, the launch calls of the API table) must be integers from 0
to TIMESTAMP_LIMIT, with an end at or after the start; NULL is no timestamp (a range without an end
is one the program never ended, legal; an activity or a call without a start or end is not). A row
whose timestamps cannot be is bad: a few bad rows in a good export (`BadRows.tolerated`) are left out
of every figure, counted, and named in one warning per table (the count, the first bad rowid and
what was wrong); more than that refuses the export (BadInput: exit 2, one line). Ids that the
analysis joins or groups on (correlation ids, processes and threads, string ids of names) and byte
counts must be integers in their range, or NULL where NULL means none: anything else refuses the
export, naming the table, the row and the column. Durations and bytes are summed in int64 (numpy
wraps silently), so an export whose sums would pass SUM_LIMIT is refused too.

The readers decode integer columns with NULL as -1 and any other value that is not an integer (text,
blob, real) as NOT_AN_INTEGER (`pages`, `columns`). The checks are a few vectorized comparisons per
chunk; only when a chunk shows a bad row does SQLite look up which row came first (`_first_bad`), so
a sound export pays nothing more.

GPU activities that end past the session's end recorded in ANALYSIS_DETAILS are counted too: nsys
ends the ranges the program never ended exactly there, so an activity or a range ending later is a
real event of an inconsistent export (a tiled one, say), or an event of a session whose stop nsys did
not record (nvtx.session_stop_recorded), whose recorded end may be too early. They are kept, as
`nsys stats` keeps them, and the analysis warns once, naming the missing stop where it is missing.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from perfctl.errors import BadInput
from perfctl.nsys_export.pages import NOT_AN_INTEGER, NULL, RowFilter
from perfctl.nsys_export.schema import quote_identifier, readonly_uri

Columns = dict[str, npt.NDArray[np.int64]]

# nsys timestamps are nanoseconds from the session's start (the fixtures' largest is 2.6e10, 26 s), or
# with `nsys export --ts-normalize` nanoseconds of UTC since 1970 (1.8e18 in 2026). 2^62 ns from
# either is past the year 2116: damage. Below it, every difference of two timestamps fits int64 and
# the windows' "never" (2^62) lies past every time.
TIMESTAMP_LIMIT = 1 << 62
TIMESTAMP_LIMIT_TEXT = "2^62 ns"
# Sums of durations or bytes over a table (and over the ranges of one name) are int64: they must stay
# below 2^62, where the float64 sum guarding them is still far (a factor of 2) from int64's end; no
# real export comes near (2^62 ns of kernel time is 146 GPU-years).
SUM_LIMIT = 1 << 62
# How many bad rows are a few, left out with a warning rather than refusing the export:
FEW_BAD_ROWS = 16  # a handful, whatever the table's size: a damaged page's rows, rows mangled by hand
BAD_ROW_SHARE = 0.001  # beyond a handful, up to 0.1 % of a big table's rows
MOST_BAD_ROWS = 1000  # never more: past that the export was written wrong, not damaged here and there
# CUPTI correlation ids are 32-bit; the launch join keys them as id + 1 below 2^32
CORRELATION_LIMIT = 1 << 32
INT32_MAX = (1 << 31) - 1  # name ids are kept as int32
_INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class IdRule:
    """An integer column that must lie in [low, high] (NULL reads -1: low -1 allows it)."""

    name: str  # the chunk's name for it
    column: str  # the table's column
    low: int
    high: int

    def violated(self, values: npt.NDArray[np.int64]) -> bool:
        if not len(values):
            return False
        if int(values.min()) < self.low:
            return True
        return self.high < _INT64_MAX and int(values.max()) > self.high  # (no int64 passes INT64_MAX)

    def bad(self, values: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        out: npt.NDArray[np.bool_] = (values < self.low) | (values > self.high)
        return out

    def sql(self) -> str:
        """The same condition in SQL (a NULL passes when low is -1)."""
        c = quote_identifier(self.column)
        null_ok = "'integer', 'null'" if self.low <= NULL else "'integer'"
        return f"(typeof({c}) NOT IN ({null_ok}) OR {c} < {self.low} OR {c} > {self.high})"


def correlation(name: str = "corr") -> IdRule:
    return IdRule(name, "correlationId", NULL, CORRELATION_LIMIT - 2)


def any_integer(name: str, column: str) -> IdRule:
    """A serialized process or thread id: any integer (or NULL)."""
    return IdRule(name, column, int(NOT_AN_INTEGER) + 1, _INT64_MAX)


def string_id(name: str, column: str) -> IdRule:
    return IdRule(name, column, NULL, INT32_MAX)


def byte_count(name: str = "bytes") -> IdRule:
    return IdRule(name, "bytes", NULL, _INT64_MAX)


def graph_node(name: str = "graph_node") -> IdRule:
    """A kernel's CUDA graph node id: NULL for a kernel launched on its own, else an id from 0."""
    return IdRule(name, "graphNodeId", NULL, _INT64_MAX)


# the timestamps' problems, in the order a row is classified by
_PROBLEMS = ("not an integer", "NULL", "negative", "end before start", f"past {TIMESTAMP_LIMIT_TEXT}")


def _classify(start: npt.NDArray[np.int64], end: npt.NDArray[np.int64]) -> Counter[str]:
    """How many of these (bad) rows have each problem, the first that applies."""
    left = np.ones(len(start), dtype=bool)
    counts: Counter[str] = Counter()
    for problem, rows in zip(
        _PROBLEMS,
        (
            (start == NOT_AN_INTEGER) | (end == NOT_AN_INTEGER),
            (start == NULL) | (end == NULL),
            start < 0,
            end < start,
            end >= TIMESTAMP_LIMIT,
        ),
        strict=True,
    ):
        hit = left & rows
        if hit.any():
            counts[problem] += int(hit.sum())
        left &= ~rows
    return counts


_TIMESTAMPS_BAD_SQL = (
    "(typeof(start) != 'integer' OR typeof(\"end\") != 'integer' OR start < 0 OR \"end\" < start "
    f'OR "end" >= {TIMESTAMP_LIMIT})'
)


def describe_timestamps(
    start: object, start_type: str, end: object, end_type: str, end_optional: bool = False
) -> str:
    """What is wrong with one row's (start, end), as SQLite gave them with their types (`end_optional`:
    a NULL end is legal, as an NVTX range's)."""
    if start_type != "integer":
        return "start is NULL" if start_type == "null" else f"start is {start_type}, not an integer"
    assert isinstance(start, int)
    if start < 0:
        return f"start {start} is negative"
    if start >= TIMESTAMP_LIMIT:
        return f"start {start} is past {TIMESTAMP_LIMIT_TEXT}"
    if end_type == "null":
        return "nothing" if end_optional else "end is NULL"
    if end_type != "integer":
        return f"end is {end_type}, not an integer"
    assert isinstance(end, int)
    if end < start:
        return f"end {end} is before start {start}"
    return f"end {end} is past {TIMESTAMP_LIMIT_TEXT}" if end >= TIMESTAMP_LIMIT else "nothing"


def check_sum(path: Path, what: str, total: float) -> None:
    """Refuse an export where `what` (its float64 estimate: `total`) would pass SUM_LIMIT."""
    if total > SUM_LIMIT:
        raise BadInput(
            f"{path} is not a usable nsys export: {what} add up past 2^62 ({SUM_LIMIT:,}), more "
            "than perfctl's 64-bit sums hold exactly"
        )


@dataclass
class BadRows:
    """One table's rows left out for timestamps that cannot be."""

    table: str
    noun: str = "rows"  # what its rows are ("rows", "launch calls", "NVTX ranges")
    examined: int = 0
    count: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    first: str | None = None  # "rowid N: what was wrong", once looked up

    def tolerated(self) -> bool:
        """A few bad rows in a good export: at most FEW_BAD_ROWS, or BAD_ROW_SHARE of the rows, never
        more than MOST_BAD_ROWS, and fewer than half the rows (a table that is mostly bad is no good)."""
        few = max(FEW_BAD_ROWS, BAD_ROW_SHARE * self.examined)
        return self.count <= min(few, MOST_BAD_ROWS) and 2 * self.count < self.examined

    def _summary(self) -> str:
        rank = {p: i for i, p in enumerate(_PROBLEMS)}  # (most first; ties in a fixed order)
        ordered = sorted(self.problems.items(), key=lambda kv: (-kv[1], rank.get(kv[0], len(rank))))
        kinds = ", ".join(f"{n} {p}" for p, n in ordered)
        first = f"; the first, rowid {self.first}" if self.first else ""
        return (
            f"{self.table}: {self.count:,} of {self.examined:,} {self.noun} have timestamps that cannot "
            f"be ({kinds}{first})"
        )

    def warning(self) -> str:
        return f"{self._summary()}: left out of every figure"

    def refusal(self, path: Path) -> BadInput:
        # nsys itself writes negative times only when told to shift them (`nsys export --ts-shift`)
        hint = (
            " (exported with a negative --ts-shift? perfctl reads times from 0 up: export it again without)"
            if self.problems.get("negative", 0) * 2 > self.count
            else ""
        )
        return BadInput(
            f"{path} is not a usable nsys export: {self._summary()}; a few such rows are left out "
            f"with a warning (at most {FEW_BAD_ROWS}, or {BAD_ROW_SHARE:.1%} of a table), not this "
            f"many{hint}"
        )


class RowChecks:
    """The checks of one export's activity and launch rows, and what they found, table by table.

    `activities` and `launches` take a chunk as a reader decoded it and return it without its bad
    rows; `warnings` (once every chunk was checked) gives the warnings, or raises BadInput where a
    table had more than a few. A chunk of a pass that is not `counted` (a second look at the API
    table, say) loses its bad rows silently: the counted pass said what they were.
    """

    def __init__(self, path: Path, session_end: int | None = None, stop_recorded: bool | None = None) -> None:
        self.path = path
        self.session_end = session_end
        self.stop_recorded = stop_recorded  # nvtx.session_stop_recorded: False names the likely cause
        self.bad: dict[str, BadRows] = {}
        self.past_session_end: Counter[str] = Counter()  # table -> activities ending past it
        self.ranges_past_session_end = 0
        self._sums: dict[str, float] = {}  # what -> its float64 sum, guarding the int64 sums

    def restart_activities(self) -> None:
        """Forget what the activity and API tables' chunks showed (they are about to be read again);
        the NVTX ranges' findings stay."""
        nvtx = {t: b for t, b in self.bad.items() if t == "NVTX_EVENTS"}
        self.bad, self._sums = nvtx, {}
        self.past_session_end = Counter()

    def activities(self, table: str, chunk: Columns, rules: tuple[IdRule, ...]) -> Columns:
        """A chunk of a GPU activity table (start, end and the columns of `rules`), checked."""
        chunk = self._checked(table, "rows", chunk, rules, None, counted=True)
        start, end = chunk["start"], chunk["end"]
        if len(end) == 0:
            return chunk
        first, last = int(start.min()), int(end.max())
        if self.session_end is not None and last > self.session_end:
            self.past_session_end[table] += int(np.count_nonzero(end > self.session_end))
        # the chunk's durations, in int64 where their sum cannot wrap (always, in a real export)
        exact = len(end) * (last - first) <= _INT64_MAX
        durations = int((end - start).sum()) if exact else float(np.sum(end - start, dtype=np.float64))
        self._add(table, "durations", durations)
        if "bytes" in chunk:
            self._add(table, "bytes", float(np.sum(np.maximum(chunk["bytes"], 0), dtype=np.float64)))
        return chunk

    def launches(
        self,
        table: str,
        chunk: Columns,
        rules: tuple[IdRule, ...],
        where: RowFilter | None,
        counted: bool,
    ) -> Columns:
        """A chunk of the API table's rows (the rows `where` kept), checked."""
        return self._checked(table, "launch calls" if where else "rows", chunk, rules, where, counted)

    def nvtx(self, bad: BadRows) -> None:
        """The NVTX ranges' bad rows (read at once through SQL: nvtx.load_nvtx_ranges)."""
        self.bad[bad.table] = bad

    def warnings(self) -> list[str]:
        """One warning per table with bad rows, and one for events past the session's end. Raises
        BadInput for a table with more than a few bad rows."""
        out = []
        for bad in sorted((b for b in self.bad.values() if b.count), key=lambda b: b.table):
            if not bad.tolerated():
                raise bad.refusal(self.path)
            out.append(bad.warning())
        activities = sum(self.past_session_end.values())
        if (activities or self.ranges_past_session_end) and self.stop_recorded is False:
            out.append(
                f"the export is inconsistent: nsys did not record the stop of this session (no "
                f"'Profiling has stopped.' in DIAGNOSTIC_EVENT; seen with nsys 2024.2 when another nsys "
                f"session ran at the same time), and {self.ranges_past_session_end:,} NVTX ranges and "
                f"{activities:,} GPU activities end after the session's end it recorded in ANALYSIS_DETAILS "
                f"({self.session_end:,} ns from its start); they are analyzed as recorded, as nsys stats "
                "counts them, and ranges the program never ended cannot be told from ended ones here"
            )
        elif activities or self.ranges_past_session_end:
            out.append(
                f"the export is inconsistent: {self.ranges_past_session_end:,} NVTX ranges and "
                f"{activities:,} GPU activities end after the session's end recorded in ANALYSIS_DETAILS "
                f"({self.session_end:,} ns from its start); they are analyzed as recorded, as nsys stats "
                "counts them (a range the program never ended ends exactly at the session's end)"
            )
        return out

    def _checked(
        self,
        table: str,
        noun: str,
        chunk: Columns,
        rules: tuple[IdRule, ...],
        where: RowFilter | None,
        counted: bool,
    ) -> Columns:
        start, end = chunk["start"], chunk["end"]
        n = len(start)
        if n == 0:
            return chunk
        broken = [rule for rule in rules if rule.violated(chunk[rule.name])]
        if broken and counted:
            raise self._id_refusal(table, broken[0], where)
        sound = (
            not broken
            and int(start.min()) >= 0
            and int(end.max()) < TIMESTAMP_LIMIT
            and not bool(np.any(end < start))
        )
        tally = self.bad.setdefault(table, BadRows(table, noun)) if counted else None
        if tally is not None:
            tally.examined += n
        if sound:
            return chunk
        bad = (start < 0) | (end < start) | (end >= TIMESTAMP_LIMIT)
        for rule in broken:  # (a pass that is not counted: such rows launch nothing)
            bad |= rule.bad(chunk[rule.name])
        if tally is not None and bad.any():
            tally.count += int(bad.sum())
            tally.problems += _classify(start[bad], end[bad])
            if tally.first is None:  # ("" once looked up and not found: not looked up again)
                tally.first = self._first_bad(table, where) or ""
            if tally.count > MOST_BAD_ROWS:  # (no need to read on: it is refused whatever follows)
                raise tally.refusal(self.path)
        return {c: v[~bad] for c, v in chunk.items()}

    def _add(self, table: str, what: str, amount: float) -> None:
        key = f"the {what} of {table}"
        self._sums[key] = self._sums.get(key, 0.0) + amount
        check_sum(self.path, key, self._sums[key])

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(readonly_uri(self.path), uri=True)

    def _first_bad(self, table: str, where: RowFilter | None) -> str | None:
        """'N: what was wrong' of the table's first row with impossible timestamps (among the rows
        `where` keeps), looked up through SQLite."""
        also = f" AND {where.sql()}" if where else ""
        conn = self._connect()
        try:
            row = conn.execute(
                f'SELECT rowid, start, typeof(start), "end", typeof("end") FROM {quote_identifier(table)} '
                f"WHERE {_TIMESTAMPS_BAD_SQL}{also} ORDER BY rowid LIMIT 1"
            ).fetchone()
        finally:
            conn.close()
        return None if row is None else f"{row[0]}: {describe_timestamps(*row[1:])}"

    def _id_refusal(self, table: str, rule: IdRule, where: RowFilter | None) -> BadInput:
        also = f" AND {where.sql()}" if where else ""
        column = quote_identifier(rule.column)
        conn = self._connect()
        try:
            row = conn.execute(
                f"SELECT rowid, {column}, typeof({column}) FROM {quote_identifier(table)} "
                f"WHERE {rule.sql()}{also} ORDER BY rowid LIMIT 1"
            ).fetchone()
        finally:
            conn.close()
        if row is None:
            where_text = f"a {rule.column} out of its range"
        else:
            value = f"{row[2]}, not an integer" if row[2] not in ("integer", "null") else str(row[1])
            where_text = f"rowid {row[0]}: {rule.column} is {value}"
        # (every rule allows NULL, read -1: the ids from 0 up, or a serialized thread, any integer)
        wanted = "an integer" if rule.low < NULL else f"an integer from 0 to {rule.high:,}"
        return BadInput(
            f"{self.path} is not a usable nsys export: {table} {where_text} (an id or count the "
            f"analysis needs: {wanted}" + (", or NULL)" if rule.low <= NULL else ")")
        )
