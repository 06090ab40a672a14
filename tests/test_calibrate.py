"""`perfctl calibrate` and MFU/MBU against measured ceilings.

On a machine with a CUDA GPU the command measures it for real; without one, asking for a GPU must be
refused in one line (exit 2) with nothing written, and `--device cpu` measures this CPU for real (a
CPU has no datasheet peak: a CPU run's MFU and MBU divide by what was measured on its CPU).
The analysis side is checked on the real H100 runs of tests/fixtures with
a calibration built from figures measured by hand on the same kind of H100 SXM
(../shared/docs/deepseek-ocr.md: an 8192³ bf16 matmul at 769-798 TFLOP/s, a device-to-device copy at
≈3.0 TB/s counting bytes read plus written); the lowest matmul figure is used.
"""

from __future__ import annotations

import json
import lzma
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, run_perfctl
from perfctl.analysis.efficiency import efficiency
from perfctl.analysis.repeatability import load_clean_pass
from perfctl.hardware.calibrate import FORMAT, Calibration, load_calibration
from perfctl.hardware.peaks import resolve_peak

torch = pytest.importorskip("torch")

FULL_RUN = FIXTURES / "h100-full-ocr2-run"
TINY_RUN = FIXTURES / "h100-tiny-ocr2-all"
H200_CALIBRATION = FIXTURES / "h200-calibration.json"
H100_MATMUL_TFLOPS, H100_COPY_GBS = 769.0, 3000.0


def _h100_calibration(gpu: str = "NVIDIA H100 80GB HBM3", sms: int = 132) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "measured_at": "by hand, see ../shared/docs/deepseek-ocr.md",
        "gpu_name": gpu,
        "gpu_sm_count": sms,
        "device": "cuda:0",
        "matmul": {
            "dtype": "bfloat16",
            "sizes": [{"n": 8192, "tflops": H100_MATMUL_TFLOPS}],
            "best_tflops": 769.0,
        },
        "memory": {"gbs": H100_COPY_GBS},
    }


def _manifest(run: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run / "manifest.json").read_text())
    return data


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: measured below")
def test_no_gpu_is_refused_in_one_line(tmp_path: Path) -> None:
    for args, needle in (
        ([], "no CUDA GPU"),
        (["--device", "cuda:x"], "--device must be cpu, cuda or cuda:N"),
        (["--device", "tpu"], "--device must be cpu, cuda or cuda:N"),
    ):
        out = tmp_path / "c.json"
        proc = run_perfctl("calibrate", *args, "--out", str(out))
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_measures_this_gpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = run_perfctl("calibrate", "--device", "cuda:0", "--out", str(out), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data == json.loads(out.read_text()) and data["format"] == FORMAT
    assert data["gpu_name"] == torch.cuda.get_device_name(0)
    rates = [s["tflops"] for s in data["matmul"]["sizes"]]
    assert data["matmul"]["best_tflops"] == max(rates) > 0 and data["memory"]["gbs"] > 0
    peak = resolve_peak(data["gpu_name"], data["gpu_sm_count"], "bfloat16")
    if peak.value is not None:  # a measured rate above the dense datasheet peak would be a counting error
        assert data["matmul"]["best_tflops"] < 1.05 * peak.value


def test_mfu_and_mbu_against_the_measured_ceiling() -> None:
    manifest = _manifest(FULL_RUN)
    calibration = (Calibration(_h100_calibration()), "h100.json")
    result = efficiency(load_clean_pass(FULL_RUN, manifest), manifest, {}, calibration=calibration)
    measured = result["inputs"]["measured"]
    assert measured["matmul_tflops"] == H100_MATMUL_TFLOPS and measured["source"] == "h100.json"
    for stage in ("vision", "prefill", "decode"):
        st = result["stages"][stage]
        assert st["mfu_measured"] == pytest.approx(st["achieved_tflops"] / H100_MATMUL_TFLOPS)
        assert st["mfu_measured"] == pytest.approx(st["mfu"] * 989.5 / H100_MATMUL_TFLOPS)  # vs the datasheet
    assert result["page"]["mfu_measured"] == pytest.approx(
        result["page"]["achieved_tflops"] / H100_MATMUL_TFLOPS
    )
    mbu = result["decode_mbu"]
    assert mbu["mbu_measured"] == pytest.approx(mbu["achieved_gbs"] / H100_COPY_GBS)


def test_a_calibration_of_another_gpu_or_dtype_is_not_applied() -> None:
    manifest = _manifest(FULL_RUN)
    clean = load_clean_pass(FULL_RUN, manifest)
    # a real `perfctl calibrate` of an H200 (789.8 TFLOP/s bf16, 4,203 GB/s): never applied to an H100 run
    other = (load_calibration(H200_CALIBRATION), str(H200_CALIBRATION))
    assert other[0].data["gpu_name"] == "NVIDIA H200" and other[0].matmul_tflops > 700
    result = efficiency(clean, manifest, {}, calibration=other)
    assert result["inputs"]["measured"]["matmul_tflops"] is None
    assert "NVIDIA H200" in result["inputs"]["measured"]["reason"]
    assert all(result["stages"][s]["mfu_measured"] is None for s in ("vision", "prefill", "decode"))
    assert result["stages"]["vision"]["mfu"] is not None  # the datasheet MFU stays
    assert clean is not None
    fp16 = clean.__class__(clean.records, clean.info | {"dtype": "float16"})
    result = efficiency(fp16, manifest, {}, calibration=(Calibration(_h100_calibration()), "h100.json"))
    assert (
        result["inputs"]["measured"]["matmul_tflops"] is None
        and "measured in bfloat16, the run computed in float16" in result["inputs"]["measured"]["reason"]
    )
    assert result["decode_mbu"]["mbu_measured"] is not None  # bandwidth does not depend on the dtype


def test_analyze_takes_calibration_flag_or_run_folder_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(TINY_RUN, run, ignore=shutil.ignore_patterns("*.xz"))
    with lzma.open(TINY_RUN / "run.sqlite.xz") as src, (run / "run.sqlite").open("wb") as dst:
        shutil.copyfileobj(src, dst)
    calibration = tmp_path / "h100.json"
    calibration.write_text(json.dumps(_h100_calibration()))
    flagged = run_perfctl("analyze", str(run), "--calibration", str(calibration), "--format", "json")
    assert flagged.returncode == 0, flagged.stderr
    eff = json.loads(flagged.stdout)["efficiency"]
    assert eff["inputs"]["measured"]["source"] == str(calibration)
    assert eff["stages"]["prefill"]["mfu_measured"] == pytest.approx(
        eff["stages"]["prefill"]["achieved_tflops"] / H100_MATMUL_TFLOPS
    )
    assert "MFU vs measured" in (run / "report.html").read_text()
    shutil.copyfile(calibration, run / "calibration.json")  # as capture --calibrate leaves it
    found = json.loads(run_perfctl("analyze", str(run), "--format", "json").stdout)["efficiency"]
    assert found["inputs"]["measured"]["source"] == str(run / "calibration.json")
    for bad, needle in (
        (tmp_path / "missing.json", "cannot read"),
        (run / "manifest.json", "not a perfctl calibration"),
    ):
        proc = run_perfctl("analyze", str(run), "--calibration", str(bad))
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_measures_this_cpu(tmp_path: Path) -> None:
    """`--device cpu`: this CPU's float32 matmul rate and memory-copy bandwidth, measured now (the
    figures depend on the machine and its load, so only their shape and consistency are checked)."""
    out = tmp_path / "cpu.json"
    proc = run_perfctl("calibrate", "--device", "cpu", "--out", str(out), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data == json.loads(out.read_text()) and data["format"] == FORMAT
    assert data["device"] == "cpu" and data["gpu_name"] is None and data["cpu_count"] >= 1
    assert data["matmul"]["dtype"] == "float32" and data["torch_threads"] == torch.get_num_threads()
    rates = [s["tflops"] for s in data["matmul"]["sizes"]]
    assert data["matmul"]["best_tflops"] == max(rates) > 0 and data["memory"]["gbs"] > 0
    for size in data["matmul"]["sizes"]:  # each rate is 2 n^3 FLOPs over its own measured time
        assert size["tflops"] == pytest.approx(2 * size["n"] ** 3 / (size["ms_per_call"] / 1e3) / 1e12)
    assert load_calibration(out).on_cpu
    text = run_perfctl("calibrate", "--device", "cpu", "--dtype", "bfloat16")
    assert text.returncode == 0, text.stderr
    assert "not a datasheet figure" in text.stdout and "bfloat16 matmul:" in text.stdout
    assert "GFLOP/s best" in text.stdout


@pytest.fixture(scope="module")
def calibrated_cpu_run(tmp_path_factory: pytest.TempPathFactory, nsys_bin: str) -> Path:
    """A real CPU capture with every pass and --calibrate (the demo's way)."""
    run = tmp_path_factory.mktemp("calibrated") / "cpu-all"
    proc = run_perfctl(
        "capture", "--tool", "all", "--calibrate", "--num-pages", "1", "--max-new-tokens", "3",
        "--out", str(run), "--nsys", nsys_bin,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run


@pytest.mark.nsys
@pytest.mark.slow
def test_a_cpu_run_gets_mfu_and_mbu_against_its_measured_cpu(calibrated_cpu_run: Path) -> None:
    run = calibrated_cpu_run
    manifest = _manifest(run)
    assert manifest["calibration"]["status"] == "ok"
    assert manifest["calibration"]["command"][-4:-2] == ["--dtype", "float32"]  # the run's dtype
    calibration = json.loads((run / "calibration.json").read_text())
    assert calibration["device"] == "cpu" and calibration["cpu_name"] == manifest["host"]["cpu"]
    proc = run_perfctl("analyze", str(run), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    eff = json.loads(proc.stdout)["efficiency"]
    rate = calibration["matmul"]["best_tflops"]
    assert eff["inputs"]["peak_tflops"] == rate
    assert "measured on this CPU" in eff["inputs"]["peak_source"]
    assert "not a datasheet figure" in eff["inputs"]["peak_source"]
    for stage in ("vision", "prefill", "decode"):
        st = eff["stages"][stage]
        assert st["mfu"] == pytest.approx(st["achieved_tflops"] / rate) and st["mfu"] > 0, stage
        assert st["mfu_measured"] == st["mfu"]
    assert eff["page"]["mfu"] == pytest.approx(eff["page"]["achieved_tflops"] / rate)
    mbu = eff["decode_mbu"]
    assert mbu["peak_bandwidth_gbs"] == calibration["memory"]["gbs"]
    assert mbu["mbu"] == pytest.approx(mbu["achieved_gbs"] / calibration["memory"]["gbs"]) and mbu["mbu"] > 0


@pytest.mark.nsys
@pytest.mark.slow
def test_a_calibration_of_another_cpu_or_a_gpu_is_not_applied_to_a_cpu_run(
    calibrated_cpu_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(calibrated_cpu_run, run)
    other = json.loads((run / "calibration.json").read_text())
    other["cpu_name"] = "AMD EPYC 9654 96-Core Processor"
    (run / "calibration.json").write_text(json.dumps(other))
    eff = json.loads(run_perfctl("analyze", str(run), "--format", "json").stdout)["efficiency"]
    assert eff["inputs"]["measured"]["matmul_tflops"] is None
    assert "AMD EPYC 9654" in eff["inputs"]["measured"]["reason"]
    assert all(eff["stages"][s]["mfu"] is None for s in ("vision", "prefill", "decode"))
    assert eff["decode_mbu"]["mbu"] is None
    gpu = run_perfctl("analyze", str(run), "--calibration", str(H200_CALIBRATION), "--format", "json")
    eff = json.loads(gpu.stdout)["efficiency"]
    assert "measured a GPU" in eff["inputs"]["measured"]["reason"]
    assert (
        eff["inputs"]["peak_tflops"] is None
        and "perfctl calibrate --device cpu" in eff["inputs"]["peak_source"]
    )
