"""Will the running nsys see our NVTX ranges? The known table of nsys / `nvtx` pairs.

Measured (../shared/docs/nsys-facts.md, docs/nsys-generations.md): nsys 2022.4, 2023.4 and 2024.2 all
record only domain create/destroy events from the `nvtx` Python package >= 0.2.12 (0.2.12 and 0.2.16
tried), never its push/pop or start/end ranges; 0.2.10 and 0.2.11 work with all three. perfctl pins
nvtx < 0.2.12, and the driver refuses to run a capture that would come back empty.

Only what was measured is a verdict: nsys 2022.4 to 2024.2 lose the ranges of nvtx >= 0.2.12 and
record those of 0.2.10 and 0.2.11. Every other pair (a newer or older nsys, an older nvtx) is
unknown: it is let through, never blamed, and the capture verifies afterwards that the ranges arrived
(perfctl.capture.run; when they did not, perfctl.capture.nvtx_evidence says why from evidence).
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import Literal

NVTX_FIRST_UNSEEN_BY_OLD_NSYS = (0, 2, 12)
# The oldest nvtx measured to work with the nsys generations below (0.2.10 and 0.2.11 were tried).
NVTX_FIRST_MEASURED_SEEN = (0, 2, 10)
# The nsys generations measured (2022.4, 2023.4, 2024.2): the first and the last of them. The
# newest one measured to lose the ranges of nvtx >= 0.2.12 is 2024.2.3 (CPU capture).
NSYS_FIRST_MEASURED = (2022, 4)
NSYS_LAST_LOSING_NEW_NVTX = (2024, 2)

PairVerdict = Literal["loses ranges", "records ranges", "unknown"]


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def pair_verdict(nvtx_version: str | None, nsys_version: str | None) -> PairVerdict:
    """What the known table says of this nvtx package under this nsys: it loses the ranges, it
    records them, or the pair was never measured (unknown; also when either version is missing)."""
    if not nvtx_version or not nsys_version:
        return "unknown"
    nsys, nvtx = _version_tuple(nsys_version)[:2], _version_tuple(nvtx_version)
    if not NSYS_FIRST_MEASURED <= nsys <= NSYS_LAST_LOSING_NEW_NVTX:
        return "unknown"
    if nvtx >= NVTX_FIRST_UNSEEN_BY_OLD_NSYS:
        return "loses ranges"
    if nvtx >= NVTX_FIRST_MEASURED_SEEN:
        return "records ranges"
    return "unknown"


def nvtx_problem(nvtx_version: str | None, nsys_version: str | None) -> str | None:
    """A one-line reason why ranges would be invisible, or None unless this pair is known to lose them."""
    if nvtx_version is None:
        return "the `nvtx` package is not installed (pip install 'nvtx<0.2.12')"
    if pair_verdict(nvtx_version, nsys_version) == "loses ranges":
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
