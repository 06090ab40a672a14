"""Run folders whose manifest.json (or driver-info.json) is damaged, through the real command line.

Each variant is a copy of a real run folder with its manifest replaced inside the test: truncated,
random bytes, not UTF-8, a JSON list, an empty object, every field null, fields of the wrong type, a
manifest from an older perfctl (keys missing), a folder named manifest.json. `perfctl analyze` and
`perfctl compare` go on with what they can read and name the bad file in a warning (exit 0), or say
in one line that nothing usable is left (exit 2); never a traceback, never "no manifest.json" for one
that is there, the manifest byte for byte as it was. Where the export is analyzed, its ranges'
figures equal the analysis of the same export without any manifest, and nsys's own
`nsys stats -r nvtxkernsum` answer recorded for that export.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, copy_run_fixture, decompress_fixture, run_perfctl
from input_integrity import assert_one_line_error, sha256, tree_digest
from nsys_reference import nvtxkernsum_totals, perfctl_totals

H200 = "h200-tiny-ocr2"  # export + manifest of an older perfctl (no workload.tiles) + nsys's answer
ALL = "h100-tiny-ocr2-all"  # export, clean pass, torch pass
CLEAN_ONLY = "h100-full-ocr2-run"  # no export: its clean pass is all there is
NO_MANIFEST_SAID = ("No manifest.json beside this export", "no manifest.json beside the export")


def _real_manifest(name: str) -> dict[str, Any]:
    path = (
        FIXTURES / name / "manifest.json"
        if (FIXTURES / name).is_dir()
        else FIXTURES / f"{name}.manifest.json"
    )
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _wrong_types(m: dict[str, Any]) -> dict[str, Any]:
    m = json.loads(json.dumps(m))
    m["driver"] = 5  # a number where the report reads an object
    m["workload"]["max_new_tokens"] = "8"
    m["workload"]["tiles"] = "two"
    m["pages"] = [7, {"file": 3, "sha256": None}]
    m["pages_expected"] = 10**15  # would be looped over, one entry per page
    m["model_spec"] = ["deepseek-ocr2-tiny"]
    m["host"]["gpus_nvml"] = 3
    m["nsys"]["command"] = "nsys profile ..."
    m["status"] = True
    return m


def _older(m: dict[str, Any]) -> dict[str, Any]:
    m = json.loads(json.dumps(m))
    for key in ("tiles", "profile_pages", "warmup", "seed", "mode"):
        m["workload"].pop(key, None)
    for key in ("perfctl_nvtx_ranges", "files", "driver_python", "model_config", "finished_at"):
        m.pop(key, None)
    for key in ("prompt_source", "attn_implementation", "local_tiles_per_page", "decode_ranges_per_page"):
        m["driver"].pop(key, None)
    return m


TEXT = "text"
BYTES = "bytes"
# variant -> (how the manifest is made from the real one, what analyze's warning says, usable at all)
VARIANTS: dict[str, tuple[Callable[[dict[str, Any]], tuple[str, Any]], list[str], bool]] = {
    "truncated": (lambda m: (TEXT, json.dumps(m, indent=2)[:700]), ["is unusable (not JSON:"], False),
    "random-bytes": (lambda m: (BYTES, os.urandom(4096)), ["is unusable (not"], False),
    "latin-1": (
        lambda m: (BYTES, json.dumps(m).replace("vm", "vmé").encode("latin-1")),
        ["not UTF-8"],
        False,
    ),
    "json-list": (
        lambda m: (TEXT, json.dumps([m])),
        ["is unusable (it holds a list, not a JSON object)"],
        False,
    ),
    "json-null": (lambda m: (TEXT, "null"), ["is unusable (it holds null, not a JSON object)"], False),
    "empty-object": (lambda m: (TEXT, "{}"), ["is unusable (it is an empty object)"], False),
    "all-nulls": (
        lambda m: (TEXT, json.dumps(dict.fromkeys(m))),
        ["is unusable (none of the fields perfctl writes is usable in it", "status is null, not text"],
        False,
    ),
    "wrong-types": (
        lambda m: (TEXT, json.dumps(_wrong_types(m))),
        [
            "has fields of the wrong type, left out as unknown",
            "status is true, not text",
            'workload.max_new_tokens is "8", not an integer',
            "pages[0] is 7, not an object",
            "and 3 more",  # of 11: a warning names 8, analysis.json's run_manifest.problems all
        ],
        True,
    ),
    "older-perfctl": (lambda m: (TEXT, json.dumps(_older(m))), [], True),
}


def _write(manifest: Path, how: str, content: Any) -> None:
    if how == BYTES:
        manifest.write_bytes(content)
    else:
        manifest.write_text(content)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The H200 export analyzed with no manifest beside it, and nsys's own answer for it."""
    folder = tmp_path_factory.mktemp("bare")
    export = decompress_fixture(f"{H200}.sqlite.xz", folder)
    proc = run_perfctl("analyze", str(export), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return {
        "analysis": json.loads(proc.stdout),
        "nsys": nvtxkernsum_totals((FIXTURES / f"{H200}.nvtxkernsum.csv").read_text()),
    }


def _h200_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    decompress_fixture(f"{H200}.sqlite.xz", tmp_path)
    (tmp_path / f"{H200}.sqlite").rename(run / "run.sqlite")
    return run


def _no_absence_claim(run: Path) -> None:
    for name in ("report.html", "summary.md"):
        text = (run / name).read_text()
        assert not any(said in text for said in NO_MANIFEST_SAID), name


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_analyze_goes_on_with_what_it_can_read(
    tmp_path: Path, reference: dict[str, Any], variant: str
) -> None:
    make, needles, usable = VARIANTS[variant]
    run = _h200_run(tmp_path)
    _write(run / "manifest.json", *make(_real_manifest(H200)))
    before, export_before = sha256(run / "manifest.json"), sha256(run / "run.sqlite")
    proc = run_perfctl("analyze", str(run), "--format", "json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    analysis = json.loads(proc.stdout)
    said = [w for w in analysis["warnings"] if str(run / "manifest.json") in w]
    if variant == "older-perfctl":
        assert said == [] and analysis["run_manifest"]["state"] == "ok"  # missing keys are no fault
        assert analysis["run"]["run_id"] == _real_manifest(H200)["run_id"]
    else:
        assert len(said) == 1, analysis["warnings"]
        assert all(n in said[0] for n in needles), (needles, said[0])
        assert analysis["run_manifest"]["state"] == ("partial" if usable else "unusable")
        if variant == "wrong-types":
            problems = analysis["run_manifest"]["problems"]
            assert len(problems) == 11 and "driver is 5, not an object" in problems
            assert "pages_expected is 1,000,000,000,000,000, outside 0 to 10,000,000" in problems
        assert ("run" in analysis) == usable
    assert sha256(run / "manifest.json") == before and sha256(run / "run.sqlite") == export_before
    for name in ("analysis.json", "report.html", "summary.md"):
        assert (run / name).is_file()
    _no_absence_claim(run)
    if variant != "older-perfctl":  # the report's run identity says what became of the manifest
        state = "there but unusable" if not usable else "partly usable"
        assert f"{run / 'manifest.json'} is {state}" in (run / "report.html").read_text()
    # the export's figures are those of the same export with no manifest at all, and nsys's
    assert analysis["ranges"] == reference["analysis"]["ranges"]
    assert analysis["stages"] == reference["analysis"]["stages"]
    assert perfctl_totals(analysis) == reference["nsys"]


def test_a_folder_named_manifest_json(tmp_path: Path, reference: dict[str, Any]) -> None:
    run = _h200_run(tmp_path)
    (run / "manifest.json").mkdir()
    proc = run_perfctl("analyze", str(run), "--format", "json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    analysis = json.loads(proc.stdout)
    assert any(
        "manifest.json is unusable (cannot be read: Is a directory)" in w for w in analysis["warnings"]
    )
    assert perfctl_totals(analysis) == reference["nsys"]
    _no_absence_claim(run)


def test_wrong_types_in_a_run_with_every_pass(tmp_path: Path) -> None:
    """The H100 run with its clean and torch passes: a wrong-typed `timing` leaves the clean pass out
    (and says so), the rest of the manifest still names the run; the export's figures are unchanged."""
    good = copy_run_fixture(ALL, tmp_path / "good")
    bad = copy_run_fixture(ALL, tmp_path / "bad")
    manifest = _real_manifest(ALL)
    manifest["timing"] = "ok"
    manifest["torch"]["status"] = 1
    manifest["workload"]["tiles"] = -1
    (bad / "manifest.json").write_text(json.dumps(manifest))
    before = sha256(bad / "manifest.json")
    a, b = (run_perfctl("analyze", str(r), "--format", "json") for r in (good, bad))
    assert a.returncode == 0 and b.returncode == 0 and "Traceback" not in b.stderr, b.stderr
    ga, ba = json.loads(a.stdout), json.loads(b.stdout)
    (warning,) = [w for w in ba["warnings"] if "manifest.json" in w]
    for needle in ('timing is "ok", not an object', "torch.status is 1, not text", "workload.tiles is -1"):
        assert needle in warning
    assert "timing" in ga and "timing" not in ba and "operators" not in ba
    assert ba["efficiency"]["available"] is False
    assert ba["run"]["run_id"] == ga["run"]["run_id"] and ba["ranges"] == ga["ranges"]
    assert sha256(bad / "manifest.json") == before


def test_a_damaged_driver_info_of_the_clean_pass(tmp_path: Path) -> None:
    run = copy_run_fixture(ALL, tmp_path / "run")
    info = run / "timing" / "driver-info.json"
    info.write_text(info.read_text()[:100])
    before = tree_digest(run)
    proc = run_perfctl("analyze", str(run), "--format", "json", "--out-dir", str(tmp_path / "out"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    analysis = json.loads(proc.stdout)
    assert any(f"{info} is unusable (not JSON" in w for w in analysis["warnings"])
    assert any("the clean timing pass is left out" in w for w in analysis["warnings"])
    assert "timing" not in analysis and analysis["run"]["run_id"] == "j-deepseek-ocr2-tiny"
    assert tree_digest(run) == before, "--out-dir: the run folder is only read"
    # a device of the wrong type: the clean pass's times stay, its MFU is unknown, not a CPU's
    data = json.loads((FIXTURES / ALL / "timing" / "driver-info.json").read_text())
    info.write_text(json.dumps(data | {"device": 0}))
    proc = run_perfctl("analyze", str(run), "--format", "json", "--out-dir", str(tmp_path / "out"))
    analysis = json.loads(proc.stdout)
    assert proc.returncode == 0 and "timing" in analysis
    assert analysis["efficiency"] == {
        "available": False,
        "reason": "MFU not computed: timing/driver-info.json does not say which device the clean pass ran on",
    }


def test_the_manifests_driver_record_unusable_is_taken_from_driver_info(tmp_path: Path) -> None:
    run = _h200_run(tmp_path)
    manifest = _real_manifest(H200)
    (run / "driver-info.json").write_text(json.dumps(manifest["driver"]))
    (run / "manifest.json").write_text(json.dumps(manifest | {"driver": "cuda"}))
    proc = run_perfctl("analyze", str(run), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    analysis = json.loads(proc.stdout)
    assert analysis["run"]["driver"] == manifest["driver"]
    assert any("the driver's record is taken from" in w for w in analysis["warnings"])


@pytest.mark.parametrize("variant", ["truncated", "json-list", "all-nulls"])
def test_nothing_usable_left_is_exit_2(tmp_path: Path, variant: str) -> None:
    """A run folder whose only input is its manifest (no export, no clean pass): one line."""
    run = tmp_path / "run"
    run.mkdir()
    make, _, _ = VARIANTS[variant]
    _write(run / "manifest.json", *make(_real_manifest(H200)))
    before = tree_digest(run)
    for proc in (run_perfctl("analyze", str(run)), run_perfctl("compare", str(run), str(run))):
        assert_one_line_error(
            proc, 2, f"{run} holds no run.sqlite / run.nsys-rep", "manifest.json is unusable"
        )
    assert tree_digest(run) == before


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_compare_goes_on_and_names_the_bad_manifest(tmp_path: Path, variant: str) -> None:
    make, needles, _ = VARIANTS[variant]
    good = copy_run_fixture(ALL, tmp_path / "good")
    bad = copy_run_fixture(ALL, tmp_path / "bad")
    _write(bad / "manifest.json", *make(_real_manifest(ALL)))
    before = tree_digest(bad)
    proc = run_perfctl("compare", str(good), str(bad), "--format", "json")
    assert tree_digest(bad) == before, "compare never writes into a run folder"
    # usable or not, the H100 export holds kernels: it is analyzed from the export alone if need be
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout)
    said = [w for w in result["warnings"] if w.startswith("run B: ") and "manifest.json" in w]
    if variant == "older-perfctl":
        assert said == []
    else:
        assert len(said) == 1 and all(n in said[0] for n in needles), (needles, result["warnings"])
    assert not list(bad.glob("analysis.json"))


@pytest.mark.parametrize("variant", ["wrong-types", "older-perfctl", "truncated"])
def test_compare_of_a_run_folder_without_its_export(tmp_path: Path, variant: str) -> None:
    """The full-size H100 run kept only its manifest and clean pass: a partial manifest still gives
    its clean-pass times; an unusable one leaves nothing to compare (exit 2, naming it)."""
    make, needles, usable = VARIANTS[variant]
    good = FIXTURES / CLEAN_ONLY
    bad = copy_run_fixture(CLEAN_ONLY, tmp_path / "bad")
    manifest = _real_manifest(CLEAN_ONLY)
    _write(bad / "manifest.json", *make(manifest))
    before = tree_digest(bad)
    proc = run_perfctl("compare", str(good), str(bad), "--format", "json")
    assert tree_digest(bad) == before
    if not usable:
        assert_one_line_error(proc, 2, "holds no run.sqlite / run.nsys-rep", "manifest.json is unusable")
        return
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout)
    assert result["time_source"] == "clean"
    decode = next(s for s in result["stages"] if s["stage"] == "decode")
    assert decode["verdict"] == "within noise"  # the same clean pass on both sides
    said = [w for w in result["warnings"] if w.startswith("run B: ") and "manifest.json" in w]
    assert (said == []) if variant == "older-perfctl" else (len(said) == 1 and needles[1] in said[0])


def test_open_does_not_read_the_manifest(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.nsys-rep").write_bytes(b"stand-in: open only names the report")
    (run / "manifest.json").write_bytes(os.urandom(512))
    proc = run_perfctl("open", str(run), env=dict(os.environ, PATH="/usr/bin:/bin", DISPLAY=""))
    assert proc.returncode == 0 and proc.stdout.strip() == str((run / "run.nsys-rep").resolve())


def _field_paths(fields: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    from perfctl.run_manifest import Field

    out = []
    for key, spec in fields.items():
        assert isinstance(spec, Field)
        out.append((*prefix, key))
        if spec.fields is not None:
            out += _field_paths(dict(spec.fields), (*prefix, key))
    return out


def test_the_report_renders_whatever_field_is_missing_or_null(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    """Every declared field of the manifest, in turn removed and set to null (a wrong type for most:
    then left out): the HTML report renders (its template shows some fields unconditionally)."""
    from perfctl.report.html import render_html
    from perfctl.run_folder import RunFolder
    from perfctl.run_manifest import MANIFEST_FIELDS, report_view

    real = _real_manifest(ALL)
    paths = [p for p in _field_paths(MANIFEST_FIELDS) if _has(real, p)]
    assert len(paths) > 60
    for path in paths:
        for how in ("removed", "null"):
            edited = json.loads(json.dumps(real))
            holder = edited
            for key in path[:-1]:
                holder = holder[key]
            if how == "removed":
                del holder[path[-1]]
            else:
                holder[path[-1]] = None
            (tmp_path / "manifest.json").write_text(json.dumps(edited))
            found = RunFolder(tmp_path).read_manifest()
            html = render_html(
                reference["analysis"], report_view(found.data if found.data is not None else {})
            )
            assert "Run identity" in html, (path, how)


def _has(data: dict[str, Any], path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True
