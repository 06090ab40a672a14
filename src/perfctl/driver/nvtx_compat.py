"""Will the running nsys see our NVTX ranges?

Measured (../shared/docs/nsys-facts.md, docs/nsys-generations.md): nsys 2022.4, 2023.4 and 2024.2 all
record only domain create/destroy events from the `nvtx` Python package >= 0.2.12 (0.2.12 and 0.2.16
tried), never its push/pop or start/end ranges; 0.2.10 and 0.2.11 work with all three. perfctl pins
nvtx < 0.2.12, and the driver refuses to run a capture that would come back empty. Newer nsys releases
are not measured: they are let through, and the capture verifies afterwards that the ranges arrived
(perfctl.capture.run).
"""

from __future__ import annotations

import re
from importlib import metadata

NVTX_FIRST_UNSEEN_BY_OLD_NSYS = (0, 2, 12)
# The newest nsys release measured to lose the ranges of nvtx >= 0.2.12 (2024.2.3, CPU capture).
NSYS_LAST_LOSING_NEW_NVTX = (2024, 2)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def nvtx_problem(nvtx_version: str | None, nsys_version: str | None) -> str | None:
    """A one-line reason why ranges would be invisible, or None when this pair is known to work."""
    if nvtx_version is None:
        return "the `nvtx` package is not installed (pip install 'nvtx<0.2.12')"
    if not nsys_version:
        return None  # not under nsys (or unknown): nothing to check
    nsys = _version_tuple(nsys_version)
    if (
        _version_tuple(nvtx_version) >= NVTX_FIRST_UNSEEN_BY_OLD_NSYS
        and nsys[:2] <= NSYS_LAST_LOSING_NEW_NVTX
    ):
        return (
            f"nvtx {nvtx_version} emits ranges that nsys {nsys_version} does not record "
            f"(only domain events arrive); install nvtx 0.2.11: pip install 'nvtx==0.2.11'"
        )
    return None


def installed_nvtx_version() -> str | None:
    try:
        return metadata.version("nvtx")
    except metadata.PackageNotFoundError:
        return None
