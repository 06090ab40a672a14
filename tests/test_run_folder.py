"""RunFolder: what a user's path is (`RunFolder.find`), on real run-folder fixtures and on each kind of
path; its files and pass folders; its manifest; and that the run folder's file names are spelled out
in perfctl.run_folder alone."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import perfctl
from conftest import FIXTURES, copy_run_fixture
from perfctl import run_folder
from perfctl.errors import BadInput
from perfctl.run_folder import PASS_FOLDERS, RunFolder

SRC = Path(perfctl.__file__).parent


def _named_run_fixture(name: str, tmp_path: Path) -> Path:
    """A copy of a run-folder fixture under its own run id (what capture names the folder)."""
    run_id = json.loads((FIXTURES / name / "manifest.json").read_text())["run_id"]
    return copy_run_fixture(name, tmp_path / run_id)


def test_a_run_folder_is_found_with_its_files_and_pass_folders(tmp_path: Path) -> None:
    run_dir = _named_run_fixture("h200-llama1b-warmup0", tmp_path)
    found = RunFolder.find(run_dir)
    assert (found.path, found.kind, found.folder) == (run_dir, "run_folder", RunFolder(run_dir))
    folder = found.folder
    for path in (
        folder.manifest_path,
        folder.export,
        folder.nsys_log,
        folder.model_config,
        folder.nsys_pass.workload,
        folder.nsys_pass.pages,
        folder.nsys_pass.driver_info,
        folder.nsys_pass.driver_log,
        folder.timing.workload,
        folder.timing.pages,
        folder.timing.driver_info,
        folder.timing.driver_log,
        folder.timing.telemetry,
        folder.timing.resolved_config,
    ):
        assert path.is_file(), path
    assert folder.nsys_pass.path == run_dir
    assert folder.timing.path == run_dir / "timing"
    assert not folder.report.exists() and folder.report.name == "run.nsys-rep"
    manifest = folder.read_manifest()
    assert manifest.state == "ok" and manifest.path == run_dir / "manifest.json"
    assert folder.timing.read_driver_info().state == "ok"
    assert folder.why_not_made_by_perfctl() is None
    assert not folder.capture_running()


def test_a_torch_only_run_folder_has_its_torch_pass(tmp_path: Path) -> None:
    run_dir = _named_run_fixture("h200-full-ocr2-torch-only", tmp_path)
    folder = RunFolder.find(run_dir).folder
    assert folder.torch.path == run_dir / "torch"
    assert folder.torch.operators.is_file() and folder.torch.driver_info.is_file()
    assert folder.torch.torch_trace_gz == run_dir / "torch" / "trace.json.gz"
    assert (folder.read_manifest().data or {}).get("tool") == "torch"


def test_each_kind_of_path(tmp_path: Path) -> None:
    run_dir = copy_run_fixture("h100-tiny-ocr2-all", tmp_path / "run")
    (run_dir / "run.nsys-rep").write_bytes(b"")
    (run_dir / "run.qdstrm").write_bytes(b"")
    (run_dir / "analysis.json").write_text("{}")
    (tmp_path / "odd.json").mkdir()  # a folder is a folder, whatever its name
    expected = {
        run_dir: "run_folder",
        run_dir / "run.sqlite": "export",
        run_dir / "run.nsys-rep": "report",
        run_dir / "run.qdstrm": "stream",
        run_dir / "analysis.json": "analysis",
        run_dir / "manifest.json": "analysis",  # any .json file: compare says what it holds
        run_dir / "timing" / "pages.jsonl": "export",  # any other file: analyze says what it holds
        tmp_path / "odd.json": "run_folder",
    }
    for path, kind in expected.items():
        found = RunFolder.find(path)
        assert found.kind == kind, path
        assert found.folder.path == (path if path.is_dir() else path.parent)
    assert RunFolder.find(run_dir).folder.analysis == run_dir / "analysis.json"


def test_a_path_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    with pytest.raises(BadInput, match=r"^no such file or folder: .*nothing-here$"):
        RunFolder.find(missing)


def test_the_manifest_is_written_whole_and_read_back(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run-1")
    folder.path.mkdir()
    folder.write_manifest({"run_id": "run-1", "perfctl_version": "0", "started_at": "2026-01-01T00:00:00"})
    assert folder.read_manifest().state == "ok"
    assert folder.why_not_made_by_perfctl() is None
    folder.write_manifest({"run_id": "another", "perfctl_version": "0", "started_at": "2026-01-01T00:00:00"})
    assert "its manifest.json is of run 'another'" in (folder.why_not_made_by_perfctl() or "")


def test_the_pass_folders_are_declared() -> None:
    assert set(PASS_FOLDERS) == {"nsys", "timing", "torch", "ncu", "ranks"}
    assert PASS_FOLDERS["nsys"] == ""  # the nsys pass writes at the run folder's top
    assert RunFolder(Path("r")).pass_folder("ncu").path == Path("r/ncu")


# The run folder's names, as perfctl.run_folder declares them: file names, suffixes, dot-folders.
RUN_FOLDER_NAMES = {
    value
    for key, value in vars(run_folder).items()
    if key.endswith(("_FILE", "_SUFFIX", "_DIR")) and isinstance(value, str)
}
PASS_NAMES = {folder for folder in PASS_FOLDERS.values() if folder}
# (module, literal) -> why it stays spelled out there
ALLOWED = {
    ("commands/doctor.py", "nsys.log"): "the self-test's own nsys log, in a scratch folder (no run folder)",
    ("commands/doctor.py", ".nsys-rep"): "the self-test's own report, in its scratch folder",
    ("commands/doctor.py", ".sqlite"): "the self-test's own export, in its scratch folder",
}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _spelled_names(tree: ast.AST) -> list[tuple[int, str]]:
    """Run-folder names written as a literal (a whole string, a piece of an f-string, a pass
    folder's name after `/`); prose that mentions a file in a message or a docstring is not one."""
    docstrings = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            value = node.value
            head, _, tail = value.partition("/")
            if value in RUN_FOLDER_NAMES or (head in PASS_NAMES and tail in RUN_FOLDER_NAMES):
                out.append((node.lineno, value))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and right.value in PASS_NAMES:
                out.append((node.lineno, str(right.value)))
    return out


def test_run_folder_names_are_spelled_out_in_run_folder_py_alone() -> None:
    assert {"manifest.json", "workload.json", "pages.jsonl", "index.db", ".nsys-rep"} <= RUN_FOLDER_NAMES
    spelled, allowed_seen = [], set()
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "run_folder.py":
            continue
        where = str(path.relative_to(SRC))
        for line, value in _spelled_names(ast.parse(path.read_text(), str(path))):
            if (where, value) in ALLOWED:
                allowed_seen.add((where, value))
            else:
                spelled.append(f"{where}:{line}: {value!r}")
    assert allowed_seen == set(ALLOWED), "an allowed name is no longer spelled out: drop it from ALLOWED"
    assert not spelled, "run-folder names belong in perfctl/run_folder.py:\n" + "\n".join(spelled)


def test_the_scan_sees_a_spelled_name_and_not_prose() -> None:
    code = (
        '"""Reads manifest.json."""\n'
        'a = run_dir / "manifest.json"\n'
        'b = run_dir / "timing"\n'
        'c = f"{base}.nsys-rep"\n'
        'd = "timing/pages.jsonl"\n'
        'e = "manifest.json records both at their sizes"\n'
    )
    spelled = [value for _, value in _spelled_names(ast.parse(code))]
    assert sorted(spelled) == sorted(["manifest.json", "timing", ".nsys-rep", "timing/pages.jsonl"])
