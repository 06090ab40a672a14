"""`perfctl compare` on real runs: the full-size DeepSeek-OCR-2 H100 runs (clean timing pass only,
their exports not kept) and the tiny-model H100 run with its export, against itself. Captures of
real runs that differ are in test_compare_captures.py."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import FIXTURES, copy_run_fixture, run_perfctl
from perfctl.analysis.compare import Sample, compare_analyses, difference, headline_times
from perfctl.analysis.repeatability import timing_statistics
from perfctl.records import read_page_records
from perfctl.report.compare import render_compare_html, render_compare_markdown, render_compare_text

FULL_64 = FIXTURES / "h100-full-ocr2-run"  # 3 pages x 64 new tokens
FULL_32 = FIXTURES / "h100-full-ocr2-clean10"  # 10 pages x 32 new tokens
H200_TIMING = FIXTURES / "h200-full-ocr2-timing30"  # a clean pass with CUDA-event stage times


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny-model H100 run folder with its export (decompressed), no analysis.json in it."""
    return copy_run_fixture("h100-tiny-ocr2-all", tmp_path_factory.mktemp("runs") / "tiny-h100")


@pytest.fixture(scope="module")
def tiny_analysis(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-analysis")
    proc = run_perfctl("analyze", str(tiny_run), "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    return out / "analysis.json"


def _compare_json(*args: str) -> tuple[int, dict[str, Any], str]:
    proc = run_perfctl("compare", *args, "--format", "json")
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _stage(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in result["stages"] if s["stage"] == name)


def _decode_ns(run: Path) -> np.ndarray:
    return np.array(
        [r["stage_wall_ns"]["decode"] for r in read_page_records(run / "timing" / "pages.jsonl")], float
    )


def test_half_the_tokens_decodes_faster_beyond_noise() -> None:
    code, result, _ = _compare_json(str(FULL_64), str(FULL_32))
    assert code == 0
    assert result["time_source"] == "clean" and "clean timing pass" in result["time_source_text"]
    assert "the runs differ: max_new_tokens: 64 vs 32" in result["warnings"]
    assert any("kernel figures need the nsys export" in w for w in result["warnings"])
    decode = _stage(result, "decode")
    # Welch's test by hand from the clean pass's page records
    a, b = _decode_ns(FULL_64), _decode_ns(FULL_32)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert math.floor(df) == 4  # t(0.975, 4) = 2.776
    delta, half = b.mean() - a.mean(), 2.776 * math.sqrt(va + vb)
    t = decode["time_ns"]
    assert t["a"]["count"] == 3 and t["b"]["count"] == 10
    assert t["delta"] == pytest.approx(delta) and t["df"] == pytest.approx(df)
    assert (t["ci95_low"], t["ci95_high"]) == (pytest.approx(delta - half), pytest.approx(delta + half))
    assert t["ci95_high"] < 0 and decode["verdict"] == "faster"
    assert t["delta_pct"] == pytest.approx(100 * delta / a.mean())
    # MFU from the clean pass, uncertainty carried over from the time
    assert decode["mfu"]["a"]["mean"] == pytest.approx(7.457e-05, rel=1e-3)  # README: 0.0075 %
    assert _stage(result, "vision")["mfu"]["a"]["mean"] == pytest.approx(0.0306, rel=1e-2)  # 3.1 %
    assert decode["kernel_count"] is None and decode["top_kernels"] == []
    assert result["a"]["origin"].endswith("clean timing pass only (no nsys export)")
    assert "gate" not in result


def test_gate_fails_when_a_stage_got_slower_beyond_noise() -> None:
    code, result, err = _compare_json(str(FULL_32), str(FULL_64), "--fail-if-slower", "10")
    assert code == 1
    decode = _stage(result, "decode")
    assert decode["verdict"] == "slower" and decode["time_ns"]["delta_pct"] > 60
    assert result["gate"]["failed"] and [f["stage"] for f in result["gate"]["failing_stages"]] == ["decode"]
    assert (
        err.strip().startswith("perfctl: gate FAILED")
        and "decode +" in err
        and len(err.strip().splitlines()) == 1
    )


def test_gate_passes_below_its_threshold_and_within_noise() -> None:
    code, result, _ = _compare_json(str(FULL_32), str(FULL_64), "--fail-if-slower", "100")
    assert code == 0 and not result["gate"]["failed"]
    # prefill is 18 % slower in run A's direction, but within noise: never a gate failure
    prefill = _stage(result, "prefill")
    assert (
        prefill["verdict"] == "within noise"
        and prefill["time_ns"]["ci95_low"] < 0 < prefill["time_ns"]["ci95_high"]
    )


def test_run_against_itself_is_within_noise(tiny_run: Path, tiny_analysis: Path) -> None:
    # a gate of 0 % asks for a power no run with any noise has: it cannot tell (exit 3), never passes
    code, result, err = _compare_json(str(tiny_analysis), str(tiny_run), "--fail-if-slower", "0")
    assert code == 3 and result["gate"]["outcome"] == "cannot tell" and result["gate"]["failing_stages"] == []
    assert [u["stage"] for u in result["gate"]["undetermined_stages"]] == ["vision", "prefill", "decode"]
    assert all(u["pages_needed"] is None for u in result["gate"]["undetermined_stages"])
    assert err.startswith("perfctl: gate CANNOT TELL") and "more than 1000 pages per run" in err
    assert not (tiny_run / "analysis.json").exists(), "compare must not write into a run folder"
    assert result["b"]["origin"].endswith("analyzed now (not written)")
    assert result["warnings"] == []
    for stage in result["stages"]:
        assert stage["verdict"] == "within noise"
        for key in ("time_ns", "mfu", "achieved_tflops", "kernel_count", "kernel_time_ns"):
            assert stage[key]["delta"] == 0 and stage[key]["change"] == "within noise", (stage["stage"], key)
        assert stage["top_kernels"] and all(k["delta_ns_per_page"] == 0 for k in stage["top_kernels"])
    decode = _stage(result, "decode")
    assert decode["kernel_count"]["a"]["mean"] == 1246  # 2 pages, 7 decode steps each, on the H100
    assert result["kernel_source"].startswith("nsys pass")


def test_top_limits_the_kernel_rows(tiny_analysis: Path) -> None:
    for top, most in (("0", 0), ("2", 2)):
        code, result, _ = _compare_json(str(tiny_analysis), str(tiny_analysis), "--top", top)
        assert code == 0
        assert all(len(s["top_kernels"]) == most for s in result["stages"])


def test_text_markdown_and_html(tiny_analysis: Path) -> None:
    # the tiny run's 2 clean pages can detect stage-time changes of 15.8 % (vision), 1.8 % (prefill)
    # and 12.7 % (decode): a 20 % gate can tell, and passes
    base = [str(tiny_analysis), str(tiny_analysis), "--fail-if-slower", "20"]
    text = run_perfctl("compare", *base)
    assert text.returncode == 0
    assert (
        "verdict (B against A): vision within noise, prefill within noise, decode within noise" in text.stdout
    )
    assert "gate passed" in text.stdout and "Stage time per page" in text.stdout
    assert (
        "these runs can detect stage-time changes ≥ (95 %): vision 15.8 %, prefill 1.8 %, decode 12.7 %"
        in (text.stdout)
    )
    assert "can detect ≥" in text.stdout
    md = run_perfctl("compare", *base, "--format", "md").stdout
    assert (
        md.startswith("# perfctl compare") and "| stage | A | B | B − A |" in md and "## MFU per stage" in md
    )
    html = run_perfctl("compare", *base, "--format", "html").stdout
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert html.count("<table>") == 6 and "gate passed" in html
    # self-contained: inline style, nothing fetched, nothing run
    assert "<script" not in html and "src=" not in html and "<link" not in html and "@import" not in html


def test_untrusted_names_are_escaped(tiny_analysis: Path) -> None:
    analysis = json.loads(tiny_analysis.read_text())
    hostile = '<script>alert("x")</script> | *bold* `code`\nnext line'
    renamed = copy.deepcopy(analysis)
    decode = next(s for s in renamed["stages"] if s["stage"] == "decode")
    old = decode["top_kernels"][0]["name"]
    decode["top_kernels"][0]["name"] = hostile
    decode["kernel_time_by_name"][hostile] = decode["kernel_time_by_name"].pop(old)
    comparison = compare_analyses(analysis, renamed, "<b>base</b>", "new|run")
    html = render_compare_html(comparison)
    assert "<script>" not in html and "<b>base</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html and "&lt;b&gt;base&lt;/b&gt;" in html
    md = render_compare_markdown(comparison)
    assert "<script>" not in md and "&lt;script&gt;" in md and "new\\|run" in md
    rows = [line for line in md.splitlines() if "alert" in line]
    assert rows and all(line.count("|") - line.count("\\|") == 10 for line in rows)  # 9 columns
    assert "alert" in render_compare_text(comparison)
    # the renamed kernel is new in B and A's is gone: each side shows 0 for the other
    kernels = {
        k["name"]: k for k in next(s for s in comparison["stages"] if s["stage"] == "decode")["top_kernels"]
    }
    assert kernels[hostile]["in_a"] is False and kernels[hostile]["a_time_ns_per_page"] == 0
    assert kernels[old]["in_b"] is False and kernels[old]["b_time_ns_per_page"] == 0


def test_bidirectional_overrides_and_nul_are_shown_escaped(tiny_analysis: Path, tmp_path: Path) -> None:
    """Through the CLI: a kernel name and a run id carrying U+202E (right-to-left override), U+2066
    (an isolate) and NUL are shown as visible escapes in HTML, Markdown and text, never raw; the
    JSON keeps them exact (JSON-escaped)."""
    analysis = json.loads(tiny_analysis.read_text())
    hostile = "gemm\u202eevil\u2066x\x00tail"
    renamed = copy.deepcopy(analysis)
    decode = next(s for s in renamed["stages"] if s["stage"] == "decode")
    old = decode["top_kernels"][0]["name"]
    decode["top_kernels"][0]["name"] = hostile
    decode["kernel_time_by_name"][hostile] = decode["kernel_time_by_name"].pop(old)
    renamed["run"] = dict(renamed.get("run") or {}, run_id="run\u202eid")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(analysis))
    b.write_text(json.dumps(renamed))
    before = hashlib.sha256(b.read_bytes()).hexdigest()
    for fmt in ("html", "md", "text"):
        proc = run_perfctl("compare", str(a), str(b), "--format", fmt)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        for raw in ("\u202e", "\u2066", "\x00"):
            assert raw not in proc.stdout, (fmt, raw)
        assert "\\u202e" in proc.stdout and "\\u2066" in proc.stdout and "\\u0000" in proc.stdout, fmt
    proc = run_perfctl("compare", str(a), str(b), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    names = {k["name"] for s in json.loads(proc.stdout)["stages"] for k in s["top_kernels"]}
    assert hostile in names
    assert hashlib.sha256(b.read_bytes()).hexdigest() == before


def test_welch_difference_and_unknown_noise() -> None:
    words = ("slower", "faster")
    d = difference(Sample(10.0, 1.0, 5), Sample(13.0, 2.0, 5), words)
    va, vb = 1 / 5, 4 / 5
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 4)  # 5.88: t(0.975, 5) = 2.571
    assert d["df"] == pytest.approx(df) and d["ci95_low"] == pytest.approx(3 - 2.571 * math.sqrt(va + vb))
    assert d["change"] == "slower"
    assert difference(Sample(10.0, 1.0, 5), Sample(10.5, 1.0, 5), words)["change"] == "within noise"
    one = difference(Sample(10.0, 0.0, 1), Sample(20.0, 0.0, 1), words)
    assert one["change"] == "unknown" and one["ci95_low"] is None
    assert difference(Sample(5.0, 0.0, 3), Sample(6.0, 0.0, 3), ("more", "fewer"))["change"] == "more"


def _assert_bad_input(proc: Any, needle: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) >= 1


def test_bad_inputs(tmp_path: Path, tiny_analysis: Path) -> None:
    ok = str(tiny_analysis)
    missing = run_perfctl("compare", ok, str(tmp_path / "nope"))
    _assert_bad_input(missing, "no such file or folder")
    assert missing.stderr.startswith("perfctl: error:") and len(missing.stderr.strip().splitlines()) == 1
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    _assert_bad_input(run_perfctl("compare", ok, str(other)), "not a perfctl analysis.json")
    broken = tmp_path / "broken.json"
    broken.write_bytes(b'{"stages": [')
    _assert_bad_input(run_perfctl("compare", str(broken), ok), "cannot read")
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    _assert_bad_input(run_perfctl("compare", ok, str(empty)), "is it a perfctl run folder")
    _assert_bad_input(run_perfctl("compare", ok, ok, "--fail-if-slower", "-5"), "--fail-if-slower")
    _assert_bad_input(run_perfctl("compare", ok, ok, "--format", "pdf"), "--format")
    _assert_bad_input(run_perfctl("compare", ok, ok, "--top", "-1"), "--top")
    assert not any(p.name == "analysis.json" for p in tmp_path.rglob("*"))


def _clean_pass_analysis(timing_dir: Path) -> dict[str, Any]:
    """The `timing` block `perfctl analyze` builds from a clean pass's page records."""
    return {
        "timing": {
            "pass": "clean",
            "statistics": timing_statistics(read_page_records(timing_dir / "pages.jsonl")),
        }
    }


def test_cuda_event_stage_times_when_both_runs_have_them() -> None:
    """The H200 clean pass (30 pages) recorded CUDA-event stage times: compared on those (the times
    MFU divides by); against the older H100 run, which has host-clock times only, on the host clock."""
    h200 = _clean_pass_analysis(H200_TIMING)
    records = read_page_records(H200_TIMING / "pages.jsonl")
    events = np.array([r["stage_gpu_ns"]["decode"] for r in records], float)
    itself = compare_analyses(h200, h200)
    assert itself["clean_clock"] == "cuda_events" and "CUDA-event" in itself["time_source_text"]
    decode = next(s for s in itself["stages"] if s["stage"] == "decode")["time_ns"]
    assert decode["a"]["count"] == 30 and decode["a"]["mean"] == pytest.approx(events.mean())
    assert decode["a"]["std"] == pytest.approx(events.std(ddof=1))
    assert all(s["verdict"] == "within noise" for s in itself["stages"])
    source, headline = headline_times(h200)  # what the run registry records
    assert (
        source == "clean" and headline is not None and headline["decode"].mean == pytest.approx(events.mean())
    )
    h100 = _clean_pass_analysis(FULL_32 / "timing")
    mixed = compare_analyses(h100, h200)
    assert mixed["clean_clock"] == "host_clock" and "host-clock" in mixed["time_source_text"]
    assert "only one run has CUDA-event stage times: host-clock stage times for both" in mixed["warnings"]
    wall = np.array([r["stage_wall_ns"]["decode"] for r in records], float)
    assert next(s for s in mixed["stages"] if s["stage"] == "decode")["time_ns"]["b"][
        "mean"
    ] == pytest.approx(wall.mean())


def test_a_torch_only_run_has_no_stage_times(tmp_path: Path) -> None:
    run = tmp_path / "torch-only"
    shutil.copytree(FIXTURES / "h200-full-ocr2-torch-only", run)
    proc = run_perfctl("compare", str(run), str(FULL_32))
    _assert_bad_input(proc, "a --tool torch run has operators only")


def test_progress_while_a_run_is_analyzed_on_the_fly(tiny_run: Path, tiny_analysis: Path) -> None:
    """On a terminal, the on-the-fly analysis shows its steps on stderr; --quiet silences them."""
    from test_cli_conventions import _run_with_tty_stderr

    code, stdout, labels = _run_with_tty_stderr("compare", str(tiny_analysis), str(tiny_run))
    assert code == 0 and "verdict (B against A)" in stdout
    assert labels[0] == f"{tiny_run} has no analysis.json: analyzing it" and labels[-1] == "done", labels
    assert any(label.startswith("reading") for label in labels)
    code, _, labels = _run_with_tty_stderr("compare", str(tiny_analysis), str(tiny_run), "--quiet")
    assert code == 0 and labels == []


def test_a_different_v1_resolution_mode_is_named(tmp_path: Path) -> None:
    """DeepSeek-OCR v1's --mode changes the image tokens, so compare names it like --tiles."""
    import shutil

    runs = []
    for mode in ("base", "tiny"):
        run = tmp_path / mode
        shutil.copytree(FULL_64, run)
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["workload"]["mode"] = mode
        (run / "manifest.json").write_text(json.dumps(manifest))
        runs.append(str(run))
    # a different mode is a different workload (its image tokens): refused, one line naming it
    refused = run_perfctl("compare", *runs)
    _assert_bad_input(refused, "mode: base vs tiny")
    assert len(refused.stderr.strip().splitlines()) == 1 and "--allow-different" in refused.stderr
    code, result, _ = _compare_json(*runs, "--allow-different")
    assert code == 0 and "the runs differ: mode: base vs tiny" in result["warnings"]
    assert result["allowed_different"] is True
    assert {"key": "mode", "a": "base", "b": "tiny", "refused": True} in result["run_differences"]
    text = run_perfctl("compare", *runs, "--allow-different").stdout
    assert "compared as asked (--allow-different), though the workloads differ: mode: base vs tiny" in text
