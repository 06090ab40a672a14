"""workload.json: what one pass of a capture runs, and where its driver writes.

`perfctl capture` builds one `Workload` from its options and writes a variant of it per pass: the
nsys pass's into the run folder, the clean timing pass's and the torch.profiler pass's into their own
folders (`profiled` and `for_pass` make them). The driver's child process reads it back with
`Workload.load`, the one reader: a damaged or foreign file is refused with BadInput naming the file
and the key. `save` writes what `load` reads, byte for byte the same file again (the keys in one
order, optional keys only when set), and the manifest's `workload` object is `manifest_json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from perfctl.errors import BadInput
from perfctl.files import write_json_atomic
from perfctl.run_folder import DRIVER_INFO_FILE, DRIVER_LOG_FILE, PAGES_FILE, TELEMETRY_FILE
from perfctl.workloads.decode import DECODE_MODES, EAGER
from perfctl.workloads.models import ModelSpec


@dataclass(frozen=True)
class DriverOutputs:
    """Where one pass's driver writes: files in the pass's folder, absolute paths."""

    records: Path  # pages.jsonl: one record per page, appended as each page finishes
    driver_info: Path  # driver-info.json (model-config.resolved.json is written beside it)
    log: Path | None = None  # driver.log; None: the driver's output stays on its stdout and stderr
    telemetry: Path | None = None  # telemetry.jsonl: NVML samples (the clean timing pass, --nsys-telemetry)
    torch_profiler: Path | None = None  # the torch.profiler pass's folder: operators.json, trace.json.gz

    @classmethod
    def in_folder(
        cls, folder: Path, *, telemetry: bool = False, torch_profiler: bool = False
    ) -> DriverOutputs:
        """A pass's outputs under their usual names in `folder` (the run folder, or a pass's folder)."""
        return cls(
            records=folder / PAGES_FILE,
            driver_info=folder / DRIVER_INFO_FILE,
            log=folder / DRIVER_LOG_FILE,
            telemetry=folder / TELEMETRY_FILE if telemetry else None,
            torch_profiler=folder if torch_profiler else None,
        )


@dataclass(frozen=True)
class Workload:
    model: ModelSpec
    pages: tuple[Path, ...]  # absolute paths, in the order the driver runs them
    repeats: int  # every page this many times
    max_new_tokens: int  # fixed-length generation: exactly this many new tokens per page
    tiles: int  # DeepSeek-OCR-2 local 768² views per page, besides the global view
    mode: str | None  # DeepSeek-OCR v1 resolution mode; None for other models
    warmup: int  # warm-up runs of each distinct input shape of the pages (workloads.shapes)
    device: str  # as asked: auto, cpu, cuda, cuda:N (the driver resolves auto)
    dtype: str  # as asked: auto, float32, bfloat16, float16
    seed: int
    outputs: DriverOutputs
    sync_stage_edges: bool = False  # the clean timing pass: the GPU waited for at every stage edge
    # --decode (perfctl.workloads.decode): eager, static or compiled; written only when not eager, so
    # an eager capture's files are the same as before --decode (readers take a missing one as eager)
    decode: str = EAGER
    # --batch-size (perfctl.workloads.batching): pages per generate call; written only when above 1
    batch_size: int = 1

    @property
    def page_runs(self) -> int:
        """How many measured generate calls the driver runs, one record each (warm-up runs not
        counted): pages x repeats, or with --batch-size its batches x repeats."""
        return -(-len(self.pages) // self.batch_size) * self.repeats

    def profiled(self, profile_pages: int | None) -> Workload:
        """The profiled passes' (nsys, torch.profiler) workload: with --profile-pages N its first N
        pages once each (a profile explains where the time goes; the clean pass measures it)."""
        if profile_pages is None:
            return self
        return replace(self, pages=self.pages[:profile_pages], repeats=1)

    def for_pass(self, outputs: DriverOutputs, *, sync_stage_edges: bool = False) -> Workload:
        """The same workload for a pass that writes elsewhere (the timing and torch.profiler passes)."""
        return replace(self, outputs=outputs, sync_stage_edges=sync_stage_edges)

    def manifest_json(self, profile_pages: int | None) -> dict[str, Any]:
        """The manifest's `workload` object: the settings without where the driver writes, and the
        capture's --profile-pages."""
        return self._settings_json() | {"profile_pages": profile_pages}

    def to_json(self) -> dict[str, Any]:
        """workload.json's object, keys in the order the driver's readers and old run folders know."""
        out = self.outputs
        return (
            self._settings_json()
            | {"records": str(out.records), "driver_info": str(out.driver_info)}
            | ({"log": str(out.log)} if out.log is not None else {})
            | ({"sync_stage_edges": True} if self.sync_stage_edges else {})
            | ({"telemetry": str(out.telemetry)} if out.telemetry is not None else {})
            | ({"torch_profiler": str(out.torch_profiler)} if out.torch_profiler is not None else {})
        )

    def _settings_json(self) -> dict[str, Any]:
        spec = self.model
        return {
            "model": {
                "name": spec.name,
                "folder": str(spec.folder),
                "builtin": spec.builtin,
                "model_type": spec.model_type,
                "has_weights": spec.has_weights,
                "random_weights": spec.random_weights,
            },
            "pages": [str(p) for p in self.pages],
            "repeats": self.repeats,
            "max_new_tokens": self.max_new_tokens,
            "tiles": self.tiles,
            **({"mode": self.mode} if self.mode is not None else {}),
            "warmup": self.warmup,
            "device": self.device,
            "dtype": self.dtype,
            "seed": self.seed,
            **({"decode": self.decode} if self.decode != EAGER else {}),
            **({"batch_size": self.batch_size} if self.batch_size != 1 else {}),
        }

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> Workload:
        """Read a workload.json; BadInput (one line naming the file, and the key where one is at
        fault) for a file that cannot be read, is not JSON, or is not a perfctl workload."""
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read workload file {path}: {exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BadInput(f"workload file {path} is not JSON (damaged?): {exc}") from None
        return cls.from_json(data, path)

    @classmethod
    def from_json(cls, data: Any, source: Path) -> Workload:
        """Inverse of `to_json`; `source` names the file in refusals. Optional keys (mode, seed, tiles,
        warmup, log and the pass's extras) may be absent or null; unknown keys are refused."""
        top = _Fields(data, source, "")
        model = _Fields(top.value("model"), source, "model.")
        spec = ModelSpec(
            name=model.text("name"),
            folder=Path(model.text("folder")),
            builtin=model.flag("builtin"),
            model_type=model.text("model_type"),
            has_weights=model.flag("has_weights"),
            random_weights=model.flag("random_weights"),
        )
        model.refuse_others()
        pages = top.value("pages")
        if not isinstance(pages, list) or not pages:
            top.refuse("pages", "must be a list of page paths, at least one", pages)
        for index, page in enumerate(pages):
            if not isinstance(page, str) or not page:
                top.refuse(f"pages[{index}]", "must be a path", page)
        workload = cls(
            model=spec,
            pages=tuple(Path(p) for p in pages),
            repeats=top.integer("repeats"),
            max_new_tokens=top.integer("max_new_tokens"),
            tiles=top.integer("tiles", 0),
            mode=top.optional_text("mode"),
            warmup=top.integer("warmup", 0),
            device=top.text("device"),
            dtype=top.text("dtype"),
            seed=top.integer("seed", 0),
            outputs=DriverOutputs(
                records=Path(top.text("records")),
                driver_info=Path(top.text("driver_info")),
                log=top.optional_path("log"),
                telemetry=top.optional_path("telemetry"),
                torch_profiler=top.optional_path("torch_profiler"),
            ),
            sync_stage_edges=top.flag("sync_stage_edges", False),
            decode=top.optional_text("decode") or EAGER,
            batch_size=top.integer("batch_size", 1),
        )
        if workload.batch_size < 1:
            top.refuse("batch_size", "must be at least 1", workload.batch_size)
        if workload.decode not in DECODE_MODES:
            top.refuse("decode", f"must be one of {', '.join(DECODE_MODES)}", workload.decode)
        top.refuse_others()
        return workload


def runs_unit(batch_size: int) -> str:
    """What a pass's records count, in words: pages, or with --batch-size its batches."""
    return "pages" if batch_size == 1 else f"batches of {batch_size} pages"


class _Fields:
    """One JSON object of a workload file read key by key; every refusal names the file and the key."""

    def __init__(self, data: Any, source: Path, prefix: str) -> None:
        self.source, self.prefix = source, prefix
        if not isinstance(data, dict):
            where = f"key '{prefix.rstrip('.')}' " if prefix else ""
            raise BadInput(
                f"workload file {source} is not a perfctl workload: {where}holds {_show(data)}, not an object"
            )
        self.data: dict[str, Any] = data
        self.read: set[str] = set()

    def refuse(self, key: str, problem: str, value: Any) -> NoReturn:
        raise BadInput(f"workload file {self.source}: key '{self.prefix}{key}' {problem}, got {_show(value)}")

    def value(self, key: str, optional: bool = False) -> Any:
        """The key's value; None for an optional key that is absent or null."""
        self.read.add(key)
        if key not in self.data and not optional:
            raise BadInput(
                f"workload file {self.source} is not a perfctl workload: key '{self.prefix}{key}' is missing"
            )
        return self.data.get(key)

    def text(self, key: str) -> str:
        value = self.value(key)
        if not isinstance(value, str) or not value:
            self.refuse(key, "must be a non-empty string", value)
        return str(value)

    def optional_text(self, key: str) -> str | None:
        value = self.value(key, optional=True)
        if value is not None and (not isinstance(value, str) or not value):
            self.refuse(key, "must be a non-empty string", value)
        return value

    def optional_path(self, key: str) -> Path | None:
        value = self.optional_text(key)
        return None if value is None else Path(value)

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.value(key, optional=default is not None)
        if value is None and default is not None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            self.refuse(key, "must be a whole number, 0 or more", value)
        return int(value)

    def flag(self, key: str, default: bool | None = None) -> bool:
        value = self.value(key, optional=default is not None)
        if value is None and default is not None:
            return default
        if not isinstance(value, bool):
            self.refuse(key, "must be true or false", value)
        return bool(value)

    def refuse_others(self) -> None:
        """A key this reader does not know: a foreign file, or a workload the driver would half run."""
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise BadInput(
                f"workload file {self.source} is not a perfctl workload: "
                f"unknown key '{self.prefix}{unknown[0]}'{more}"
            )


def _show(value: Any) -> str:
    """A JSON value as a refusal quotes it: short, on one line."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def profiled_page_count(workload: dict[str, Any], n_pages: int) -> int:
    """How many pages the profiled passes (nsys, torch.profiler) ran, from a manifest's `workload`
    object: every page x repeats, or the first `profile_pages` once each (a capture counts its
    Workload's `page_runs`)."""
    limit = workload.get("profile_pages")
    return min(int(limit), n_pages) if limit else n_pages * int(workload.get("repeats", 1))
