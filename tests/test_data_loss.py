"""Data loss, through the real command line: `capture --force` replaces only a run folder perfctl made
(never a folder of the user's files, `.`, a folder above the working directory, the home folder, a
profiles folder or a symbolic link); the refusal is one line, exit 2, before nsys or the driver runs,
and the folder's whole content is unchanged (a hash of the tree)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, copy_run_fixture, run_perfctl
from input_integrity import assert_one_line_error, tree_digest

MISSING_NSYS = "/nonexistent/nsys"  # reached only if the refusal came too late
RUN_FIXTURE = "h100-tiny-ocr2-all"
TINY_CAPTURE = ("--device", "cpu", "--num-pages", "1", "--max-new-tokens", "2", "--warmup", "0")


def _user_files(folder: Path) -> Path:
    """A folder of a user's own files, nested, with a link among them."""
    (folder / "notes").mkdir(parents=True)
    (folder / "thesis.tex").write_text("\\chapter{Results}\n")
    (folder / "notes" / "data.csv").write_bytes(os.urandom(2048))
    (folder / "link-to-notes").symlink_to("notes")
    return folder


def _with_run_manifest(folder: Path) -> Path:
    """Put a real perfctl manifest into `folder`, its run id set to the folder's name: by the manifest
    alone it would pass for a run folder perfctl made, so only the rule under test can refuse it."""
    manifest = json.loads((FIXTURES / RUN_FIXTURE / "manifest.json").read_text())
    manifest["run_id"] = folder.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _force(out: str, *args: str, cwd: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    profiles = ("--profiles", str(cwd / "profiles")) if "--profiles" not in args else ()
    return run_perfctl(
        "capture", "--out", out, "--force", *profiles, *args, "--nsys", MISSING_NSYS, cwd=cwd, env=env
    )


def _refused_untouched(proc, folder: Path, before: str, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert_one_line_error(proc, 2, *needles)
    assert tree_digest(folder) == before, f"{folder} was changed by a refused --force"


def test_a_folder_of_user_files_is_not_replaced(tmp_path: Path) -> None:
    folder = _user_files(tmp_path / "mine")
    before = tree_digest(folder)
    proc = _force(str(folder), cwd=tmp_path)
    needles = ("--force replaces only a run folder perfctl made", "manifest.json does not exist")
    _refused_untouched(proc, folder, before, *needles)


def test_the_working_directory_is_not_replaced(tmp_path: Path) -> None:
    work = _with_run_manifest(_user_files(tmp_path / "work"))
    before = tree_digest(work)
    _refused_untouched(_force(".", cwd=work), work, before, "it is the working directory")
    (work / "x").mkdir()
    before = tree_digest(work)
    _refused_untouched(_force("x/..", cwd=work), work, before, "it is the working directory")


def test_a_folder_above_the_working_directory_is_not_replaced(tmp_path: Path) -> None:
    parent = _with_run_manifest(_user_files(tmp_path / "parent"))
    work = parent / "deep" / "work"
    work.mkdir(parents=True)
    before = tree_digest(parent)
    proc = _force("../..", cwd=work)
    _refused_untouched(proc, parent, before, "it holds the working directory")


def test_the_home_folder_is_not_replaced(tmp_path: Path) -> None:
    home = _with_run_manifest(_user_files(tmp_path / "home"))
    before = tree_digest(home)
    env = dict(os.environ, HOME=str(home))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _refused_untouched(_force(str(home), cwd=elsewhere, env=env), home, before, "it is the home folder")


def test_a_profiles_folder_is_not_replaced(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    run = copy_run_fixture(RUN_FIXTURE, profiles / "j-deepseek-ocr2-tiny")
    _with_run_manifest(profiles)
    before = tree_digest(profiles)
    given = _force(str(profiles), "--profiles", str(profiles), cwd=tmp_path)
    _refused_untouched(given, profiles, before, "it is the profiles folder (--profiles)")
    # not the one given, but a profiles folder all the same: it holds run folders of its own ...
    other = _force(str(profiles), "--profiles", str(tmp_path / "other"), cwd=tmp_path)
    _refused_untouched(other, profiles, before, "it holds run folders of its own (j-deepseek-ocr2-tiny)")
    # ... or a run registry
    shutil.rmtree(run)
    (profiles / "index.db").write_bytes(b"")
    before = tree_digest(profiles)
    registry = _force(str(profiles), "--profiles", str(tmp_path / "other"), cwd=tmp_path)
    _refused_untouched(registry, profiles, before, "it holds a run registry (index.db)")


def test_a_symbolic_link_is_not_replaced(tmp_path: Path) -> None:
    run = copy_run_fixture(RUN_FIXTURE, tmp_path / "j-deepseek-ocr2-tiny")
    link = tmp_path / "link"
    link.symlink_to(run)
    before = tree_digest(tmp_path)
    _refused_untouched(_force(str(link), cwd=tmp_path), tmp_path, before, "it is a symbolic link")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    before = tree_digest(tmp_path)
    _refused_untouched(_force(str(dangling), cwd=tmp_path), tmp_path, before, "it is a symbolic link")


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda m: m | {"run_id": "someone-else"}, "its manifest.json is of run 'someone-else'"),
        (lambda m: {k: v for k, v in m.items() if k != "perfctl_version"}, "has no perfctl_version"),
        (lambda m: m | {"started_at": "yesterday"}, "no time perfctl wrote"),
        (lambda m: [m], "is unusable (it holds a list, not a JSON object)"),
    ],
    ids=["copied-under-another-name", "no-version", "no-start-time", "a-list"],
)
def test_a_manifest_that_is_not_this_folders_record(
    tmp_path: Path, edit: Callable[[dict[str, Any]], Any], needle: str
) -> None:
    run = copy_run_fixture(RUN_FIXTURE, tmp_path / "j-deepseek-ocr2-tiny")
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps(edit(manifest)))
    before = tree_digest(run)
    _refused_untouched(_force(str(run), cwd=tmp_path), run, before, needle)


def test_without_force_an_existing_folder_is_refused_before_nsys(tmp_path: Path) -> None:
    folder = _user_files(tmp_path / "mine")
    before = tree_digest(folder)
    proc = run_perfctl("capture", "--out", str(folder), "--nsys", MISSING_NSYS, cwd=tmp_path)
    _refused_untouched(proc, folder, before, "already exists; pass --force to replace it")


@pytest.mark.nsys
@pytest.mark.slow
def test_a_run_folder_perfctl_made_is_replaced(tmp_path: Path, nsys_bin: str) -> None:
    """A real run folder (the H100 fixture, under the name its manifest gives) is replaced by a new
    capture: nothing of the old folder is left."""
    run = copy_run_fixture(RUN_FIXTURE, tmp_path / "j-deepseek-ocr2-tiny")
    (run / "left-from-before.txt").write_text("the old run's\n")
    old = json.loads((run / "manifest.json").read_text())
    proc = run_perfctl(
        "capture", "--out", str(run), "--force", *TINY_CAPTURE, "--nsys", nsys_bin, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (run / "left-from-before.txt").exists() and not (run / "timing").exists()
    new = json.loads((run / "manifest.json").read_text())
    assert new["status"] == "ok" and new["run_id"] == run.name and new["started_at"] > old["started_at"]
    assert new["workload"]["device"] == "cpu" and (run / "run.nsys-rep").is_file()
    # `--out` outside the profiles folder (./profiles): no registry is made beside it, said once
    notes = [
        ln for ln in proc.stderr.splitlines() if ln.startswith("perfctl: note: run registry not updated")
    ]
    assert len(notes) == 1 and f"{run} is not in the profiles folder profiles (--profiles)" in notes[0]
    assert list(tmp_path.rglob("index.db")) == []


# --- one analysis writes all its outputs or none ---

OUTPUTS = ("analysis.json", "report.html", "summary.md")


def _outputs(folder: Path) -> dict[str, tuple[int, str] | None]:
    """Each output's inode and content hash (None when absent): a replaced file has a new inode."""
    from input_integrity import sha256

    return {
        name: ((folder / name).stat().st_ino, sha256(folder / name)) if (folder / name).is_file() else None
        for name in OUTPUTS
    }


def _no_leftovers(folder: Path) -> None:
    left = [
        p.name
        for p in folder.iterdir()
        if p.name.startswith(".") and p.name.endswith((".partial", ".previous"))
    ]
    assert left == [], left


def test_a_manifest_field_the_report_cannot_use_still_gives_all_three_outputs(tmp_path: Path) -> None:
    """Before: `driver` a number made the report fail after a new analysis.json was written beside the
    old report.html and summary.md. Now the field is left out with a warning, and all three are new."""
    run = copy_run_fixture(RUN_FIXTURE, tmp_path / "run")
    assert run_perfctl("analyze", str(run)).returncode == 0
    before = _outputs(run)
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps(manifest | {"driver": 5}))
    proc = run_perfctl("analyze", str(run))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    after = _outputs(run)
    for name in OUTPUTS:
        assert after[name] is not None and before[name] is not None
        assert after[name][0] != before[name][0], f"{name} was not replaced with the others"
    analysis = json.loads((run / "analysis.json").read_text())
    assert any("driver is 5, not an object" in w for w in analysis["warnings"])
    _no_leftovers(run)


@pytest.mark.parametrize("in_the_way", OUTPUTS)
def test_a_failure_while_putting_the_outputs_in_place_changes_none(tmp_path: Path, in_the_way: str) -> None:
    """A folder in the way of one output name (a real rename failure, after the other outputs may
    already be in place): exit 1, one line, and the earlier outputs exactly as they were."""
    run = copy_run_fixture(RUN_FIXTURE, tmp_path / "run")
    assert run_perfctl("analyze", str(run)).returncode == 0
    (run / in_the_way).unlink()
    (run / in_the_way).mkdir()
    (run / in_the_way / "keep.txt").write_text("a folder of the user's\n")
    before, folder_before = _outputs(run), tree_digest(run / in_the_way)
    proc = run_perfctl("analyze", str(run))
    assert_one_line_error(
        proc, 1, f"cannot write {run / in_the_way}", "none of the analysis outputs was changed"
    )
    assert _outputs(run) == before and tree_digest(run / in_the_way) == folder_before
    _no_leftovers(run)
    # into a fresh --out-dir: no output at all is left behind
    out = tmp_path / "out"
    (out / in_the_way).mkdir(parents=True)
    proc = run_perfctl("analyze", str(run), "--out-dir", str(out))
    assert_one_line_error(proc, 1, "none of the analysis outputs was changed")
    assert sorted(p.name for p in out.iterdir()) == [in_the_way]
