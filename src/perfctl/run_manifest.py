"""A run folder's manifest.json and driver-info.json, read as untrusted input: what is usable, and a
warning naming the file and what was not.

Every reader of a run folder's records (analyze, compare, the registry, `--force`) goes through
`RunFolder.read_manifest` (perfctl.run_folder) / `read_driver_info` (ncu/'s command.json and
selection.json: `read_record`), never `json.loads` of its own. Each file is checked against the
declared schema of the fields perfctl reads (`MANIFEST_FIELDS`, `DRIVER_INFO_FIELDS`,
`NCU_COMMAND_FIELDS`, `NCU_SELECTION_FIELDS`):

- unreadable (truncated, random bytes, not UTF-8, a folder by that name), not a JSON object (a list,
  null), or an object holding none of the declared fields: *unusable*, as if absent, with a warning;
- a declared field of the wrong type (hand-edited, damaged): that field is left out, as if absent, and
  the warning names it; the rest is used (*partial*);
- a declared field that is missing (a manifest from an older perfctl, e.g. without `workload.tiles`):
  absent, no warning: every consumer already treats a missing field as unknown;
- fields not declared (a newer perfctl's) are kept as they are; nothing reads them.

The file itself is never changed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from perfctl.nsys_export.names import bound_strings
from perfctl.workloads.batching import BATCH_SIZE_LIMIT

# how many bad fields a warning lists by name before it counts the rest, and how much of a bad value
# it shows: a warning stays one readable line whatever the file holds
NAMED_PROBLEMS = 8
SHOWN_VALUE = 60

NoneType = type(None)
State = Literal["absent", "unusable", "partial", "ok"]


@dataclass(frozen=True)
class Field:
    """A declared field: the JSON types it may hold, and for an object its declared fields (or, for a
    map such as `packages`, what each value may be), for a list what each item may be."""

    kinds: tuple[type, ...]
    fields: Mapping[str, Field] | None = None
    values: Field | None = None
    items: Field | None = None
    bounds: tuple[int, int] | None = None  # a number's lowest and highest believable value


def _f(*kinds: type, **nested: Any) -> Field:
    return Field(kinds, **nested)


# Above these a count is a typo or damage, not a run, and some are looped over (one entry per page the
# run was to profile): capture's own limits (--repeats 10,000 x pages; --max-new-tokens 100,000;
# --tiles 6; --warmup 1,000), with room for a pages folder of 1,000 pages.
MAX_PAGES = 10_000_000
LIMITS = {"repeats": 10_000, "max_new_tokens": 100_000, "tiles": 6, "warmup": 1_000}
# other counts (sizes in bytes, parameters): non-negative, below 2**63 as SQLite and numpy hold them
MAX_COUNT = 2**63 - 1

TEXT, TEXT_OR_NULL = _f(str), _f(str, NoneType)
COUNT, COUNT_OR_NULL = _f(int, bounds=(0, MAX_COUNT)), _f(int, NoneType, bounds=(0, MAX_COUNT))
PAGE_COUNT = _f(int, bounds=(0, MAX_PAGES))
EXIT_STATUS = _f(int, NoneType)  # negative: killed by that signal
NUMBER = _f(int, float)
FLAG = _f(bool)
ARGV = _f(list, items=TEXT)  # a command as an argument list

DRIVER_INFO_FIELDS: dict[str, Field] = {
    "device": TEXT,
    "cpu": TEXT,
    "gpu_name": TEXT_OR_NULL,
    "gpu_capability": TEXT_OR_NULL,
    "gpu_sm_count": COUNT_OR_NULL,
    "gpu_memory_bytes": COUNT_OR_NULL,
    "cuda_runtime": TEXT_OR_NULL,
    "dtype": TEXT,
    "python": TEXT,
    "torch": TEXT,
    "transformers": TEXT_OR_NULL,
    "nvtx": TEXT_OR_NULL,
    "parameters": COUNT,
    "attn_implementation": TEXT_OR_NULL,
    "image_tokens_per_page": COUNT,
    "local_tiles_per_page": COUNT,
    "mode": TEXT_OR_NULL,
    "flops_mode": TEXT_OR_NULL,
    "prompt_tokens_per_page": COUNT,
    "prompt_source": TEXT,
    "load_seconds": NUMBER,
    "decode_ranges_per_page": COUNT,
    "telemetry": TEXT_OR_NULL,
    "nvtx_enabled": FLAG,  # read by capture's diagnosis of missing NVTX ranges (nvtx_evidence)
    "nvtx_ranges_pushed": COUNT,
    # --decode static|compiled (perfctl.workloads.decode; absent: eager), what transformers did
    "decode": TEXT,
    "kv_cache": TEXT_OR_NULL,  # the KV cache class generate used (DynamicCache, StaticCache)
    "decode_step_span": TEXT,  # what a decode step covers (driver.markers.DECODE_STEP_SPAN); absent: older
    "compiled_forward": FLAG,  # transformers compiled the model's forward (its auto-compile)
    "compile": _f(
        dict,
        fields={
            "graphs_compiled": COUNT,
            "graph_breaks": COUNT,
            "graph_break_reasons": _f(dict, values=COUNT),
            "compile_seconds": _f(int, float, NoneType),
            "warmup_graphs_compiled": COUNT,
            "warmup_compile_seconds": _f(int, float, NoneType),
            "warmup_seconds_beyond_pages": NUMBER,
            "recompiled_pages": _f(list, items=PAGE_COUNT),
            "recompilations": COUNT,
            "cudagraph_skips": COUNT,
        },
    ),
}
_DRIVER_PASS = {  # manifest `timing` / `torch`: a pass that ran the driver again without nsys
    "command": ARGV,
    "exit_code": EXIT_STATUS,
    "sync_stage_edges": FLAG,
    "pages_completed": PAGE_COUNT,
    "pages_expected": PAGE_COUNT,
    "status": TEXT,
    "reason": TEXT_OR_NULL,
}
MANIFEST_FIELDS: dict[str, Field] = {
    "perfctl_version": TEXT,
    "tool": TEXT,
    "run_id": TEXT,
    "status": TEXT,
    "reason": TEXT_OR_NULL,
    "started_at": TEXT,
    "finished_at": TEXT_OR_NULL,
    "perfctl_command": ARGV,
    "nsys": _f(
        dict,
        fields={
            "path": TEXT,
            "version": TEXT,
            "command": ARGV,
            "importer_found": FLAG,
            "telemetry": FLAG,
            "exit_code": EXIT_STATUS,
            "leftover_processes_stopped": COUNT,
            "note": TEXT,
            "stream_left_at": TEXT,
        },
    ),
    "workload": _f(
        dict,
        fields={
            "model": _f(
                dict,
                fields={
                    "name": TEXT,
                    "folder": TEXT,
                    "builtin": FLAG,
                    "model_type": TEXT,
                    "has_weights": FLAG,
                    "random_weights": FLAG,
                },
            ),
            "pages": _f(list, items=TEXT),
            **{key: _f(int, bounds=(0, limit)) for key, limit in LIMITS.items()},
            "mode": TEXT_OR_NULL,
            "device": TEXT,
            "dtype": TEXT,
            "seed": COUNT,
            "decode": TEXT,  # absent: eager (runs before --decode, and eager ones since)
            "batch_size": _f(int, bounds=(1, BATCH_SIZE_LIMIT)),  # absent: 1 (--batch-size)
            "profile_pages": _f(int, NoneType, bounds=(1, MAX_PAGES)),
        },
    ),
    "model_spec": _f(
        dict, fields={"name": TEXT, "folder": TEXT, "builtin": FLAG, "model_type": TEXT, "weights": TEXT}
    ),
    "model_config": TEXT,
    "pages": _f(list, items=_f(dict, fields={"file": TEXT, "path": TEXT, "sha256": TEXT})),
    "host": _f(
        dict,
        fields={
            "hostname": TEXT,
            "os": TEXT,
            "cpu": TEXT,
            "cpu_count": COUNT_OR_NULL,
            "python": TEXT,
            # NVML's GPUs, or the sentence saying why there are none
            "gpus_nvml": _f(
                list,
                str,
                items=_f(dict, fields={"index": COUNT, "name": TEXT, "memory_bytes": COUNT, "driver": TEXT}),
            ),
        },
    ),
    "packages": _f(dict, values=TEXT_OR_NULL),
    "driver_python": _f(dict, fields={"path": TEXT, "python": TEXT, "own_interpreter": FLAG}),
    "driver": _f(dict, fields=DRIVER_INFO_FIELDS),
    "pages_completed": PAGE_COUNT,
    "pages_expected": PAGE_COUNT,
    "perfctl_nvtx_ranges": COUNT,
    "files": _f(dict, values=COUNT),
    "timing": _f(dict, fields=_DRIVER_PASS),
    "torch": _f(dict, fields=_DRIVER_PASS),
    "calibration": _f(dict, fields={"command": ARGV, "status": TEXT, "reason": TEXT_OR_NULL}),
}
# The Nsight Compute pass's records in ncu/ (capture.ncu_pass writes them), as far as
# analysis.kernel_level reads them: the exact command and its clock control, and the kernels the nsys
# pass chose per stage.
NCU_COMMAND_FIELDS: dict[str, Field] = {"command": ARGV, "clock_control": TEXT}
NCU_SELECTION_FIELDS: dict[str, Field] = {
    "stages": _f(dict, values=_f(dict, fields={"kernels": _f(list, items=_f(dict, fields={"name": TEXT}))})),
}


@dataclass(frozen=True)
class RecordFile:
    """What one JSON record file (manifest.json, driver-info.json, ncu/'s) gave: its usable fields (`data`,
    None when absent or unusable), its state, and the fields left out (path in the file, what is there)."""

    path: Path
    state: State
    data: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)

    @property
    def present(self) -> bool:
        """A file is there (usable or not): never say "no manifest.json" for it."""
        return self.state != "absent"

    def warning(self) -> str | None:
        """The sentence for analysis.json's warnings, or None when the file was absent or whole."""
        if self.state in ("absent", "ok"):
            return None
        if self.state == "unusable":
            return f"{self.path} is unusable ({self._named()}): nothing in it was used"
        return f"{self.path} has fields of the wrong type, left out as unknown: {self._named()}"

    def _named(self) -> str:
        more = len(self.problems) - NAMED_PROBLEMS
        return "; ".join(self.problems[:NAMED_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")

    def dropped(self, key: str) -> bool:
        """Whether the top-level field `key` was there but left out (wrong type)."""
        return any(p == key or p.startswith((f"{key} ", f"{key}[")) for p in self.problems)


def _kind_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _kinds_text(kinds: tuple[type, ...]) -> str:
    names = {
        str: "text",
        int: "an integer",
        float: "a number",
        bool: "true/false",
        list: "a list",
        dict: "an object",
        NoneType: "null",
    }
    wanted = [names[k] for k in kinds if not (k is int and float in kinds)]
    return " or ".join(wanted)


def _fits(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON's true/false is no number, whatever Python says
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def _check(value: Any, spec: Field, where: str, problems: list[str]) -> tuple[bool, Any]:
    """(usable, the usable part of `value`): a wrong-typed value is unusable; inside an object or a
    list, a wrong-typed field or item is left out (and named) while the rest stays."""
    if not _fits(value, spec.kinds):
        shown = json.dumps(value) if not isinstance(value, (dict, list)) else _kind_name(value)
        if len(shown) > SHOWN_VALUE:
            shown = shown[: SHOWN_VALUE - 3] + "..."
        problems.append(f"{where} is {shown}, not {_kinds_text(spec.kinds)}")
        return False, None
    if spec.bounds is not None and isinstance(value, int) and not spec.bounds[0] <= value <= spec.bounds[1]:
        shown = f"{value:,}" if abs(value) < 10**30 else f"{value:.3e}"
        problems.append(f"{where} is {shown}, outside {spec.bounds[0]:,} to {spec.bounds[1]:,}")
        return False, None
    if isinstance(value, dict) and spec.fields is not None:
        return True, _check_object(value, spec.fields, where, problems)
    if isinstance(value, dict) and spec.values is not None:
        kept = {}
        for key, item in value.items():
            ok, usable = _check(item, spec.values, f"{where}.{key}", problems)
            if ok:
                kept[key] = usable
        return True, kept
    if isinstance(value, list) and spec.items is not None:
        items = []
        for i, item in enumerate(value):
            ok, usable = _check(item, spec.items, f"{where}[{i}]", problems)
            if ok:
                items.append(usable)
        return True, items
    return True, value


def _check_object(
    data: dict[str, Any], fields: Mapping[str, Field], prefix: str, problems: list[str]
) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in data.items():
        spec = fields.get(key)
        if spec is None:  # not read by perfctl: kept as it is
            kept[key] = value
            continue
        ok, usable = _check(value, spec, f"{prefix}.{key}" if prefix else key, problems)
        if ok:
            kept[key] = usable
    return kept


def read_record(path: Path, fields: Mapping[str, Field]) -> RecordFile:
    """Read one JSON record file and keep what fits `fields` (see the module docstring)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return RecordFile(path, "absent", None)
    except OSError as exc:  # a folder by that name, no permission
        return RecordFile(path, "unusable", None, [f"cannot be read: {exc.strerror or exc}"])
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        where = f"byte {exc.start} is {raw[exc.start]:#04x}"
        return RecordFile(path, "unusable", None, [f"not UTF-8 text: {where}"])
    except ValueError as exc:
        return RecordFile(path, "unusable", None, [f"not JSON: {' '.join(str(exc).split())}"])
    if not isinstance(data, dict):
        return RecordFile(path, "unusable", None, [f"it holds {_kind_name(data)}, not a JSON object"])
    data = bound_strings(data)  # a hand-edited text of any length: bounded as the export's names are
    problems: list[str] = []
    kept = _check_object(data, fields, "", problems)
    if not any(key in fields and kept[key] is not None for key in kept):
        why = "none of the fields perfctl writes is usable in it" if data else "it is an empty object"
        return RecordFile(path, "unusable", None, [why, *problems])
    return RecordFile(path, "partial" if problems else "ok", kept, problems)


def read_driver_info(path: Path) -> RecordFile:
    """A pass's driver-info.json (the run folder's, timing/'s or torch/'s), checked against
    DRIVER_INFO_FIELDS."""
    return read_record(path, DRIVER_INFO_FIELDS)


# What the report's template shows without asking whether it is there (templates/report.html.j2):
# a manifest from an older perfctl, or one whose fields were left out, gives it null for those
# (shown as such) rather than a field the template cannot render. Top level, always:
_REPORT_ALWAYS: dict[str, Any] = {
    "status": None,
    "reason": None,
    "pages_completed": None,
    "pages_expected": None,
    "pages": [],
    "workload": {},
}
# and inside these objects, whenever the object itself is there:
_REPORT_INSIDE: dict[str, dict[str, Any]] = {
    "workload": {"repeats": None, "warmup": None, "tiles": None, "max_new_tokens": None},
    "model_spec": {"name": None, "model_type": None, "weights": None, "folder": None},
    "driver": {
        "parameters": None,
        "device": None,
        "gpu_capability": None,
        "gpu_sm_count": None,
        "gpu_memory_bytes": None,
        "dtype": None,
        "prompt_tokens_per_page": None,
        "image_tokens_per_page": None,
        "prompt_source": None,
        "torch": None,
        "transformers": None,
        "nvtx": None,
        "python": None,
    },
    "host": {"hostname": None, "cpu": None, "cpu_count": None, "os": None, "gpus_nvml": []},
    "nsys": {"version": None, "command": []},
    "timing": {"command": [], "status": None, "reason": None},
    "torch": {"command": [], "status": None, "reason": None},
}
_REPORT_PAGE = {"file": None, "sha256": ""}
_REPORT_GPU = {"index": None, "name": None, "driver": None}


def report_view(manifest: dict[str, Any] | None, driver_unknown: bool = False) -> dict[str, Any] | None:
    """The validated manifest as the HTML report is handed it: every field its template shows
    unconditionally is there (null when unknown). `driver_unknown`: the manifest's driver record was
    there but unusable, so the report shows it as unknown fields rather than as a driver that never
    started. A copy; `manifest` is not changed."""
    if manifest is None:
        return None
    view = copy.deepcopy(manifest)
    if driver_unknown and not view.get("driver"):
        view["driver"] = dict.fromkeys(_REPORT_INSIDE["driver"])
    for key, default in _REPORT_ALWAYS.items():
        view.setdefault(key, copy.deepcopy(default))
    for key, inside in _REPORT_INSIDE.items():
        if isinstance(view.get(key), dict) and (view[key] or key == "workload"):
            view[key] = copy.deepcopy(inside) | view[key]
    view["pages"] = [_REPORT_PAGE | p for p in view["pages"]]
    gpus = (view.get("host") or {}).get("gpus_nvml")
    if isinstance(gpus, list):
        view["host"]["gpus_nvml"] = [_REPORT_GPU | g for g in gpus]
    return view
