"""What the data-loss and bad-manifest tests compare before and after a command: a file's sha256 and a
whole tree's content (names, kinds, bytes, link targets), so that "untouched" is checked, not assumed."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(root: Path) -> str:
    """One hash over everything under `root` (links not followed): each entry's relative path, its
    kind, and its bytes or link target."""
    digest = hashlib.sha256()
    entries = [root, *sorted(root.rglob("*"))] if not root.is_symlink() else [root]
    for path in entries:
        rel = str(path.relative_to(root)) if path != root else "."
        if path.is_symlink():
            digest.update(f"L {rel} -> {os.readlink(path)}\n".encode())
        elif path.is_dir():
            digest.update(f"D {rel}\n".encode())
        else:
            digest.update(f"F {rel} {sha256(path)}\n".encode())
    return digest.hexdigest()


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The error contract: exit `code`, one line on stderr starting `perfctl: error: `, no traceback,
    every needle in that line. Returns the line."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfctl: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
