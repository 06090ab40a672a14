"""DeepSeek-OCR v1 captures and `--driver-python`, through the real command line.

In CI (one environment, transformers 5): the refusals -- a v1 folder with perfctl's own interpreter, a
driver interpreter that is not one, --mode for another model -- and a real capture of the built-in
DeepSeek-OCR-2 tiny model whose every pass runs in another interpreter (a wrapper of this one).

With a second environment (PERFCTL_V1_PYTHON: a Python with transformers 4.46.x, torch, torchvision,
addict, easydict, einops, nvtx 0.2.11; PERFCTL_V1_MODEL: a v1 folder with its remote code and a config
small enough for the CPU, see docs/workloads.md): the pages perfctl prepares equal what the folder's
own infer() hands to generate in every mode, their image tokens equal perfctl's FLOP model, and a real
`perfctl capture --tool all --device cpu` of v1 gives the stages from the hooks on SAM, CLIP, the
projector and the decoder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO, run_perfctl
from perfctl.flops import count_flops
from perfctl.resources import SAMPLE_PAGES_DIR

V1_PYTHON = os.environ.get("PERFCTL_V1_PYTHON")
V1_MODEL = os.environ.get("PERFCTL_V1_MODEL")
needs_v1_env = pytest.mark.skipif(
    not (V1_PYTHON and V1_MODEL),
    reason="needs PERFCTL_V1_PYTHON (a Python with transformers 4.46.x) and PERFCTL_V1_MODEL (a DeepSeek-OCR "
    "v1 folder with its remote code); see docs/workloads.md",
)
NEW_TOKENS = 3


def _v1_folder(tmp_path: Path) -> Path:
    """The built-in v1 architecture config with an auto_map and stand-in remote-code files."""
    folder = tmp_path / "v1"
    folder.mkdir()
    config = json.loads((REPO / "models" / "deepseek-ocr" / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_deepseekocr.DeepseekOCRForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_deepseekocr.py").write_text("# only its presence is checked before a run\n")
    return folder


def _refused(proc: subprocess.CompletedProcess[str], out: Path) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert not out.exists()  # nothing was written
    return lines[0]


def test_v1_with_perfctl_own_python_is_refused_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    said = _refused(
        run_perfctl("capture", "--model", str(_v1_folder(tmp_path)), "--random-weights", "--out", str(out)),
        out,
    )
    assert "perfctl's own Python has transformers 5" in said and "--driver-python" in said


def test_driver_python_that_is_not_an_interpreter_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    missing = tmp_path / "no-such-python"
    said = _refused(run_perfctl("capture", "--driver-python", str(missing), "--out", str(out)), out)
    assert said.endswith(f"--driver-python {missing} is not an executable file")
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\necho 'not python' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = dict(os.environ, PERFCTL_DRIVER_PYTHON=str(fake))  # the option's environment variable
    said = _refused(run_perfctl("capture", "--out", str(out), env=env), out)
    assert f"--driver-python {fake} did not run as a Python interpreter (not python)" in said


def test_mode_is_for_v1_only(tmp_path: Path) -> None:
    out = tmp_path / "run"
    said = _refused(run_perfctl("capture", "--mode", "tiny", "--out", str(out)), out)
    assert said.endswith("--mode is for DeepSeek-OCR v1; deepseek-ocr2-tiny is deepseek_ocr2")


@pytest.mark.nsys
@pytest.mark.slow
def test_every_pass_runs_in_the_driver_python(tmp_path: Path, nsys_bin: str) -> None:
    wrapper = tmp_path / "driver-python"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    run = tmp_path / "run"
    proc = run_perfctl(
        "capture", "--driver-python", str(wrapper), "--device", "cpu", "--num-pages", "1",
        "--max-new-tokens", "2", "--warmup", "0", "--tool", "all", "--out", str(run), "--nsys", nsys_bin,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    import torch
    import transformers

    python = manifest["driver_python"]
    assert python["path"] == str(wrapper) and python["own_interpreter"] is False
    assert python["torch"] == torch.__version__.split("+")[0] or python["torch"] == torch.__version__
    assert python["transformers"] == transformers.__version__
    assert str(wrapper) in manifest["nsys"]["command"]
    assert manifest["timing"]["command"][0] == str(wrapper) == manifest["torch"]["command"][0]
    assert manifest["status"] == "ok" and manifest["pages_completed"] == 1


@needs_v1_env
def test_v1_pages_are_prepared_as_infer_prepares_them(tmp_path: Path) -> None:
    """Every capture mode on three pages: a portrait page (Gundam tiles it 2 x 3), a wide one (3 x 1)
    and one of at most 640 x 640 (no tiles in Gundam: the 1024² global view alone, i.e. base)."""
    from perfctl.capture.driver_python import driver_env_path, pythonpath_with

    portrait = SAMPLE_PAGES_DIR / "page-01.png"
    wide, small = tmp_path / "wide.png", tmp_path / "small.png"
    with Image.open(portrait) as img:
        img.convert("RGB").resize((2000, 800)).save(wide)
    Image.new("RGB", (600, 400), (200, 30, 30)).save(small)
    env = dict(os.environ, PYTHONPATH=pythonpath_with(driver_env_path(tmp_path / "path")))
    proc = subprocess.run(
        [str(V1_PYTHON), str(REPO / "tests" / "v1_infer_check.py"), str(V1_MODEL),
         str(portrait), str(wide), str(small)],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout)
    assert found["transformers"].startswith("4.46.")
    results = found["results"]
    assert len(results) == 15
    for r in results:
        same = {k: v for k, v in r.items() if k.startswith("same_")}
        assert all(same.values()), r
        assert r["image_tokens"] == r["infer_image_tokens"]
        flops = count_flops(
            str(V1_MODEL), mode=r["flops_mode"], prompt_tokens=r["prompt_tokens"] - r["image_tokens"]
        )
        assert flops.to_json()["tokens"]["image"] == r["image_tokens"], r
    tokens = {(r["mode"], r["page"]): (r["image_tokens"], r["flops_mode"]) for r in results}
    for mode, expected in (("tiny", 73), ("small", 111), ("base", 273), ("large", 421)):
        assert {tokens[(mode, page)] for page in ("page-01.png", "wide.png", "small.png")} == {
            (expected, mode)
        }
    assert tokens[("gundam", "page-01.png")] == (903, "gundam-2x3")
    assert tokens[("gundam", "wide.png")] == (583, "gundam-3x1")
    assert tokens[("gundam", "small.png")] == (273, "base")


@needs_v1_env
@pytest.mark.nsys
@pytest.mark.slow
def test_v1_capture_all_passes_on_cpu(tmp_path: Path, nsys_bin: str) -> None:
    run = tmp_path / "run"
    proc = run_perfctl(
        "capture", "--model", str(V1_MODEL), "--random-weights", "--driver-python", str(V1_PYTHON),
        "--mode", "tiny", "--device", "cpu", "--num-pages", "2", "--max-new-tokens", str(NEW_TOKENS),
        "--warmup", "1", "--tool", "all", "--out", str(run), "--nsys", nsys_bin,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["driver_python"]["path"] == V1_PYTHON
    assert manifest["driver_python"]["transformers"].startswith("4.46.")
    assert manifest["workload"]["mode"] == "tiny" and manifest["model_spec"]["model_type"] == "deepseek_vl_v2"
    info = json.loads((run / "driver-info.json").read_text())
    assert info["transformers"].startswith("4.46.") and info["flops_mode"] == "tiny"
    flops = count_flops(
        str(V1_MODEL), mode="tiny", prompt_tokens=info["prompt_tokens_per_page"] - 73, new_tokens=NEW_TOKENS
    )
    assert info["image_tokens_per_page"] == flops.to_json()["tokens"]["image"] == 73

    analyzed = run_perfctl("analyze", str(run), "--format", "json")
    assert analyzed.returncode == 0, analyzed.stderr
    analysis = json.loads(analyzed.stdout)
    stages = {s["stage"]: s for s in analysis["stages"]}
    assert stages["vision"]["instances"] == 2 and stages["prefill"]["instances"] == 2
    assert stages["decode"]["instances"] == 2 * (NEW_TOKENS - 1)
    assert analysis["completion"]["complete"] == [0, 1]
    eff = analysis["efficiency"]
    assert eff["available"] is True, eff
    expected = flops.to_json()["flops"]
    for stage in ("vision", "prefill", "decode"):
        assert eff["stages"][stage]["flops_per_page"] == pytest.approx(expected[stage])
        assert eff["stages"][stage]["clean_seconds_per_page"] > 0
    operators = json.loads((run / "torch" / "operators.json").read_text())
    assert operators  # the torch.profiler pass ran the v1 driver too
