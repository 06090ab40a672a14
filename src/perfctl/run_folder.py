"""A run folder, the one noun every command meets: the name of every file and pass folder in it, its
manifest (read tolerantly, written atomically), the claim and the lock a capture holds, and what a path
a user gives names (`RunFolder.find`).

A run folder holds, at its top, the nsys pass (capture.run's docstring says what each file is):

  manifest.json  workload.json  model-config.json  run.nsys-rep  run.sqlite (or run.qdstrm)
  pages.jsonl  driver-info.json  driver.log  nsys.log  telemetry.jsonl  calibration.json
  analysis.json  report.html  summary.md  (what `perfctl analyze` writes beside the export)
  shipped.json  (only in a run that came with perfctl: perfctl.shipped)

and one folder per pass that ran the driver again (`PASS_FOLDERS`): timing/ (the clean timing pass:
workload.json, pages.jsonl, driver-info.json, driver.log, telemetry.jsonl, model-config.resolved.json),
torch/ (the torch.profiler pass: the same, with operators.json and trace.json.gz), and, declared for
the passes to come, ncu/ (Nsight Compute) and ranks/ (one folder per rank of a multi-rank run).
A profiles folder holding run folders holds the run registry, index.db.

Nothing here reads an export: which export a path stands for is perfctl.export_source's to decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from perfctl.errors import BadInput
from perfctl.files import write_json_atomic
from perfctl.run_manifest import MANIFEST_FIELDS, RecordFile, read_driver_info, read_record

# the files of a run folder (and of each pass folder, where a pass writes them)
MANIFEST_FILE = "manifest.json"
WORKLOAD_FILE = "workload.json"
PAGES_FILE = "pages.jsonl"
DRIVER_INFO_FILE = "driver-info.json"
DRIVER_LOG_FILE = "driver.log"
NSYS_LOG_FILE = "nsys.log"
TELEMETRY_FILE = "telemetry.jsonl"
# The model's config.json as the capture ran it, copied into the run folder: the FLOP model reads it
# there, so efficiency does not depend on the model folder still existing (or a built-in unchanged).
MODEL_CONFIG_FILE = "model-config.json"
# The config as the driver's transformers resolved it (every default filled in), written by the driver
# beside its driver-info.json: the FLOP model reads it without importing transformers (and torch),
# which cost analyze seconds and hundreds of MB on a GPU host.
RESOLVED_CONFIG_FILE = "model-config.resolved.json"
CALIBRATION_FILE = "calibration.json"  # with capture --calibrate
OPERATORS_FILE = "operators.json"  # the torch.profiler pass's operators per stage
TORCH_TRACE_FILE = "trace.json"  # the torch.profiler pass's Chrome trace, kept compressed:
TORCH_TRACE_GZ_FILE = "trace.json.gz"
LOCK_FILE = ".capture.lock"  # held (flock) while a capture writes into its run folder
DRIVER_PYTHONPATH_DIR = ".driver-pythonpath"  # a link to perfctl's package, nothing else
# the Nsight Systems report and its export: run.nsys-rep, run.sqlite (nsys's raw stream: run.qdstrm)
REPORT_BASE = "run"
REPORT_SUFFIX, EXPORT_SUFFIX, STREAM_SUFFIX = ".nsys-rep", ".sqlite", ".qdstrm"
# what `perfctl analyze` writes (beside the export, or into --out-dir)
ANALYSIS_FILE, REPORT_HTML_FILE, SUMMARY_FILE = "analysis.json", "report.html", "summary.md"
OUTPUT_NAMES = (ANALYSIS_FILE, REPORT_HTML_FILE, SUMMARY_FILE)
INDEX_FILE = "index.db"  # a profiles folder's run registry (perfctl.registry)
# the Nsight Compute pass's files, in ncu/: its report, ncu's own log (the driver's is driver.log),
# the kernels the nsys pass chose for it, and the exact command with its settings and estimate
NCU_REPORT_BASE, NCU_REPORT_SUFFIX = "run", ".ncu-rep"
NCU_LOG_FILE = "ncu.log"
NCU_SELECTION_FILE = "selection.json"
NCU_COMMAND_FILE = "command.json"
KERNELS_FILE = "kernels.md"  # what `perfctl analyze` writes beside summary.md when the run has ncu/
SHIPPED_FILE = "shipped.json"  # in a run folder that came with perfctl (perfctl.shipped), not the user's

PassName = Literal["nsys", "timing", "torch", "ncu", "ranks"]
NSYS_PASS: PassName = "nsys"
TIMING_PASS: PassName = "timing"
TORCH_PASS: PassName = "torch"
NCU_PASS: PassName = "ncu"
# pass -> its folder in the run folder ("": the run folder itself, where the nsys pass writes)
PASS_FOLDERS: dict[PassName, str] = {
    "nsys": "",
    "timing": "timing",
    "torch": "torch",
    "ncu": "ncu",  # the Nsight Compute pass
    "ranks": "ranks",  # one folder per rank of a multi-rank run (declared likewise)
}

PathKind = Literal["run_folder", "analysis", "report", "export", "stream", "ncu_report"]


@dataclass(frozen=True)
class PassFolder:
    """The folder one pass of the driver wrote into, and the files it holds."""

    path: Path

    @property
    def workload(self) -> Path:
        return self.path / WORKLOAD_FILE

    @property
    def pages(self) -> Path:
        return self.path / PAGES_FILE

    @property
    def driver_info(self) -> Path:
        return self.path / DRIVER_INFO_FILE

    @property
    def driver_log(self) -> Path:
        return self.path / DRIVER_LOG_FILE

    @property
    def telemetry(self) -> Path:
        return self.path / TELEMETRY_FILE

    @property
    def resolved_config(self) -> Path:
        return self.path / RESOLVED_CONFIG_FILE

    @property
    def operators(self) -> Path:
        return self.path / OPERATORS_FILE

    @property
    def torch_trace_gz(self) -> Path:
        return self.path / TORCH_TRACE_GZ_FILE

    @property
    def ncu_report(self) -> Path:
        return self.path / (NCU_REPORT_BASE + NCU_REPORT_SUFFIX)

    @property
    def ncu_report_base(self) -> Path:  # what ncu --export takes (it adds the suffix)
        return self.path / NCU_REPORT_BASE

    @property
    def ncu_log(self) -> Path:
        return self.path / NCU_LOG_FILE

    @property
    def ncu_selection(self) -> Path:
        return self.path / NCU_SELECTION_FILE

    @property
    def ncu_command(self) -> Path:
        return self.path / NCU_COMMAND_FILE

    def read_driver_info(self) -> RecordFile:
        """This pass's driver-info.json, checked against DRIVER_INFO_FIELDS (perfctl.run_manifest)."""
        return read_driver_info(self.driver_info)


@dataclass(frozen=True)
class FoundPath:
    """What a path a user gave names (`RunFolder.find`): its kind, and the run folder whose records
    belong to it (the path itself when it is a folder, else the folder holding it)."""

    path: Path
    kind: PathKind
    folder: RunFolder


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @staticmethod
    def find(path: Path) -> FoundPath:
        """What `path` is: a folder (a run folder, or any folder to look into), an analysis.json (any
        .json file), an Nsight Systems report (.nsys-rep), nsys's raw stream (.qdstrm), else an export
        (.sqlite or any other file), or an Nsight Compute report (.ncu-rep). BadInput when nothing is
        there."""
        if not path.exists():
            raise BadInput(f"no such file or folder: {path}")
        if path.is_dir():
            return FoundPath(path, "run_folder", RunFolder(path))
        kind: PathKind = "export"
        if path.is_file() and path.suffix == ".json":
            kind = "analysis"
        elif path.suffix == REPORT_SUFFIX:
            kind = "report"
        elif path.suffix == STREAM_SUFFIX:
            kind = "stream"
        elif path.suffix == NCU_REPORT_SUFFIX:
            kind = "ncu_report"
        return FoundPath(path, kind, RunFolder(path.parent))

    def pass_folder(self, name: PassName) -> PassFolder:
        return PassFolder(self.path / PASS_FOLDERS[name])

    @property
    def nsys_pass(self) -> PassFolder:
        return self.pass_folder(NSYS_PASS)

    @property
    def timing(self) -> PassFolder:
        """The clean timing pass's folder (its stage times are the ones MFU divides by)."""
        return self.pass_folder(TIMING_PASS)

    @property
    def torch(self) -> PassFolder:
        return self.pass_folder(TORCH_PASS)

    @property
    def ncu(self) -> PassFolder:
        """The Nsight Compute pass's folder (ncu/run.ncu-rep and what chose its kernels)."""
        return self.pass_folder(NCU_PASS)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def report(self) -> Path:
        return self.path / f"{REPORT_BASE}{REPORT_SUFFIX}"

    @property
    def export(self) -> Path:
        return self.path / f"{REPORT_BASE}{EXPORT_SUFFIX}"

    @property
    def stream(self) -> Path:
        return self.path / f"{REPORT_BASE}{STREAM_SUFFIX}"

    @property
    def nsys_log(self) -> Path:
        return self.path / NSYS_LOG_FILE

    @property
    def model_config(self) -> Path:
        return self.path / MODEL_CONFIG_FILE

    @property
    def calibration(self) -> Path:
        return self.path / CALIBRATION_FILE

    @property
    def analysis(self) -> Path:
        return self.path / ANALYSIS_FILE

    @property
    def shipped_label(self) -> Path:
        return self.path / SHIPPED_FILE

    def read_manifest(self) -> RecordFile:
        """The run folder's manifest.json, checked against MANIFEST_FIELDS (perfctl.run_manifest)."""
        return read_record(self.manifest_path, MANIFEST_FIELDS)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write manifest.json whole (atomically: a reader sees the old one or the new one)."""
        write_json_atomic(self.manifest_path, manifest)

    def why_not_made_by_perfctl(self) -> str | None:
        """Why this is not a run folder perfctl made, or None when it is one: its manifest.json is a
        JSON object with perfctl's `perfctl_version` and `started_at` (an ISO time) and its `run_id`,
        which capture sets to the folder's name (a run folder copied or renamed under another name is
        not one: the manifest is then someone's copy, not the record of this folder)."""
        manifest = self.read_manifest()
        if manifest.data is None:
            return f"{manifest.path} {'does not exist' if not manifest.present else 'is unusable'}" + (
                f" ({manifest.problems[0]})" if manifest.problems else ""
            )
        data = manifest.data
        missing = [k for k in ("perfctl_version", "run_id", "started_at") if not isinstance(data.get(k), str)]
        if missing:
            return f"{manifest.path} has no {', '.join(missing)} as perfctl writes them"
        try:
            datetime.fromisoformat(data["started_at"])
        except ValueError:
            return f"{manifest.path} has started_at {data['started_at']!r}, which is no time perfctl wrote"
        if data["run_id"] != self.path.name:
            return (
                f"its {MANIFEST_FILE} is of run {data['run_id']!r}, not of this folder (a copy or a renamed "
                "run folder: remove it yourself if you mean to)"
            )
        return None

    # The claim and the lock (perfctl.capture.claim says when a folder may be claimed or replaced).

    @staticmethod
    def claim(
        profiles_root: Path,
        model: str,
        run_id: str | None = None,
        out: Path | None = None,
        force: bool = False,
    ) -> RunFolder:
        """Create a capture's run folder, exclusively (perfctl.capture.claim.claim_run_dir)."""
        from perfctl.capture.claim import claim_run_dir

        return RunFolder(claim_run_dir(profiles_root, model, run_id, out, force))

    @staticmethod
    def check_choice(profiles_root: Path, run_id: str | None, out: Path | None, force: bool) -> Path:
        """The run folder a capture named, once sure it may claim it (perfctl.capture.claim)."""
        from perfctl.capture.claim import check_run_dir_choice

        return check_run_dir_choice(profiles_root, run_id, out, force)

    def lock(self) -> int:
        """Mark the run folder as being written for as long as the returned descriptor stays open."""
        from perfctl.capture.claim import lock_run_dir

        return lock_run_dir(self.path)

    def unlock(self, fd: int) -> None:
        from perfctl.capture.claim import unlock_run_dir

        unlock_run_dir(self.path, fd)

    def capture_running(self) -> bool:
        """Whether a capture still holds this run folder's lock (it is writing into it)."""
        from perfctl.capture.claim import capture_running_in

        return capture_running_in(self.path)
