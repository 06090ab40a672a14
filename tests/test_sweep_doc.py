"""docs/sweep.md's JSON section against the typed sweep records (perfctl.analysis.result_sweep): every
key a record types is named there, and the table's first column lists exactly SweepAnalysis's keys."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import get_type_hints

from perfctl.analysis import result_sweep

DOC = Path(__file__).resolve().parent.parent / "docs" / "sweep.md"
KEY = r"`([A-Za-z_0-9]+)(?:\[\])?`"


def section(heading: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def json_section() -> str:
    return section("JSON")


def test_every_typed_key_of_the_sweep_analysis_is_documented() -> None:
    records = [
        v
        for v in vars(result_sweep).values()
        if typing.is_typeddict(v) and v.__module__ == result_sweep.__name__
    ]
    assert len(records) >= 7  # the records are found (a move would otherwise check nothing)
    typed = {key for record in records for key in get_type_hints(record)}
    documented = set(re.findall(KEY, json_section() + section("Comparing two sweeps")))
    assert sorted(typed - documented) == []


def test_the_top_level_keys_the_doc_lists_are_the_analysis_keys() -> None:
    rows = [line for line in json_section().splitlines() if line.startswith("| `")]
    listed = {k for row in rows for k in re.findall(KEY, row.split("|")[1])}
    assert listed == set(get_type_hints(result_sweep.SweepAnalysis))


def test_the_sweep_comparisons_keys_the_doc_lists_are_its_keys() -> None:
    rows = [line for line in section("Comparing two sweeps").splitlines() if line.startswith("| `")]
    listed = {k for row in rows for k in re.findall(KEY, row.split("|")[1])}
    assert listed == set(get_type_hints(result_sweep.SweepComparison))
