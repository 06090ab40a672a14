"""docs/analysis-json.md against the typed records of analysis.json (perfctl.analysis.result,
result_passes and result_ncu), both ways, and real analyses against the records: a key that the code writes is
typed and documented, a documented key is typed, and a fixture's analysis.json holds typed keys only.

The doc's convention: a heading that starts with a record's name in backticks (optionally
"(extends `Base`)") is followed by that record's table, whose first column names every key of the
record (and only those) in backticks.
"""

from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest

from conftest import copy_run_fixture, decompress_fixture, run_perfctl
from perfctl.analysis import result, result_ncu, result_passes
from perfctl.errors import BadInput

DOC = Path(__file__).resolve().parent.parent / "docs" / "analysis-json.md"
HEADING = re.compile(r"^#+ `(\w+)`(?: \(extends `(\w+)`\))?(?::|$)")


def typed_records() -> dict[str, type]:
    """Every TypedDict of the record modules, by name."""
    return {
        name: value
        for module in (result, result_passes, result_ncu)
        for name, value in vars(module).items()
        if typing.is_typeddict(value) and value.__module__ == module.__name__
    }


def documented_records() -> dict[str, tuple[set[str], str | None]]:
    """record name -> (the keys its table lists, the record it extends)."""
    found: dict[str, tuple[set[str], str | None]] = {}
    current: str | None = None
    base: str | None = None
    in_table = False
    for line in DOC.read_text().splitlines():
        heading = HEADING.match(line)
        if heading:
            current, base = heading.group(1), heading.group(2)
            assert current not in found, f"{current} is documented twice"
            found[current] = (set(), base)
            in_table = False
            continue
        if line.startswith("#"):
            current = None
            continue
        if current is None:
            continue
        if line.startswith("|"):
            in_table = True
            first = line.split("|")[1]
            if first.strip() in ("key", "---") or set(first.strip()) <= {"-"}:
                continue
            found[current][0].update(re.findall(r"`([^`]+)`", first))
        elif in_table:  # the first table after the heading is the record's
            current = None
    return found


def all_keys(name: str, docs: dict[str, tuple[set[str], str | None]]) -> set[str]:
    keys, base = docs[name]
    return keys | (all_keys(base, docs) if base else set())


def test_every_typed_record_is_documented_with_exactly_its_keys() -> None:
    records, docs = typed_records(), documented_records()
    assert sorted(set(records) - set(docs)) == [], "typed records the doc does not document"
    assert sorted(set(docs) - set(records)) == [], "documented records that are not typed"
    for name, record in records.items():
        typed = set(get_type_hints(record))
        documented = all_keys(name, docs)
        assert sorted(typed - documented) == [], f"{name}: typed keys the doc does not list"
        assert sorted(documented - typed) == [], f"{name}: documented keys that {name} does not type"
        base = docs[name][1]
        if base:
            assert set(get_type_hints(records[base])) <= typed, f"{name} does not extend {base}"


def untyped_keys(value: Any, hint: Any, where: str) -> list[str]:
    """Keys of `value` (JSON) that `hint` (a record, or a container of records) does not type."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        arms = [a for a in get_args(hint) if _kind_fits(value, a)]
        return untyped_keys(value, arms[0], where) if arms else [f"{where}: {type(value).__name__}"]
    if typing.is_typeddict(hint) and isinstance(value, dict):
        hints = get_type_hints(hint)
        out = [f"{where}.{k}" for k in value if k not in hints]
        for k, v in value.items():
            if k in hints:
                out += untyped_keys(v, hints[k], f"{where}.{k}")
        return out
    if origin is dict and isinstance(value, dict):
        return [bad for k, v in value.items() for bad in untyped_keys(v, get_args(hint)[1], f"{where}.{k}")]
    if origin is list and isinstance(value, list):
        return [
            bad for i, v in enumerate(value) for bad in untyped_keys(v, get_args(hint)[0], f"{where}[{i}]")
        ]
    return []


def _kind_fits(value: Any, hint: Any) -> bool:
    if hint is type(None):
        return value is None
    if typing.is_typeddict(hint) or get_origin(hint) is dict:
        return isinstance(value, dict)
    if get_origin(hint) is list:
        return isinstance(value, list)
    return not isinstance(value, dict | list)


@pytest.mark.parametrize(
    "fixture", ["h200-tiny-ocr2.sqlite.xz", "h100-tiny-ocr2-all", "h200-full-ocr2-torch-only"]
)
def test_a_fixtures_analysis_holds_typed_keys_only(fixture: str, tmp_path: Path) -> None:
    if fixture.endswith(".xz"):
        target = decompress_fixture(fixture, tmp_path)
    else:
        target = copy_run_fixture(fixture, tmp_path / fixture)
    out = tmp_path / "out"
    done = run_perfctl("analyze", str(target), "--out-dir", str(out), "--allow-no-kernels", "--quiet")
    assert done.returncode == 0, done.stderr
    analysis = json.loads((out / "analysis.json").read_text())
    assert untyped_keys(analysis, result.Analysis, "analysis") == []
    # the one writer gives back the bytes it read, and the one reader takes them
    if "stages" in analysis:
        assert result.read_analysis(out / "analysis.json") == analysis
    assert result.dump_analysis(analysis) == (out / "analysis.json").read_text()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{", "cannot read {path} as JSON: "),
        ('{"perfctl_version": "x", "operators": {}}', "{path} holds no stage times to compare"),
        ("[1, 2]", "{path} is not a perfctl analysis.json (no 'stages' or 'timing')"),
        ('{"stages": "vision", "warnings": []}', "{path} is a damaged analysis.json: 'stages' is a string"),
        ('{"stages": [], "timing": [1]}', "{path} is a damaged analysis.json: 'timing' is an array"),
    ],
)
def test_the_reader_refuses_a_damaged_analysis_in_one_line(text: str, says: str, tmp_path: Path) -> None:
    path = tmp_path / "analysis.json"
    path.write_text(text)
    with pytest.raises(BadInput) as refused:
        result.read_analysis(path)
    message = str(refused.value)
    assert message.startswith(says.format(path=path)) and "\n" not in message


def test_shapes_the_producer_can_write_are_shown_not_crashed_on() -> None:
    """A NULL GPU name (TARGET_INFO_GPU allows it) and a page range without a sequence number."""
    from perfctl.analysis.compare import page_samples
    from perfctl.report.text import render_text
    from perfctl.stages import STAGES

    stage = {"instances": 1, "wall_ns": 5, "kernel_count": 1, "kernel_time_ns": 2, "gpu_busy_ns": 2}
    pages = [
        {
            "sequence": s,
            "start_ns": 0,
            "wall_ns": 10,
            "gpu_busy_ns": 2,
            "stages": dict.fromkeys(STAGES, stage),
        }
        for s in (None, 1)
    ]
    analysis: Any = {
        "perfctl_version": "x",
        "warnings": [],
        "export": {
            "path": "run.sqlite",
            "schema_version": None,
            "nsys_version": None,
            "gpus": [{"name": None}],
        },
        "stages": [],
        "pages": pages,
    }
    assert "(nsys None, schema None; ?)" in render_text(analysis)
    samples = page_samples(analysis, "wall_ns")
    assert samples is not None and samples["page"].count == 2 and samples["page"].mean == 10
