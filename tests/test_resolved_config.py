"""The FLOP model read from the config the driver's transformers resolved (model-config.resolved.json,
plain JSON, no transformers import) equals the FLOP model read through transformers' AutoConfig, for
every model config perfctl ships or tests with: analysis needs neither transformers nor torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from perfctl.flops import count_flops, read_model_config, resolved_config_json
from perfctl.run_folder import RESOLVED_CONFIG_FILE

ROOT = Path(__file__).resolve().parent.parent
MODELS = [
    str(ROOT / "models" / "deepseek-ocr2"),
    str(ROOT / "models" / "deepseek-ocr2-tiny"),
    *(str(p) for p in sorted((ROOT / "tests" / "fixtures" / "models").iterdir()) if p.is_dir()),
]


def _resolved_copy(model: str, tmp_path: Path) -> Path:
    config = read_model_config(model).config
    path = tmp_path / RESOLVED_CONFIG_FILE
    path.write_text(json.dumps(resolved_config_json(config)))
    return path


@pytest.mark.parametrize("model", MODELS, ids=lambda m: Path(m).name)
@pytest.mark.parametrize("tiles", [0, 2])
def test_resolved_config_gives_the_same_flops(model: str, tiles: int, tmp_path: Path) -> None:
    resolved = _resolved_copy(model, tmp_path)
    ocr2 = read_model_config(model).family == "deepseek-ocr2"
    if tiles and not ocr2:
        pytest.skip("local tiles are DeepSeek-OCR-2's")
    kwargs = {"tiles": tiles} if ocr2 else {}
    direct = count_flops(model, prompt_tokens=23, new_tokens=5, **kwargs)  # type: ignore[arg-type]
    via_json = count_flops(str(resolved), prompt_tokens=23, new_tokens=5, **kwargs)  # type: ignore[arg-type]
    assert via_json.to_json(breakdown=True) | {"model": None} == direct.to_json(breakdown=True) | {
        "model": None
    }
    assert via_json.decoder == direct.decoder


def test_reading_a_resolved_config_imports_neither_transformers_nor_torch(tmp_path: Path) -> None:
    resolved = _resolved_copy(str(ROOT / "models" / "deepseek-ocr2"), tmp_path)
    probe = (
        "import sys; from perfctl.flops import count_flops; "
        f"count_flops({str(resolved)!r}, tiles=1, prompt_tokens=11, new_tokens=8); "
        "print(sorted(m for m in ('transformers', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_resolved_file_without_a_config_is_refused(tmp_path: Path) -> None:
    from perfctl.errors import BadInput

    path = tmp_path / RESOLVED_CONFIG_FILE
    path.write_text('{"transformers": "5.17.0"}')
    with pytest.raises(BadInput, match="holds no resolved config"):
        read_model_config(str(path))
