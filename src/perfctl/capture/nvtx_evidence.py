"""Why a capture's export holds no NVTX range of perfctl's domain: from evidence, never by elimination.

A capture whose driver ran but whose export has no `perfctl` range once failed with "this nsys does not
see this nvtx package" although the pair was one that works: another nsys session had run beside it
(../shared/docs/nsys-facts.md). The reason is now built from what was observed:

  1. the nvtx / nsys version pair against the known table (perfctl.driver.nvtx_compat): a pair known
     to lose the ranges is named; a pair known to record them is said to; any other pair is unknown,
     and not blamed;
  2. what the driver emitted (driver-info.json: `nvtx_enabled`, `nvtx_ranges_pushed`): no range pushed
     (the `nvtx` package disabled by NVTX_DISABLE in its environment, say) is the driver's side;
  3. what the export holds: an NVTX_EVENTS table or none at all, the NVTX ranges of other domains
     (CCCL's, say: nsys recorded NVTX, just not ours), whether perfctl's domain was created;
  4. whether a foreign nsys session ran during the pass (perfctl.capture.nsys_sessions' watcher).

The reason names the causes the evidence shows, and lists the facts; where nothing explains it, it
says "cause unknown" with the facts.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from perfctl.capture.nsys_sessions import describe_recorded
from perfctl.driver.nvtx_compat import PairVerdict, pair_verdict
from perfctl.errors import BadInput, CaptureFailed
from perfctl.stages import DOMAIN


@dataclass(frozen=True)
class ExportNvtx:
    """What an export holds of NVTX: whether it has the table, ranges per domain, domains created."""

    has_table: bool
    ranges_by_domain: dict[str, int] = field(default_factory=dict)
    domains_created: list[str] = field(default_factory=list)

    @property
    def perfctl_ranges(self) -> int:
        return self.ranges_by_domain.get(DOMAIN, 0)


@dataclass(frozen=True)
class NvtxEvidence:
    nsys_version: str | None
    nvtx_version: str | None
    pair: PairVerdict
    nvtx_enabled: bool | None  # in the driver (None: the driver did not say)
    ranges_pushed: int | None  # by the driver, in perfctl's domain (None: the driver did not say)
    export: ExportNvtx
    foreign_sessions: list[str]  # descriptions of the foreign nsys session processes seen

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_export_nvtx(sqlite_path: Path) -> ExportNvtx:
    """The NVTX an export holds, read with perfctl's own reader (the export is perfctl's: a file that
    cannot be read means the capture failed)."""
    from perfctl.nsys_export.nvtx import created_domains, load_nvtx_ranges
    from perfctl.nsys_export.schema import connect_readonly, read_schema

    try:
        conn = connect_readonly(sqlite_path)
    except BadInput as exc:
        raise CaptureFailed(str(exc)) from None
    try:
        schema = read_schema(conn, sqlite_path)
        if not schema.has("NVTX_EVENTS"):
            return ExportNvtx(has_table=False)
        ranges = load_nvtx_ranges(conn, schema)
        created = set(created_domains(conn, schema).values())  # names bounded as the analysis bounds them
        by_domain = {str(k): int(v) for k, v in ranges["domain"].value_counts().items()}
        return ExportNvtx(True, dict(sorted(by_domain.items())), sorted(created))
    except sqlite3.DatabaseError as exc:
        raise CaptureFailed(f"the export {sqlite_path} cannot be read: {exc}") from None
    except BadInput as exc:
        raise CaptureFailed(str(exc)) from None
    finally:
        conn.close()


def gather_evidence(export: ExportNvtx, manifest: dict[str, Any]) -> NvtxEvidence:
    """The evidence from a capture's manifest (versions, what the driver said, the watcher's
    foreign sessions) and its export's NVTX."""
    nsys = manifest.get("nsys") or {}
    driver = manifest.get("driver") or {}
    nvtx = driver.get("nvtx") or (manifest.get("packages") or {}).get("nvtx")
    return NvtxEvidence(
        nsys_version=nsys.get("version"),
        nvtx_version=nvtx,
        pair=pair_verdict(nvtx, nsys.get("version")),
        nvtx_enabled=driver.get("nvtx_enabled"),
        ranges_pushed=driver.get("nvtx_ranges_pushed"),
        export=export,
        foreign_sessions=[describe_recorded(p) for p in nsys.get("foreign_sessions_seen") or []],
    )


def explain_missing_ranges(evidence: NvtxEvidence, pages: int) -> str:
    """The one-line reason for an export without perfctl ranges although the driver ran `pages`:
    the causes the evidence shows (or "cause unknown"), then every fact looked at."""
    causes, facts = [], []
    if evidence.ranges_pushed == 0:
        causes.append(
            "the driver pushed no NVTX range, its nvtx package disabled by NVTX_DISABLE in its environment"
            if evidence.nvtx_enabled is False
            else "the driver pushed no NVTX range"
        )
    elif evidence.ranges_pushed is not None:
        facts.append(f"the driver pushed {evidence.ranges_pushed} ranges")
    else:
        facts.append("the driver did not record how many ranges it pushed")
    pair = f"nvtx {evidence.nvtx_version} under nsys {evidence.nsys_version}"
    if evidence.pair == "loses ranges":
        causes.append(f"{pair} is known to lose every range (pip install 'nvtx==0.2.11')")
    elif evidence.pair == "records ranges":
        facts.append(f"{pair} is known to record ranges")
    else:
        facts.append(f"{pair} is not in the known table")
    if evidence.foreign_sessions:
        causes.append(
            f"another nsys session ran during the pass ({'; '.join(evidence.foreign_sessions[:3])}), and two "
            "at once lose NVTX ranges at random: capture again once it has ended"
        )
    else:
        facts.append("no other nsys session was seen during the pass")
    facts.append(_export_fact(evidence.export))
    ran = f"{pages} page" if pages == 1 else f"{pages} pages"
    what = f"no NVTX ranges of domain '{DOMAIN}' arrived in the export although the driver ran {ran}"
    return f"{what}: {'; '.join(causes) if causes else 'cause unknown'}. Evidence: {'; '.join(facts)}"


def _export_fact(export: ExportNvtx) -> str:
    if not export.has_table:
        return "the export has no NVTX_EVENTS table (nsys recorded no NVTX event of any domain)"
    others = {d or "(no domain)": n for d, n in export.ranges_by_domain.items() if d != DOMAIN}
    created = "created" if DOMAIN in export.domains_created else "never created"
    if others:
        listed = ", ".join(f"{d}: {n}" for d, n in others.items())
        return f"the export holds NVTX ranges of other domains ({listed}); domain '{DOMAIN}' {created}"
    return f"the export has an NVTX_EVENTS table but no range of any domain; domain '{DOMAIN}' {created}"
