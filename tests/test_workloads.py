"""Model and page resolution (no torch), the DeepSeek-OCR-2 token layout, and the nvtx/nsys check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from perfctl.driver.nvtx_compat import nvtx_problem, pair_verdict
from perfctl.errors import BadInput
from perfctl.resources import SAMPLE_PAGES_DIR, builtin_model_dir, builtin_model_names
from perfctl.workloads.models import resolve_model, takes_page_images
from perfctl.workloads.pages import list_pages


def test_builtin_models_and_pages_ship_with_perfctl() -> None:
    assert {"deepseek-ocr2", "deepseek-ocr2-tiny"} <= set(builtin_model_names())
    pages = list_pages(None)
    assert len(pages) >= 10 and pages == sorted(pages)
    with Image.open(pages[0]) as img:
        assert img.size == (1024, 1448)
    assert list_pages(None, 3) == pages[:3]
    assert all(p.parent == SAMPLE_PAGES_DIR for p in pages)


def test_full_size_config_matches_the_published_architecture() -> None:
    cfg = json.loads((builtin_model_dir("deepseek-ocr2") / "config.json").read_text())  # type: ignore[operator]
    text, sam, enc = (
        cfg["text_config"],
        cfg["vision_config"]["sam_config"],
        cfg["vision_config"]["encoder_config"],
    )
    assert (text["hidden_size"], text["num_hidden_layers"], text["num_attention_heads"]) == (1280, 12, 10)
    assert (text["n_routed_experts"], text["num_experts_per_tok"], text["n_shared_experts"]) == (64, 6, 2)
    assert text["mlp_layer_types"] == ["dense"] + ["sparse"] * 11 and text["vocab_size"] == 129280
    assert (sam["hidden_size"], sam["num_hidden_layers"], sam["global_attn_indexes"]) == (
        768,
        12,
        [2, 5, 8, 11],
    )
    assert (
        enc["hidden_size"],
        enc["num_hidden_layers"],
        enc["num_attention_heads"],
        enc["num_key_value_heads"],
    ) == (896, 24, 14, 2)
    assert cfg["image_token_id"] == 128815


def test_image_token_counts() -> None:
    from transformers import AutoConfig

    from perfctl.flops.deepseek_ocr2 import image_tokens

    full = AutoConfig.from_pretrained(builtin_model_dir("deepseek-ocr2"))
    tiny = AutoConfig.from_pretrained(builtin_model_dir("deepseek-ocr2-tiny"))
    assert image_tokens(full, 0) == 256 + 1  # 1024² global view + view separator
    assert image_tokens(tiny, 0) == 144 + 1  # small SAM input: the 768²-style 144 queries
    assert image_tokens(full, 6) == 256 + 1 + 6 * 144  # six local 768² tiles


def test_resolve_model_folder_rules(tmp_path: Path) -> None:
    spec = resolve_model("deepseek-ocr2-tiny")
    assert spec.builtin and spec.random_weights and spec.model_type == "deepseek_ocr2"
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(BadInput, match=r"no config\.json"):
        resolve_model(str(folder))
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(BadInput, match="not supported yet"):
        resolve_model(str(folder))
    # a causal LM: by its architectures, or by a decoder family the FLOP model knows
    for config in ({"model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"]}, {"model_type": "llama"}):
        (folder / "config.json").write_text(json.dumps(config))
        spec = resolve_model(str(folder), random_weights=True)
        assert spec.model_type == config["model_type"] and not takes_page_images(spec.model_type)
    (folder / "config.json").write_text((builtin_model_dir("deepseek-ocr2-tiny") / "config.json").read_text())  # type: ignore[operator]
    with pytest.raises(BadInput, match="--random-weights"):
        resolve_model(str(folder))
    assert resolve_model(str(folder), random_weights=True).random_weights
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(BadInput, match="is empty"):  # weights that cannot load are refused up front
        resolve_model(str(folder))
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
    spec = resolve_model(str(folder))
    assert spec.has_weights and not spec.random_weights and not spec.builtin


def test_list_pages_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        list_pages(tmp_path / "missing")
    with pytest.raises(BadInput, match="no page images"):
        list_pages(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(BadInput, match="at least 1"):
        list_pages(tmp_path, 0)
    assert list_pages(tmp_path, 1) == [tmp_path / "a.png"]


@pytest.mark.parametrize(
    "nvtx, nsys, invisible",
    [
        ("0.2.11", "2022.4.2.1", False),
        ("0.2.10", "2022.4.2.1", False),
        ("0.2.12", "2022.4.2.1", True),
        ("0.2.14", "2022.4.2.1", True),
        ("0.2.12", "2023.4.4.54", True),
        ("0.2.16", "2024.2.3.38", True),
        ("0.2.11", "2024.2.3.38", False),
        ("0.2.14", "2024.5.1.113", False),  # not measured: let through, the capture checks its ranges
        ("0.2.14", "2021.5.1.117", False),  # an older nsys was never measured either: not blamed
        ("0.2.9", "2022.4.2.1", False),
        ("0.2.14", None, False),
    ],
)
def test_nvtx_visibility_rule(nvtx: str, nsys: str | None, invisible: bool) -> None:
    problem = nvtx_problem(nvtx, nsys)
    assert (problem is not None) == invisible
    if problem:
        assert "nvtx==0.2.11" in problem
    assert nvtx_problem(None, "2022.4.2.1") is not None


@pytest.mark.parametrize(
    "nvtx, nsys, verdict",
    [
        ("0.2.11", "2022.4.2.1", "records ranges"),
        ("0.2.10", "2024.2.3.38", "records ranges"),
        ("0.2.12", "2023.4.4.54", "loses ranges"),
        ("0.2.16", "2024.2.3.38", "loses ranges"),
        ("0.2.11", "2025.3.1.90", "unknown"),  # newer than every nsys measured
        ("0.2.12", "2021.5.1.117", "unknown"),  # older than every nsys measured
        ("0.2.9", "2022.4.2.1", "unknown"),  # an nvtx older than every one measured
        ("0.2.11", None, "unknown"),
        (None, "2022.4.2.1", "unknown"),
    ],
)
def test_known_nvtx_nsys_pairs(nvtx: str | None, nsys: str | None, verdict: str) -> None:
    """Only measured pairs get a verdict: nsys 2022.4-2024.2 lose nvtx >= 0.2.12 and record 0.2.10/11."""
    assert pair_verdict(nvtx, nsys) == verdict


def test_local_tiles_follow_the_page_shape() -> None:
    from PIL import Image

    from perfctl.workloads.deepseek_ocr2 import _grid, _tile

    assert _grid(2, 0.7) == (2, 1)  # portrait page: two rows
    assert _grid(2, 1.5) == (1, 2)  # landscape page: two columns
    assert _grid(6, 0.7) == (3, 2)
    assert _grid(5, 1.0) in {(1, 5), (5, 1)}
    tiles = _tile(Image.new("RGB", (850, 1100), (255, 255, 255)), 4)
    assert len(tiles) == 4 and all(t.size == (768, 768) for t in tiles)


def test_deepseek_ocr_v1_is_refused_with_what_it_needs(tmp_path: Path) -> None:
    """v1 runs through its remote code under transformers 4.46.x: perfctl's own interpreter (5.x) is
    refused with the version found and what to install; a folder without the remote code (the config's
    auto_map module and every file it imports relatively) is refused with the files it lacks."""
    from importlib import metadata

    from perfctl.capture.driver_python import DriverPython

    with pytest.raises(BadInput, match=r"transformers 4\.46\.x") as builtin:
        resolve_model("deepseek-ocr")
    said = str(builtin.value)
    assert "has no remote code" in said and f"has transformers {metadata.version('transformers')}" in said
    assert "--driver-python" in said and "transformers==4.46.3" in said and "\n" not in said
    config = json.loads((builtin_model_dir("deepseek-ocr") / "config.json").read_text())  # type: ignore[operator]
    config["auto_map"] = {
        "AutoConfig": "modeling_deepseekocr.DeepseekOCRConfig",
        "AutoModel": "modeling_deepseekocr.DeepseekOCRForCausalLM",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadInput, match=r"lacks modeling_deepseekocr\.py") as folder:
        resolve_model(str(tmp_path))
    assert f"perfctl flops {tmp_path} --mode base" in str(folder.value)
    # the modeling file's relative imports are part of the remote code too
    (tmp_path / "modeling_deepseekocr.py").write_text(
        "from .deepencoder import build_sam_vit_b\nfrom .conversation import get_conv_template\n"
    )
    (tmp_path / "conversation.py").write_text("# present\n")
    v446 = DriverPython("/envs/v1/bin/python", "3.11.7", {"transformers": "4.46.3"}, own=False)
    with pytest.raises(BadInput, match=r"lacks deepencoder\.py of its remote code") as one:
        resolve_model(str(tmp_path), random_weights=True, driver=v446)
    assert "has transformers" not in str(one.value)  # that interpreter is fine
    (tmp_path / "deepencoder.py").write_text("# present\n")
    with pytest.raises(BadInput, match=r"perfctl's own Python has transformers 5"):
        resolve_model(str(tmp_path), random_weights=True)
    v5 = DriverPython("/envs/other/bin/python", "3.12.0", {"transformers": "5.17.0"}, own=False)
    with pytest.raises(BadInput, match=r"--driver-python /envs/other/bin/python has transformers 5\.17\.0"):
        resolve_model(str(tmp_path), random_weights=True, driver=v5)
    with pytest.raises(BadInput, match="has no weights; pass --random-weights"):
        resolve_model(str(tmp_path), driver=v446)
    spec = resolve_model(str(tmp_path), random_weights=True, driver=v446)
    assert spec.model_type == "deepseek_vl_v2" and takes_page_images(spec.model_type)
    assert spec.random_weights and not spec.has_weights


def test_deepseek_vl2_is_not_taken_for_ocr_v1(tmp_path: Path) -> None:
    config = {"model_type": "deepseek_vl_v2", "architectures": ["DeepseekVLV2ForCausalLM"],
              "vision_config": {"model_name": "siglip_so400m_patch14_384"}}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadInput, match="is DeepSeek-VL2, which is not supported"):
        resolve_model(str(tmp_path), random_weights=True)


def test_v1_capture_modes() -> None:
    from perfctl.workloads.deepseek_ocr_v1 import check_capture_mode

    assert check_capture_mode(None) == "base"
    assert [check_capture_mode(m) for m in ("tiny", "Small", "base", "large", "gundam")] == [
        "tiny", "small", "base", "large", "gundam",
    ]  # fmt: skip
    for bad in ("gundam-6", "gundam-m", "huge"):
        with pytest.raises(BadInput, match="a DeepSeek-OCR v1 capture runs tiny, small, base, large, gundam"):
            check_capture_mode(bad)
