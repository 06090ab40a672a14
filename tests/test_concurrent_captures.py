"""Captures beside other nsys sessions, for real: two `perfctl capture` started a second apart both end
ok (perfctl's machine-wide nsys lock runs their nsys passes one after the other, with no help from the
test); `--no-wait` refuses at once, naming the holder or the foreign nsys session; a capture waits for
an nsys session perfctl did not start, then ends ok; and a session that runs beside the nsys pass is
noted in the manifest. Nothing here assumes how fast the machine is, or that no other nsys runs on it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import run_perfctl
from faults_support import Capture, DriverGate, ForeignNsysSession, HeldNsysLock, driver_of, own_nsys_session
from perfctl.capture.nsys_lock import LOCK_PATH_VAR, NsysSessionLock

pytestmark = [pytest.mark.nsys, pytest.mark.slow]

TINY = ("--device", "cpu", "--num-pages", "1", "--max-new-tokens", "2", "--warmup", "0")
WAIT_S = 600  # how long the test waits for a capture to reach a state (a bound, not a measurement)


def _manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "manifest.json").read_text())


def _assert_refused(proc: Any, *needles: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    line: str = proc.stderr.strip()
    assert line.startswith("perfctl: error: another nsys session runs on this machine: "), line
    assert line.endswith("; --no-wait does not wait"), line
    for needle in needles:
        assert needle in line, line
    return line


def test_two_captures_a_second_apart_both_end_ok(tmp_path: Path, nsys_bin: str) -> None:
    runs = (tmp_path / "first", tmp_path / "second")
    first = Capture("--out", str(runs[0]), *TINY, "--nsys", nsys_bin)
    time.sleep(1)  # the scenario: the second starts while the first is under way
    second = Capture("--out", str(runs[1]), *TINY, "--nsys", nsys_bin)
    assert first.finish() == 0, first.stdout + first.stderr
    assert second.finish() == 0, second.stdout + second.stderr
    manifests = [_manifest(run) for run in runs]
    for manifest, other in zip(manifests, (second, first), strict=True):
        assert manifest["status"] == "ok" and manifest["reason"] is None
        assert manifest["perfctl_nvtx_ranges"] == manifest["driver"]["nvtx_ranges_pushed"] > 0
        nsys = manifest["nsys"]
        # the other capture's nsys never ran beside this one's (its processes carry its pid)
        assert not [p for p in nsys["foreign_sessions_seen"] if p["holder"] == other.proc.pid]
        # whoever had to wait says for whom: a holder of the lock (the other capture, or any other
        # perfctl capture running on this machine meanwhile), never itself
        own = first.proc.pid if other is second else second.proc.pid
        for waited in nsys["session_lock"]["waited_for"]:
            assert waited.startswith(("the nsys lock ", "an nsys session perfctl cannot lock against")), (
                waited
            )
            assert f"perfctl pid {own} " not in waited, waited
    # the two nsys passes, one after the other
    spans = sorted((m["nsys"]["started_at"], m["nsys"]["ended_at"]) for m in manifests)
    assert spans[0][0] < spans[0][1] <= spans[1][0] < spans[1][1], spans
    assert first.processes() == {} and second.processes() == {}


def test_no_wait_refuses_while_another_perfctl_holds_the_lock(tmp_path: Path, nsys_bin: str) -> None:
    """The machine's lock held by another process through perfctl's own API, as a capture's nsys pass
    holds it: exit 2 at once, one line naming the holder's pid and run id; nothing made."""
    profiles = tmp_path / "profiles"
    holder = HeldNsysLock("holder-run-7", what="perfctl capture, nsys pass")
    try:
        proc = run_perfctl(
            "capture",
            "--no-wait",
            "--profiles",
            str(profiles),
            "--run-id",
            "refused",
            *TINY,
            "--nsys",
            nsys_bin,
        )
    finally:
        holder.release()
    _assert_refused(
        proc,
        f"the nsys lock {os.environ.get(LOCK_PATH_VAR) or '/tmp/perfctl-nsys-session.lock'}, held by ",
        f"perfctl pid {holder.pid} (perfctl capture, nsys pass, run holder-run-7, user ",
    )
    assert not profiles.exists(), "a refused capture made something"


def test_ctrl_c_while_waiting_for_the_lock_marks_the_run_interrupted(tmp_path: Path, nsys_bin: str) -> None:
    """A capture that waits for the lock and is stopped meanwhile: its run folder (claimed before the
    wait) says interrupted, and for whom it waited; no nsys ever started."""
    holder = HeldNsysLock("holder-run-8", what="perfctl capture, nsys pass")
    try:
        run = tmp_path / "profiles" / "stopped"
        capture = Capture("--profiles", str(run.parent), "--run-id", run.name, *TINY, "--nsys", nsys_bin)
        _wait_until_waiting_for(capture, run, f"perfctl pid {holder.pid} ")
        capture.interrupt_like_a_terminal()
        assert capture.finish() == 1, capture.stdout + capture.stderr
    finally:
        holder.release()
    assert "Traceback" not in capture.stderr
    manifest = _manifest(run)
    assert manifest["status"] == "interrupted" and manifest["finished_at"]
    assert manifest["reason"].startswith("stopped by SIGINT (Ctrl-C) while waiting for the nsys lock ")
    assert (
        f"held by perfctl pid {holder.pid} (perfctl capture, nsys pass, run holder-run-8"
        in manifest["reason"]
    )
    assert f"status: interrupted ({manifest['reason']})" in capture.stdout
    assert "started_at" not in manifest["nsys"] and not (run / "nsys.log").exists()
    runs = run_perfctl("runs", "--profiles", str(run.parent), "--format", "json")
    assert [(r["run_id"], r["status"]) for r in json.loads(runs.stdout)] == [("stopped", "interrupted")]
    assert not (run / ".capture.lock").exists() and capture.processes() == {}


def test_a_foreign_nsys_session_is_refused_with_no_wait_and_waited_for_without(
    tmp_path: Path, nsys_bin: str
) -> None:
    """The test holds the machine's lock (perfctl's API) while its foreign session runs, so that no
    other perfctl's nsys runs beside it, and the captures under test use a lock file of their own: the
    foreign session is what they meet, whatever else perfctl does on this machine meanwhile."""
    with own_nsys_session("keeping perfctl's sessions away from a foreign one"):
        _meet_a_foreign_session(tmp_path, nsys_bin)


def _meet_a_foreign_session(tmp_path: Path, nsys_bin: str) -> None:
    foreign = ForeignNsysSession(nsys_bin, tmp_path / "foreign")
    env = dict(os.environ, **{LOCK_PATH_VAR: str(tmp_path / "own.lock")})
    try:
        refused_dir = tmp_path / "refused"
        refused = run_perfctl(
            "capture", "--no-wait", "--out", str(refused_dir), *TINY, "--nsys", nsys_bin, env=env
        )
        line = _assert_refused(
            refused,
            "an nsys session perfctl cannot lock against: ",
            f"pid {foreign.pid} (user ",
            ", not started by perfctl): ",
            " profile --trace=osrt ",
        )
        assert "sleep 3600" in line and not refused_dir.exists()
        # without --no-wait it waits, the manifest saying for whom; once the session is gone it runs
        run = tmp_path / "waited"
        capture = Capture("--out", str(run), *TINY, "--nsys", nsys_bin, env=env)
        _wait_until_waiting_for(capture, run, f"pid {foreign.pid} ")
        assert capture.proc.poll() is None
        foreign.stop()
        assert capture.finish() == 0, capture.stdout + capture.stderr
    finally:
        foreign.stop()
    manifest = _manifest(run)
    assert manifest["status"] == "ok" and manifest["perfctl_nvtx_ranges"] > 0
    lock = manifest["nsys"]["session_lock"]
    assert any(f"pid {foreign.pid} (user " in w and "not started by perfctl" in w for w in lock["waited_for"])
    assert "waiting" not in lock and lock["acquired_at"] <= manifest["nsys"]["started_at"]
    assert foreign.pid not in [p["pid"] for p in manifest["nsys"]["foreign_sessions_seen"]]
    assert capture.processes() == {}


def test_a_session_beside_the_nsys_pass_is_noted(tmp_path: Path, nsys_bin: str) -> None:
    """A foreign session that starts while the nsys pass runs (its driver held at a gate until the
    session is there): the manifest names it; should the ranges go missing, the reason does too."""
    gate = DriverGate(tmp_path / "gate")
    run = tmp_path / "run"
    capture = Capture("--out", str(run), *TINY, "--driver-python", str(gate.python), "--nsys", nsys_bin)
    gate.wait_for_driver(capture)  # the nsys pass runs, its driver held at the gate
    foreign = ForeignNsysSession(nsys_bin, tmp_path / "foreign")
    try:
        gate.open()
        code = capture.finish()
    finally:
        foreign.stop()
    manifest = _manifest(run)
    seen = {p["pid"]: p for p in manifest["nsys"]["foreign_sessions_seen"]}
    assert foreign.pid in seen, seen
    assert seen[foreign.pid]["holder"] is None and seen[foreign.pid]["environment_readable"] is True
    assert " profile --trace=osrt " in seen[foreign.pid]["command"]
    # two sessions at once lose NVTX ranges at random: either outcome, each one explained
    assert (code, manifest["status"]) in ((0, "ok"), (1, "failed")), manifest.get("reason")
    if manifest["status"] == "failed":  # whatever failed, the reason names the session beside it
        assert f"pid {foreign.pid} " in manifest["reason"], manifest["reason"]
        during = "the pass" if "no NVTX ranges" in manifest["reason"] else "the nsys pass"
        assert f"another nsys session ran during {during} (pid " in manifest["reason"], manifest["reason"]
    assert capture.processes() == {}


def test_a_failure_beside_a_foreign_session_names_it(tmp_path: Path, nsys_bin: str) -> None:
    """A capture that fails for a reason of its own (its driver killed at the gate) while a foreign
    session runs: the reason says what failed, then names the session beside it as evidence (two nsys
    sessions at once fail at random, in ways nsys's own messages do not attribute)."""
    gate = DriverGate(tmp_path / "gate")
    run = tmp_path / "run"
    capture = Capture("--out", str(run), *TINY, "--driver-python", str(gate.python), "--nsys", nsys_bin)
    gate.wait_for_driver(capture)
    foreign = ForeignNsysSession(nsys_bin, tmp_path / "foreign")
    try:
        os.kill(driver_of(capture, run), signal.SIGKILL)
        code = capture.finish()
    finally:
        foreign.stop()
    manifest = _manifest(run)
    reason = manifest["reason"]
    assert (code, manifest["status"]) == (1, "failed"), reason
    assert reason.startswith("the driver finished 0 of 1 pages") or reason.startswith("nsys wrote no"), reason
    assert f"; another nsys session ran during the nsys pass (pid {foreign.pid} (user " in reason, reason
    assert reason.endswith("two nsys sessions at once fail at random: capture again once it has ended")
    assert f"status: failed ({reason})" in capture.stdout
    assert capture.processes() == {}


def test_the_passes_after_the_nsys_pass_leave_the_nsys_lock_free(tmp_path: Path, nsys_bin: str) -> None:
    """--tool all: the nsys lock is held for the nsys pass alone. The clean timing pass and the
    torch.profiler pass run no nsys, so another capture's nsys pass may run beside them (each pass's
    driver held at a gate while the test looks; what it sees may be another capture's nsys pass, but
    never this one's)."""
    gate = DriverGate(tmp_path / "gate")
    run = tmp_path / "run"
    args = (
        "--out",
        str(run),
        *TINY,
        "--tool",
        "all",
        "--driver-python",
        str(gate.python),
        "--nsys",
        nsys_bin,
    )
    capture = Capture(*args)
    gate.wait_for_driver(capture)  # the nsys pass: the capture holds the lock
    with NsysSessionLock("pytest: a look at the lock during the nsys pass") as look:
        busy = look.try_take()
    assert busy is not None and f"held by perfctl pid {capture.proc.pid}" in busy, busy
    gate.let_one_through()
    for later in ("timing", "torch"):
        gate.wait_for_driver(capture)  # the driver of the next pass, at the gate
        assert _manifest(run)["nsys"].get("ended_at"), f"the {later} pass started before the nsys pass ended"
        with NsysSessionLock(f"pytest: a look at the lock during the {later} pass") as look:
            busy = look.try_take()
        # not the capture's: free, or held by another perfctl or nsys of this machine (a capture beside
        # the suite takes it for its own nsys pass), never by this capture
        mine = f"held by perfctl pid {capture.proc.pid} ("
        assert busy is None or mine not in busy, (capture.proc.pid, busy)
        gate.let_one_through()
    assert capture.finish() == 0, capture.stdout + capture.stderr
    assert _manifest(run)["status"] == "ok"
    assert capture.processes() == {}


def test_no_wait_lets_a_torch_only_capture_run_while_the_lock_is_held(tmp_path: Path, nsys_bin: str) -> None:
    """--tool torch runs no nsys: the nsys lock is none of its business, so --no-wait refuses nothing
    while another perfctl holds it (and nothing of the lock goes into its manifest)."""
    holder = HeldNsysLock("someone-else")
    try:
        run = tmp_path / "torch-only"
        proc = run_perfctl(
            "capture", "--tool", "torch", "--no-wait", "--out", str(run), *TINY, "--nsys", nsys_bin
        )
    finally:
        holder.release()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = _manifest(run)
    assert manifest["status"] == "ok" and "nsys" not in manifest


def _wait_until_waiting_for(capture: Capture, run: Path, needle: str) -> None:
    """Until the capture's manifest says it waits for the nsys lock, naming `needle`."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            lock = _manifest(run).get("nsys", {}).get("session_lock", {})
        except (OSError, ValueError):  # not written yet
            lock = {}
        if lock.get("waiting") and any(needle in w for w in lock.get("waited_for", [])):
            return
        if capture.proc.poll() is not None:
            capture.finish()
            pytest.fail(f"the capture ended instead of waiting: {capture.stdout} {capture.stderr}")
        time.sleep(0.1)
    pytest.fail(f"the capture did not wait for {needle!r} within {WAIT_S} s")
