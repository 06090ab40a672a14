"""Bad inputs through the real command line: one line on stderr, exit code 2, no traceback, nothing
created or overwritten. Pages that are not images, damaged or decompression bombs; model folders
without config or weights or with damaged ones; unknown names; every numeric option of capture,
analyze and flops out of range; run names that would leave profiles/; untrusted files opened
read-only, never changed, and never spliced into SQL or a shell."""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import sqlite3
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from conftest import REPO, run_perfctl
from faults_support import small_filesystem

SAMPLE = REPO / "src" / "perfctl" / "workloads" / "sample_pages" / "page-01.png"
TINY = REPO / "models" / "deepseek-ocr2-tiny" / "config.json"
MISSING_NSYS = "/nonexistent/nsys"  # reached only if the bad input went unnoticed


def _refused(proc, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfctl: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _capture(tmp_path: Path, *args: str) -> None:
    """A capture refused before it starts: nothing is created under --profiles."""
    profiles = tmp_path / "profiles"
    proc = run_perfctl("capture", *args, "--profiles", str(profiles), "--nsys", MISSING_NSYS)
    return proc  # type: ignore[return-value]


def png_bomb(path: Path, side: int) -> Path:
    """A real, valid greyscale PNG of side x side pixels, all zero: a few hundred KB on disk that would
    take side² bytes (and far more as RGB floats) once decoded. Written row by row, never in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pages")
    folders = {}
    for name, files in {
        "text-named-png": {"notes.png": b"this is a text file, not a page image\n"},
        "truncated": {"page.png": SAMPLE.read_bytes()[:5000]},
        "zero-bytes": {"page.png": b""},
        "corrupt-middle": {
            "page.png": SAMPLE.read_bytes()[:2000] + b"\xff" * 4000 + SAMPLE.read_bytes()[6000:]
        },
        "only-text": {"README.txt": b"no pages here\n"},
        "empty": {},
    }.items():
        folder = root / name
        folder.mkdir()
        for file, data in files.items():
            (folder / file).write_bytes(data)
        folders[name] = folder
    for name, side in (("over-limit", 10_000), ("bomb", 20_000)):
        (root / name).mkdir()
        png_bomb(root / name / "page.png", side)
        folders[name] = root / name
    return folders


@pytest.mark.parametrize(
    "folder, needles",
    [
        ("text-named-png", ["notes.png is not a readable image", "cannot identify image file"]),
        ("truncated", ["page.png is not a readable image", "truncated"]),
        ("zero-bytes", ["page.png is not a readable image"]),
        ("corrupt-middle", ["page.png is not a readable image"]),
        ("only-text", ["no page images"]),
        ("empty", ["no page images"]),
        ("over-limit", ["too large to decode safely", "100000000 pixels", "limit of 89478485"]),
        ("bomb", ["too large to decode safely", "400000000 pixels", "decompression bomb"]),
    ],
)
def test_bad_pages_folder(tmp_path: Path, pages: dict[str, Path], folder: str, needles: list[str]) -> None:
    _refused(_capture(tmp_path, "--pages", str(pages[folder]), "--num-pages", "1"), *needles)
    assert not (tmp_path / "profiles").exists()


def test_missing_pages_folder(tmp_path: Path) -> None:
    _refused(_capture(tmp_path, "--pages", str(tmp_path / "nope")), "pages folder does not exist")


def _model(tmp_path: Path, files: dict[str, bytes]) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _safetensors(header: bytes, declared: int | None = None) -> bytes:
    return struct.pack("<Q", len(header) if declared is None else declared) + header + b"\0" * 64


@pytest.mark.parametrize(
    "files, flags, needles",
    [
        ({}, [], ["has no config.json"]),
        ({"config.json": b"{not json"}, [], ["cannot read", "config.json"]),
        ({"config.json": b"[1, 2, 3]"}, [], ["is not a model config (a JSON object), it holds a list"]),
        ({"config.json": b'{"model_type": "bert"}'}, [], ["model type 'bert'", "not supported yet"]),
        ({"config.json": TINY.read_bytes()}, [], ["has no weights", "--random-weights"]),
        ({"config.json": TINY.read_bytes(), "model.safetensors": b""}, [], ["model.safetensors is empty"]),
        (
            {"config.json": TINY.read_bytes(), "model.safetensors": _safetensors(b'{"w": ', declared=10**9)},
            [],
            ["model.safetensors is not a readable safetensors file"],
        ),
        (
            {"config.json": TINY.read_bytes(), "model.safetensors": _safetensors(b"[1, 2]")},
            [],
            ["model.safetensors is not a readable safetensors file"],
        ),
    ],
)
def test_bad_model_folder(
    tmp_path: Path, files: dict[str, bytes], flags: list[str], needles: list[str]
) -> None:
    model = _model(tmp_path, files)
    _refused(_capture(tmp_path, "--model", str(model), *flags), *needles)
    assert not (tmp_path / "profiles").exists()


@pytest.mark.parametrize("command", [["capture", "--model", "deepseek-ocr3"], ["flops", "deepseek-ocr3"]])
def test_unknown_builtin_name(tmp_path: Path, command: list[str]) -> None:
    proc = run_perfctl(*command, "--nsys", MISSING_NSYS) if command[0] == "capture" else run_perfctl(*command)
    _refused(proc, "deepseek-ocr3", "deepseek-ocr2, deepseek-ocr2-tiny")


def test_flops_config_that_is_not_an_object(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text("[1, 2]")
    _refused(run_perfctl("flops", str(config)), "is not a model config")


CAPTURE_NUMBERS = [
    ("--num-pages", ["0", "-1"], "--num-pages must be at least 1"),
    ("--num-pages", ["1000000000"], "asks for more pages than"),
    ("--repeats", ["0", "-1", "10001"], "--repeats must be between 1 and 10000"),
    ("--max-new-tokens", ["0", "-5", "100001"], "--max-new-tokens must be between 1 and 100000"),
    ("--tiles", ["-1", "7"], "--tiles must be between 0 and 6"),
    ("--warmup", ["-1", "1001"], "--warmup must be between 0 and 1000"),
    ("--seed", ["-1", str(2**32)], "--seed must be between 0 and 4294967295"),
    ("--profile-pages", ["0", "-1"], "--profile-pages must be at least 1"),
    ("--profile-pages", ["5"], "--profile-pages 5 is more than the 4 pages given"),
]


@pytest.mark.parametrize(
    "flag, value, needle", [(f, v, n) for f, values, n in CAPTURE_NUMBERS for v in values] + [
        (f, v, f"Invalid value for '{f}'") for f in ("--num-pages", "--repeats", "--max-new-tokens",
                                                      "--tiles", "--warmup", "--seed", "--profile-pages")
                                                      for v in ("abc", "1.5")
    ],
)  # fmt: skip
def test_capture_numbers_out_of_range(tmp_path: Path, flag: str, value: str, needle: str) -> None:
    _refused(_capture(tmp_path, flag, value), needle)
    assert not (tmp_path / "profiles").exists()


@pytest.fixture()
def analyzed_before(tmp_path: Path, matmul_export: Path) -> Path:
    """A copy of a real export with the results of an earlier analysis beside it."""
    export = tmp_path / "run.sqlite"
    shutil.copy(matmul_export, export)
    (tmp_path / "analysis.json").write_text('{"earlier": true}\n')
    (tmp_path / "report.html").write_text("earlier\n")
    return export


@pytest.mark.parametrize(
    "flag, value, needle",
    [("--top", v, "Invalid value for '--top'") for v in ("0", "-1", "1001", "abc")]
    + [
        (flag, v, f"{flag} must be a number above 0 and at most")
        for flag in ("--peak-tflops", "--peak-bandwidth-gbs")
        for v in ("0", "-1", "nan", "inf", "-inf", "1e300")
    ]
    + [(flag, "abc", f"Invalid value for '{flag}'") for flag in ("--peak-tflops", "--peak-bandwidth-gbs")],
)
def test_analyze_numbers_out_of_range(analyzed_before: Path, flag: str, value: str, needle: str) -> None:
    _refused(run_perfctl("analyze", str(analyzed_before), flag, value), needle)
    assert (analyzed_before.parent / "analysis.json").read_text() == '{"earlier": true}\n'
    assert (analyzed_before.parent / "report.html").read_text() == "earlier\n"


@pytest.mark.parametrize(
    "flag, values, needle",
    [
        ("--tiles", ["-1", "7"], "--tiles must be 0 to 6"),
        ("--prompt-tokens", ["-1", "100001"], "--prompt-tokens must be 0 to 100,000"),
        ("--new-tokens", ["0", "-1", "100001", "1000000000000"], "--new-tokens 1 to 100,000"),
        ("--new-tokens", ["abc"], "Invalid value for '--new-tokens'"),
    ],
)
def test_flops_numbers_out_of_range(flag: str, values: list[str], needle: str) -> None:
    for value in values:
        _refused(run_perfctl("flops", "deepseek-ocr2-tiny", flag, value), needle)


ESCAPING_RUN_IDS = ["../escape", "../../etc/x", "/tmp/absolute", "a/b", "..", ".hidden", "a" * 200]
ESCAPING_RUN_IDS += ["x\ny", "x\n", ""]


@pytest.mark.parametrize("run_id", ESCAPING_RUN_IDS)
def test_run_names_cannot_leave_profiles(tmp_path: Path, run_id: str) -> None:
    outside = sorted(p.name for p in tmp_path.iterdir())
    _refused(_capture(tmp_path, "--run-id", run_id), "run id")
    assert sorted(p.name for p in tmp_path.iterdir()) == outside
    assert not Path("/tmp/absolute").exists()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_analyze_never_changes_the_export(tmp_path: Path, matmul_export: Path) -> None:
    export = tmp_path / "run.sqlite"
    shutil.copy(matmul_export, export)
    before, mtime = _sha256(export), export.stat().st_mtime_ns
    assert run_perfctl("analyze", str(export), "--format", "json").returncode == 0
    assert _sha256(export) == before and export.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "analysis.json",
        "report.html",
        "run.sqlite",
        "summary.md",
    ]


def test_read_only_export_on_a_read_only_filesystem(tmp_path: Path, matmul_export: Path) -> None:
    with small_filesystem(tmp_path / "ro", "64m") as fs:
        export = fs / "run.sqlite"
        shutil.copy(matmul_export, export)
        export.chmod(0o444)
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        proc = run_perfctl("analyze", str(export), "--format", "json", "--out-dir", str(tmp_path / "out"))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["totals"]["kernels"] > 0
        # and analyzing into the read-only folder itself is a clean error, not a traceback
        refused = run_perfctl("analyze", str(export))
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert "Read-only file system" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_file_names_that_are_uri_syntax(tmp_path: Path, matmul_export: Path) -> None:
    """'#' and '?' end a path in an SQLite URI: unescaped, `weird#1?.sqlite` would open (and create)
    `weird` read-write. The path is percent-encoded: the right file, read-only."""
    export = tmp_path / "weird#1?mode=rwc&x=%41.sqlite"
    shutil.copy(matmul_export, export)
    before = _sha256(export)
    proc = run_perfctl("analyze", str(export), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["export"]["path"] == str(export)
    assert _sha256(export) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["analysis.json", "report.html", "summary.md", export.name]
    )


def test_table_names_in_the_export_are_never_sql(tmp_path: Path, matmul_export: Path) -> None:
    """Table and column names come from the user's file: quoted as identifiers or passed as
    parameters, never spliced into SQL."""
    export = tmp_path / "run.sqlite"
    shutil.copy(matmul_export, export)
    with sqlite3.connect(export) as conn:
        conn.execute('CREATE TABLE "x""); DROP TABLE StringIds; --" ("a""b" INTEGER)')
    before = _sha256(export)
    proc = run_perfctl("analyze", str(export), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert _sha256(export) == before
    with sqlite3.connect(f"file:{export}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM StringIds").fetchone()[0] > 0


SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}


def test_no_shell_strings_in_child_processes() -> None:
    """Every child process of perfctl takes an argument list: no shell=True, no os.system/os.popen,
    no command given as a string."""
    offences = []
    for path in sorted((REPO / "src" / "perfctl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            if owner == "os" and node.func.attr in {"system", "popen"} | {
                n for n in dir(__import__("os")) if n.startswith(("exec", "spawn"))
            }:
                offences.append(f"{where} os.{node.func.attr}")
            if owner != "subprocess" or node.func.attr not in SUBPROCESS_CALLS:
                continue
            if node.func.attr in {"getoutput", "getstatusoutput"}:
                offences.append(f"{where} subprocess.{node.func.attr} runs a shell")
            if any(
                k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                for k in node.keywords
            ):
                offences.append(f"{where} shell=")
            first = node.args[0] if node.args else None
            if isinstance(first, (ast.Constant, ast.JoinedStr, ast.BinOp)):
                offences.append(f"{where} command given as a string")
    assert offences == []
