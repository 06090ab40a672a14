"""Shared test fixtures: real exports (decompressed once per session) and the installed nsys: the
primary one, and the reference nsys of every generation the parity tests compare against."""

from __future__ import annotations

import lzma
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from nsys_reference import nsys_version

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent

# The nsys generations `nsys stats` parity is checked against: the primary nsys (scripts/install-nsys.sh,
# 2022.4 in CI: export schema 3.0, report nvtxkernsum), 2023.4 (schema 3.7, report nvtx_kern_sum) and
# 2024.2 (schema 3.11).
REFERENCE_NSYS = ("primary", "2023.4", "2024.2")
# Each reference generation: the environment variable scripts/test.sh hands its nsys in, and where
# `scripts/install-nsys-reference.sh GENERATION` puts it unless told otherwise.
REFERENCE_INSTALLS = {
    generation: (
        env,
        Path(
            f"/opt/nsight-systems-{generation}/usr/lib/x86_64-linux-gnu/nsight-systems/target-linux-x64/nsys"
        ),
    )
    for generation, env in (("2023.4", "PERFCTL_NSYS_2023"), ("2024.2", "PERFCTL_NSYS_2024"))
}


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


def decompress_fixture(name: str, target_dir: Path) -> Path:
    target = target_dir / name.removesuffix(".xz")
    if not target.exists():
        with lzma.open(FIXTURES / name) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def copy_run_fixture(name: str, target: Path) -> Path:
    """A copy of a run-folder fixture (tests/fixtures/<name>/) with its export decompressed."""
    shutil.copytree(FIXTURES / name, target, ignore=shutil.ignore_patterns("*.xz"))
    for packed in (FIXTURES / name).glob("*.xz"):
        with lzma.open(packed) as src, (target / packed.name.removesuffix(".xz")).open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


@pytest.fixture(scope="session")
def matmul_export(export_dir: Path) -> Path:
    """H200: perfctl:prefill (10 big matmuls) and perfctl:decode (5 small steps)."""
    return decompress_fixture("h200-nvtx-matmul.sqlite.xz", export_dir)


@pytest.fixture(scope="session")
def tiny_gpu_export(export_dir: Path) -> Path:
    """H200: `perfctl capture` of the built-in tiny DeepSeek-OCR-2, 2 pages x 8 tokens."""
    return decompress_fixture("h200-tiny-ocr2.sqlite.xz", export_dir)


@pytest.fixture(scope="session")
def hostile_capture(export_dir: Path, nsys_bin: str) -> Path:
    """A real nsys capture (CPU, NVTX only) of scripts/fixture_programs/hostile_names.py: range and
    domain names full of markup, Markdown syntax, newlines and a very long C++ template."""
    from report_inputs import capture_hostile_names

    return capture_hostile_names(nsys_bin, export_dir / "hostile-names")


def _missing(what: str, how: str) -> NoReturn:
    """A missing nsys skips the test, unless PERFCTL_REQUIRE_NSYS=1 (CI) fails it."""
    if os.environ.get("PERFCTL_REQUIRE_NSYS") == "1":
        pytest.fail(f"{what} is required (PERFCTL_REQUIRE_NSYS=1) but not installed: {how}")
    pytest.skip(f"{what} not installed ({how})")


def find_nsys(which: str) -> str | None:
    """The installed nsys of one of REFERENCE_NSYS, or None. primary: $NSYS or nsys on PATH; 2023.4 and
    2024.2: $PERFCTL_NSYS_2023 / $PERFCTL_NSYS_2024 (scripts/test.sh sets them) or the installer's
    default place."""
    if which == "primary":
        path = os.environ.get("NSYS") or shutil.which("nsys")
    else:
        env, default = REFERENCE_INSTALLS[which]
        path = os.environ.get(env) or str(default)
    return path if path and os.access(path, os.X_OK) else None


_HOW = {
    "primary": "run scripts/install-nsys.sh",
    **{
        generation: f"run scripts/install-nsys-reference.sh {generation}, or set {env} to its nsys"
        for generation, (env, _) in REFERENCE_INSTALLS.items()
    },
}


def _nsys_id(which: str) -> str:
    """A test id naming the nsys by the version it reports, e.g. nsys2022.4.2.1."""
    path = find_nsys(which)
    if not path:
        return f"nsys-{which}-missing"
    try:
        return "nsys" + ".".join(map(str, nsys_version(path)))
    except (OSError, ValueError, subprocess.SubprocessError):
        return f"nsys-{which}-broken"


@pytest.fixture(scope="session")
def nsys_bin() -> str:
    """The installed (primary) nsys. Missing: skipped, or failed under PERFCTL_REQUIRE_NSYS=1."""
    path = find_nsys("primary")
    if not path:
        _missing("nsys", _HOW["primary"])
    return path


@pytest.fixture(scope="session")
def reference_nsys(request: pytest.FixtureRequest) -> str:
    """One installed reference nsys; a test that takes it runs once per REFERENCE_NSYS entry, its id
    naming the nsys version. Missing: skipped, or failed under PERFCTL_REQUIRE_NSYS=1."""
    which: str = request.param
    path = find_nsys(which)
    if not path:
        _missing("nsys" if which == "primary" else f"nsys {which}", _HOW[which])
    return path


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "reference_nsys" in metafunc.fixturenames:
        metafunc.parametrize(
            "reference_nsys",
            REFERENCE_NSYS,
            ids=[_nsys_id(w) for w in REFERENCE_NSYS],
            indirect=True,
            scope="session",
        )


def run_perfctl(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command line, as a user runs it (a child process: exit codes and stderr are real)."""
    return subprocess.run(
        [sys.executable, "-m", "perfctl", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=900,
        check=False,
    )
