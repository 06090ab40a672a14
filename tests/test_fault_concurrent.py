"""Two captures into one run folder at once, for real: of two `perfctl capture` processes started
together one wins and the other refuses without touching the winner's folder; `--force` does not
replace a folder a capture is still writing. Run ids drawn in the same second never collide.

The winner's driver waits at a gate until the loser and the --force attempt have been refused, so the
winner is certainly still capturing meanwhile, whatever the machine's speed. (Captures into different
folders at once: tests/test_concurrent_captures.py.)"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from faults_support import Capture, DriverGate
from perfctl.capture.claim import claim_run_dir

ARGS = ("--num-pages", "2", "--max-new-tokens", "8", "--warmup", "0", "--device", "cpu")


@pytest.mark.nsys
@pytest.mark.slow
def test_two_captures_into_one_folder_one_wins(tmp_path: Path, nsys_bin: str) -> None:
    run = tmp_path / "same"
    gate = DriverGate(tmp_path / "gate")
    args = (*ARGS, "--driver-python", str(gate.python), "--nsys", nsys_bin)
    first, second = (Capture("--out", str(run), *args) for _ in range(2))
    # the loser refuses at once, while the winner runs
    deadline = time.monotonic() + 300
    while first.proc.poll() is None and second.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    loser, winner = (first, second) if first.proc.poll() is not None else (second, first)
    loser.finish()
    assert loser.proc.returncode == 2, loser.stdout + loser.stderr
    assert winner.proc.poll() is None, "the winner should still be capturing"
    assert "Traceback" not in loser.stderr and len(loser.stderr.strip().splitlines()) == 1
    assert "already exists" in loser.stderr or "was created by someone else just now" in loser.stderr
    # --force does not take a folder from a capture that is still writing into it
    forced = Capture("--out", str(run), *args[:-2], "--force", "--nsys", nsys_bin)
    assert forced.finish() == 2, forced.stdout + forced.stderr
    assert f"a capture is still writing into {run}; --force does not replace it" in forced.stderr
    assert winner.proc.poll() is None, "the --force attempt must not have disturbed the winner"
    gate.open()
    assert winner.finish() == 0, winner.stdout + winner.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["pages_completed"] == 2
    assert manifest["perfctl_command"] == ["perfctl", "capture", "--out", str(run), *args]
    assert not (run / ".capture.lock").exists()
    assert winner.processes() == {} and loser.processes() == {}


def test_run_ids_drawn_in_the_same_second_are_unique(tmp_path: Path) -> None:
    """Eight threads claim 250 run folders each, as fast as they can (most in the same second): every
    claim gets a folder of its own."""
    claimed: list[Path] = []
    lock = threading.Lock()

    def claim() -> None:
        mine = [claim_run_dir(tmp_path, "deepseek-ocr2-tiny") for _ in range(250)]
        with lock:
            claimed.extend(mine)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 2000 and len(set(claimed)) == 2000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in claimed)
    seconds = {p.name[:15] for p in claimed}
    assert len(seconds) < len(claimed) / 10  # many ids really were drawn within one second
