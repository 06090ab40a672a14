"""Finding an NVIDIA command-line tool (nsys, ncu) that a user named or that is on the machine, and
reading its version: one way for both, with one error contract (BadInput naming the install hint)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from perfctl.errors import BadInput


def tool_version(candidate: str | None, tool: str, what: str, hint: str, pattern: str) -> tuple[Path, str]:
    """(path, version) of the tool at `candidate`, its version the first group of `pattern` in what
    `--version` prints; BadInput (with `hint`) when there is none, it is no executable, or it says no
    version. `tool`: its command name; `what`: what it is, for the message."""
    if not candidate:
        raise BadInput(f"{tool} ({what}) not found: {hint}")
    path = Path(candidate)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BadInput(f"{tool} at {path} is not an executable file: {hint}")
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise BadInput(f"cannot run {path}: {exc}") from None
    match = re.search(pattern, out.stdout + out.stderr)
    if not match:
        raise BadInput(f"{path} does not look like {tool} (its --version said: {out.stdout.strip()[:80]!r})")
    return path, match.group(1)
