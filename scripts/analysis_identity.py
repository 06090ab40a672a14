"""Show that a change leaves perfctl's analysis as it was: analyze every export and run folder among the
test fixtures with the code of a base revision and with this checkout's, and compare what each wrote.

Why: a restructuring (a new module layout, typed results) must not change one figure. The tests check
behaviour through assertions; this checks the whole output, byte for byte, on real exports.

For each fixture (each `tests/fixtures/*.sqlite.xz`, decompressed, and each run-folder fixture, a folder
holding a manifest.json) both trees run `python -m perfctl analyze` on a fresh copy at the same path,
so that the paths written into analysis.json are the same. Compared: analysis.json, summary.md and
report.html byte for byte, and, where analyze refuses, its exit status and stderr.

    usage: python scripts/analysis_identity.py [--base REV] [--keep DIR]

REV defaults to `git merge-base HEAD main`. Prints one line per fixture and exits 1 when any differs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from conftest import FIXTURES, copy_run_fixture, decompress_fixture  # noqa: E402  (the tests' own copying)

OUTPUTS = ("analysis.json", "summary.md", "report.html")
# what a tree needs to run perfctl from source: its package, and the bundled folders resources.py finds
# beside it in a checkout
TREE_PARTS = ("src", "models", "templates")
# CPU captures and timing-only folders have no kernels: analyze refuses them unless told
ANALYZE_ARGS = ("--allow-no-kernels", "--quiet")


def fixtures() -> list[Path]:
    exports = sorted(FIXTURES.glob("*.sqlite.xz"))
    run_folders = sorted(p for p in FIXTURES.iterdir() if (p / "manifest.json").is_file())
    return exports + run_folders


def unpack_tree(rev: str, into: Path) -> Path:
    """The source tree of `rev` (its src, models and templates) under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev, *TREE_PARTS],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def place_fixture(fixture: Path, at: Path) -> Path:
    """A fresh copy of `fixture` at `at` (exports decompressed); returns what analyze is given."""
    if at.exists():
        shutil.rmtree(at)
    at.mkdir(parents=True)
    if fixture.is_file():
        return decompress_fixture(fixture.name, at)
    return copy_run_fixture(fixture.name, at / fixture.name)


def analyze(tree: Path, target: Path, out_dir: Path) -> dict[str, bytes]:
    """Run `tree`'s perfctl analyze on `target`; what it wrote and how it ended."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    done = subprocess.run(
        [sys.executable, "-m", "perfctl", "analyze", str(target), "--out-dir", str(out_dir), *ANALYZE_ARGS],
        capture_output=True,
        env=env,
        cwd=target.parent,
    )
    result = {"exit status": str(done.returncode).encode()}
    if done.returncode != 0:
        result["stderr"] = done.stderr
    for name in OUTPUTS:
        path = out_dir / name
        if path.is_file():
            result[name] = path.read_bytes()
    return result


def compare_one(fixture: Path, base: Path, work: Path) -> tuple[list[str], str]:
    """The differences between the two trees' results on `fixture`, and what was compared."""
    results = []
    for tree in (base, REPO):
        target = place_fixture(fixture, work / "fixture")
        out_dir = work / "out"
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir()
        results.append(analyze(tree, target, out_dir))
    before, after = results
    differences = [
        f"{key}: {len(before.get(key, b''))} bytes before, {len(after.get(key, b''))} after"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]
    written = [name for name in OUTPUTS if name in before]
    compared = ", ".join(written) if written else f"refused, exit status {before['exit status'].decode()}"
    return differences, compared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="revision to compare against [default: merge base with main]")
    parser.add_argument("--keep", type=Path, help="work folder to use and keep (default: a temporary one)")
    args = parser.parse_args()
    base_rev = (
        args.base
        or subprocess.run(
            ["git", "-C", str(REPO), "merge-base", "HEAD", "main"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    work = args.keep or Path(tempfile.mkdtemp(prefix="perfctl-analysis-identity-"))
    work.mkdir(parents=True, exist_ok=True)
    base = unpack_tree(base_rev, work / "base-tree")
    differing = 0
    every = fixtures()
    try:
        for fixture in every:
            differences, compared = compare_one(fixture, base, work)
            differing += bool(differences)
            verdict = f"identical ({compared})" if not differences else "DIFFERENT: " + "; ".join(differences)
            print(f"{fixture.name}: {verdict}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{len(every) - differing} of {len(every)} fixtures identical to {base_rev[:12]}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
