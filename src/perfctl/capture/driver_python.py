"""The Python interpreter that runs the driver (`perfctl capture --driver-python`), and what it has.

By default the driver runs in perfctl's own interpreter. A model whose code needs other library
versions than perfctl's -- DeepSeek-OCR v1's remote code is written for transformers 4.46.x, perfctl
runs on 5.x -- runs its driver in a second environment: that interpreter gets perfctl's own package on
its PYTHONPATH (a folder holding only a link to the package, so that nothing else of perfctl's
environment, such as its transformers, shadows the driver environment's) and imports the driver
from there. The driver needs only the standard library, torch, transformers, Pillow and nvtx.

The interpreter is asked once, before anything runs, for its Python and package versions; the
manifest keeps them (`driver_python`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import perfctl
from perfctl.errors import BadInput
from perfctl.hardware.host import package_versions
from perfctl.run_folder import DRIVER_PYTHONPATH_DIR

DRIVER_PACKAGES = ["torch", "transformers", "tokenizers", "torchvision", "nvtx", "pillow"]
PROBE_TIMEOUT_S = 60

# Run by the other interpreter: its versions, and whether it finds perfctl's driver on the path given.
_PROBE = """
import importlib.metadata as m, importlib.util as u, json, platform, sys
def v(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
print(json.dumps({"python": platform.python_version(), "executable": sys.executable,
                  "packages": {n: v(n) for n in sys.argv[1:]},
                  "driver_found": u.find_spec("perfctl.driver") is not None}))
"""


@dataclass(frozen=True)
class DriverPython:
    path: str  # as the user gave it (or sys.executable)
    python: str
    packages: dict[str, str | None]
    own: bool  # perfctl's own interpreter: no PYTHONPATH to set

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "python": self.python, "own_interpreter": self.own, **self.packages}


def own_interpreter() -> DriverPython:
    return DriverPython(sys.executable, platform.python_version(), package_versions(DRIVER_PACKAGES), True)


def package_root() -> Path:
    """The folder of perfctl's package (…/perfctl), links resolved."""
    return Path(perfctl.__file__).resolve().parent


def driver_env_path(folder: Path) -> str:
    """A PYTHONPATH entry holding a link to perfctl's package and nothing else, made in `folder`."""
    folder.mkdir(exist_ok=True)
    link = folder / "perfctl"
    if not link.is_symlink():
        link.symlink_to(package_root(), target_is_directory=True)
    return str(folder)


def pythonpath_with(entry: str) -> str:
    rest = os.environ.get("PYTHONPATH", "")
    return entry + (os.pathsep + rest if rest else "")


def probe_interpreter(path: str, scratch: Path) -> DriverPython:
    """Ask the interpreter at `path` for its versions; BadInput when it cannot run or cannot find
    perfctl's driver with perfctl's package on its path (`scratch`: a folder for that path entry)."""
    if path == sys.executable:
        return own_interpreter()
    exe = Path(path)
    if not exe.is_file() or not os.access(exe, os.X_OK):
        raise BadInput(f"--driver-python {path} is not an executable file")
    env = dict(os.environ, PYTHONPATH=pythonpath_with(driver_env_path(scratch)))
    try:
        proc = subprocess.run(
            [path, "-c", _PROBE, *DRIVER_PACKAGES],
            capture_output=True,
            text=True,
            env=env,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
        found = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        raise BadInput(f"--driver-python {path} did not run as a Python interpreter ({exc})") from None
    if not isinstance(found, dict):
        said = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BadInput(f"--driver-python {path} did not run as a Python interpreter ({said})")
    if not found.get("driver_found"):
        raise BadInput(f"--driver-python {path} does not find perfctl's driver on the path perfctl gives it")
    missing = [n for n in ("torch", "transformers", "nvtx") if not found["packages"].get(n)]
    if missing:
        raise BadInput(
            f"--driver-python {path} lacks {', '.join(missing)}, which the driver needs "
            "(torch, transformers, Pillow and nvtx<0.2.12)"
        )
    return DriverPython(path, str(found["python"]), dict(found["packages"]), False)


def driver_command(
    run_dir: Path, manifest: dict[str, Any], workload: Path
) -> tuple[list[str], dict[str, str]]:
    """The driver's command line and the environment it needs: perfctl's own interpreter as it is, or
    the manifest's --driver-python with perfctl's package on its PYTHONPATH."""
    python = manifest.get("driver_python") or {}
    if python.get("own_interpreter", True):
        return [sys.executable, "-m", "perfctl.driver", str(workload)], {}
    entry = driver_env_path(run_dir / DRIVER_PYTHONPATH_DIR)
    env = {"PYTHONPATH": pythonpath_with(entry)}
    return [str(python["path"]), "-m", "perfctl.driver", str(workload)], env
