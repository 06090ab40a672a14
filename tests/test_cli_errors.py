"""Bad input: a one-line reason on stderr, exit code 2, no traceback, nothing overwritten."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_perfctl
from faults_support import own_nsys_session


def _assert_clean_error(proc, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("perfctl: error:") or err.startswith("Usage:") or "Error:" in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_missing_nsys_gives_install_hint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NSYS"}
    env["PATH"] = str(Path(os.__file__).parent)  # a PATH without nsys
    proc = run_perfctl("capture", "--profiles", str(tmp_path), env=env)
    _assert_clean_error(proc, "nsys", "install-nsys.sh")
    assert not any(tmp_path.iterdir()), "no run folder may be left behind"


def test_nsys_path_that_is_not_nsys(tmp_path: Path) -> None:
    _assert_clean_error(run_perfctl("capture", "--nsys", "/bin/true", "--profiles", str(tmp_path)), "nsys")


@pytest.mark.parametrize("content", [b"", b"this is not a database at all" * 100])
def test_analyze_non_sqlite(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(content)
    _assert_clean_error(run_perfctl("analyze", str(bad)), str(bad))


def test_analyze_sqlite_that_is_not_an_nsys_export(tmp_path: Path) -> None:
    db = tmp_path / "other.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    _assert_clean_error(run_perfctl("analyze", str(db)), "not an Nsight Systems export")
    with sqlite3.connect(db) as conn:  # the input was not modified
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["t"]


def test_analyze_truncated_export(tmp_path: Path, matmul_export: Path) -> None:
    cut = tmp_path / "cut.sqlite"
    cut.write_bytes(matmul_export.read_bytes()[:300_000])
    _assert_clean_error(run_perfctl("analyze", str(cut)))


@pytest.mark.nsys
def test_analyze_export_without_nvtx_ranges(tmp_path: Path, nsys_bin: str) -> None:
    """A real capture of a program that emits no NVTX: nothing to attribute, so exit 2."""
    import subprocess
    import sys

    out = tmp_path / "plain"
    with own_nsys_session("an export without NVTX") as env:
        subprocess.run(
            [nsys_bin, "profile", "--trace=osrt", "--sample=none", "--cpuctxsw=none", "--export=sqlite",
             "-o", str(out), sys.executable, "-c", "sum(range(10**6))"],
            check=True, capture_output=True, env=env, timeout=300,
        )  # fmt: skip
    proc = run_perfctl("analyze", str(out.with_suffix(".sqlite")))
    _assert_clean_error(proc, "no NVTX", "--trace")
    assert not (tmp_path / "analysis.json").exists()


def test_analyze_missing_path_and_folder_without_export(tmp_path: Path) -> None:
    _assert_clean_error(run_perfctl("analyze", str(tmp_path / "nope.sqlite")), "no such file")
    _assert_clean_error(run_perfctl("analyze", str(tmp_path)), "run folder")


def test_empty_pages_folder(tmp_path: Path) -> None:
    empty = tmp_path / "pages"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    _assert_clean_error(
        run_perfctl("capture", "--pages", str(empty), "--profiles", str(tmp_path / "p")), "no page images"
    )


def test_model_path_that_does_not_exist(tmp_path: Path) -> None:
    _assert_clean_error(
        run_perfctl("capture", "--model", str(tmp_path / "no-model"), "--profiles", str(tmp_path)),
        "neither a built-in model",
    )


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--repeats", "0"], "--repeats"),
        (["--max-new-tokens", "-3"], "--max-new-tokens"),
        (["--num-pages", "500"], "more pages"),
        (["--device", "tpu"], "--device"),
        (["--dtype", "int3"], "--dtype"),
        (["--run-id", "../escape"], "run id"),
        (["--tool", "torch", "--nsys-telemetry"], "--nsys-telemetry samples NVML during the nsys pass"),
        (["--trace", "cuda,osrt"], "lacks nvtx"),
    ],
)
def test_bad_capture_options(tmp_path: Path, args: list[str], needle: str) -> None:
    _assert_clean_error(run_perfctl("capture", *args, "--profiles", str(tmp_path)), needle)
    assert not list(tmp_path.iterdir())


def test_unknown_schema_version_is_named_then_analyzed(tmp_path: Path, matmul_export: Path) -> None:
    """A schema perfctl has not been checked against: a warning naming it, then the best effort."""
    newer = tmp_path / "newer.sqlite"
    newer.write_bytes(matmul_export.read_bytes())
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE EXPORT_META_DATA SET value = '9.1.0' WHERE name = 'EXPORT_SCHEMA_VERSION'")
    proc = run_perfctl("analyze", str(newer), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    warnings = json.loads(proc.stdout)["warnings"]
    assert any("9.1.0" in w and "not been checked" in w for w in warnings), warnings


def test_a_dependency_missing_from_the_python_is_one_line_naming_it(tmp_path: Path) -> None:
    """Seen on a GPU host whose Python lacked sqlite-utils: the registry's write was a traceback. Here
    the package is made unimportable the way Python marks an absent module (sys.modules[name] = None)."""
    from conftest import REPO, copy_run_fixture

    run = copy_run_fixture("cpu-tiny-ocr2-all", tmp_path / "profiles" / "cpu-tiny-ocr2-all")
    code = (
        "import sys; sys.modules['sqlite_utils'] = None; from perfctl.cli import main; "
        f"main(['analyze', {str(run)!r}, '--profiles', {str(run.parent)!r}])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300,
        env=os.environ | {"PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "'sqlite_utils' is not installed" in proc.stderr
