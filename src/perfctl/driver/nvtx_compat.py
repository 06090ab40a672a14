"""Will the running nsys see our NVTX ranges?

Measured (../shared/docs/nsys-facts.md): nsys 2022.4 records only domain create/destroy events from
the `nvtx` Python package >= 0.2.12, never its push/pop or start/end ranges; 0.2.10 and 0.2.11 work.
perfctl pins nvtx < 0.2.12, and the driver refuses to run a capture that would come back empty.
The capture also verifies afterwards that the ranges arrived (perfctl.capture.run).
"""

from __future__ import annotations

import re
from importlib import metadata

NVTX_FIRST_UNSEEN_BY_OLD_NSYS = (0, 2, 12)
# The oldest nsys release year that is reported to read ranges from nvtx >= 0.2.12.
NSYS_FIRST_READING_NEW_NVTX = (2023, 1)


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
        and nsys[:2] < NSYS_FIRST_READING_NEW_NVTX
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
