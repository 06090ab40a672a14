"""The run shipped with perfctl (`shipped/h200-deepseek-ocr2/`: a real `--tool all --ncu --calibrate`
capture of the full-size DeepSeek-OCR-2 on an H200) and `perfctl shipped`, which copies it into a
profiles folder for `perfctl analyze`, as scripts/demo.sh does.

Checked through the real CLI: the copy is an ordinary run folder (its export and Nsight Compute report
unpacked); its analysis agrees with nsys 2024.2's own `nsys stats` answers on the same export
(committed beside the fixtures); every pass and the GPU's calibration are there, so each stage has a
numeric MFU against the datasheet and the measured ceiling; and every output says the run was
shipped, not the user's. A folder of the user's under the same name is never replaced.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path

from conftest import FIXTURES, run_perfctl
from nsys_reference import nvtx_sum_totals, nvtxkernsum_totals, perfctl_nvtx_totals, perfctl_totals

RUN_ID = "h200-deepseek-ocr2"
ANSWERS = FIXTURES / "shipped-h200-deepseek-ocr2"


def _tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _copy(profiles: Path) -> Path:
    proc = run_perfctl("shipped", "--profiles", str(profiles))
    assert proc.returncode == 0, proc.stderr
    run = Path(proc.stdout.strip())
    assert run == profiles / RUN_ID and "not a run of yours" in proc.stderr
    return run


def test_shipped_run_analyzes_as_nsys_stats_does_and_says_it_was_shipped(tmp_path: Path) -> None:
    run = _copy(tmp_path / "profiles")
    assert (run / "run.sqlite").is_file() and (run / "ncu" / "run.ncu-rep").is_file()
    assert not list(run.rglob("*.xz"))
    proc = run_perfctl("analyze", str(run), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    analysis = json.loads(proc.stdout)
    # the export's attribution is nsys's own (nsys 2024.2.3.38 on the capture host)
    kern_sum = nvtxkernsum_totals(Path(f"{ANSWERS}.nvtx_kern_sum.csv").read_text())
    assert perfctl_totals(analysis) == kern_sum
    assert perfctl_nvtx_totals(analysis) == nvtx_sum_totals(Path(f"{ANSWERS}.nvtx_sum.csv").read_text())
    # every pass of the capture, and the H200's own calibration, applied to it
    assert analysis["run"]["status"] == "ok" and analysis["run"]["driver"]["gpu_name"] == "NVIDIA H200"
    eff = analysis["efficiency"]
    assert eff["available"] and eff["inputs"]["measured"]["reason"] is None
    for stage in ("vision", "prefill", "decode"):
        assert eff["stages"][stage]["mfu"] > 0 and eff["stages"][stage]["mfu_measured"] > 0, stage
    assert eff["decode_mbu"]["mbu"] > 0
    assert analysis["timing"]["statistics"]["page"]["count"] == 8  # the clean pass ran all 8 pages
    assert analysis["operators"]["stages"]["decode"]["top"]
    assert analysis["ncu"]["kernels"]
    # labelled as shipped wherever a reader looks
    label = analysis["shipped"]["label"]
    assert label.startswith("shipped with perfctl") and "not a run of yours" in label
    assert "--tool all --ncu --calibrate" in analysis["shipped"]["command"]
    assert label in html.unescape((run / "report.html").read_text())
    assert label in (run / "summary.md").read_text()
    text = run_perfctl("analyze", str(run))
    assert text.returncode == 0 and label in text.stdout


def test_shipped_replaces_only_its_own_earlier_copy(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    run = _copy(profiles)
    (run / "analysis.json").write_text("{}")  # an earlier copy, analyzed: replaced whole
    assert _copy(profiles) == run and not (run / "analysis.json").exists()
    mine = tmp_path / "mine" / RUN_ID
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my own run folder, by chance of the same name")
    before = _tree_hash(mine.parent)
    proc = run_perfctl("shipped", "--profiles", str(mine.parent))
    assert proc.returncode == 2 and "is not a copy of the shipped run" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert _tree_hash(mine.parent) == before
