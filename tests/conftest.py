"""Shared test fixtures: real exports (decompressed once per session) and the installed nsys."""

from __future__ import annotations

import lzma
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


def decompress_fixture(name: str, target_dir: Path) -> Path:
    target = target_dir / name.removesuffix(".xz")
    if not target.exists():
        with lzma.open(FIXTURES / name) as src, target.open("wb") as dst:
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
def nsys_bin() -> str:
    """The installed nsys. Missing nsys skips the test, unless PERFCTL_REQUIRE_NSYS=1 (CI) fails it."""
    path = os.environ.get("NSYS") or shutil.which("nsys")
    if not path:
        if os.environ.get("PERFCTL_REQUIRE_NSYS") == "1":
            pytest.fail(
                "nsys is required (PERFCTL_REQUIRE_NSYS=1) but not installed: run scripts/install-nsys.sh"
            )
        pytest.skip("nsys not installed (scripts/install-nsys.sh)")
    return path


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
