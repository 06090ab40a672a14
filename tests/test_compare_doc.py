"""docs/compare.md's JSON section against the typed comparison records (perfctl.analysis.result_compare):
every key a record types is named there, and every key the table's first column names is a key of
the comparison (as tests/test_analysis_doc.py holds docs/analysis-json.md to the analysis records)."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import get_type_hints

from perfctl.analysis import result_compare

DOC = Path(__file__).resolve().parent.parent / "docs" / "compare.md"


def json_section() -> str:
    text = DOC.read_text()
    start = text.index("\n## JSON\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def typed_keys() -> set[str]:
    records = [
        v
        for v in vars(result_compare).values()
        if typing.is_typeddict(v) and v.__module__ == result_compare.__name__
    ]
    assert len(records) >= 10  # the records are found (a move would otherwise check nothing)
    return {key for record in records for key in get_type_hints(record)}


def test_every_typed_key_of_the_comparison_is_documented() -> None:
    named = set(re.findall(r"`([A-Za-z_0-9]+)(?:\[\])?`", json_section()))
    assert sorted(typed_keys() - named) == []


def test_every_top_level_key_the_doc_lists_is_typed() -> None:
    rows = [line for line in json_section().splitlines() if line.startswith("| `")]
    listed = {k for row in rows for k in re.findall(r"`([A-Za-z_0-9]+)(?:\[\])?`", row.split("|")[1])}
    top = set(get_type_hints(result_compare.Comparison))
    assert listed and sorted(listed - top) == []
    assert (
        sorted(top - listed - {"clean_clock", "time_source_text"}) == []
    )  # (those two: in time_source's row)
