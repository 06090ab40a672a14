"""Build a model from its spec (weights from the folder, or seeded random weights from its config) and
wrap it in the workload its model type calls for: DeepSeek-OCR-2 over page images, or a causal LM
over text prompts, or DeepSeek-OCR v1 through its remote code over page images. The driver uses
`load_workload` and nothing model-specific."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from perfctl.workloads.deepseek_ocr2 import PreparedPage
from perfctl.workloads.models import ModelSpec, is_v1_spec, takes_page_images


class Workload(Protocol):
    model: Any
    image_tokens: int
    tiles: int
    prompt_source: str

    def prepare(self, path: Path) -> PreparedPage: ...
    def stage_modules(self) -> tuple[Any, list[Any]]: ...


def load_hf_model(spec: ModelSpec, device: str, dtype_name: str, seed: int, auto_class: Any) -> Any:
    """`auto_class` (a transformers Auto class) from the folder's weights, or -- random weights -- from
    its config on `device` with the torch seed set first, so two runs build the same weights."""
    import torch
    from transformers import AutoConfig

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(seed)
    model: Any  # transformers types .to() oddly for auto classes
    if spec.random_weights:
        config = AutoConfig.from_pretrained(spec.folder)
        with torch.device(device):
            model = auto_class.from_config(config, dtype=dtype)
    else:
        model = auto_class.from_pretrained(spec.folder, dtype=dtype)
        model.to(device)
    return model.eval()


def load_workload(
    spec: ModelSpec, device: str, dtype_name: str, seed: int, tiles: int = 0, mode: str | None = None
) -> Workload:
    """`mode`: DeepSeek-OCR v1's resolution mode (tiny ... gundam)."""
    import torch

    if is_v1_spec(spec):
        from perfctl.workloads.deepseek_ocr_v1 import DeepseekOcrV1Workload, check_capture_mode, load_v1_model

        model = load_v1_model(spec, device, dtype_name, seed)
        dtype = getattr(torch, dtype_name)
        return DeepseekOcrV1Workload(spec, model, torch.device(device), dtype, check_capture_mode(mode))
    if takes_page_images(spec.model_type):
        from transformers import AutoModelForImageTextToText

        from perfctl.workloads.deepseek_ocr2 import DeepseekOcr2Workload

        model = load_hf_model(spec, device, dtype_name, seed, AutoModelForImageTextToText)
        return DeepseekOcr2Workload(spec, model, torch.device(device), getattr(torch, dtype_name), tiles)
    from transformers import AutoModelForCausalLM

    from perfctl.workloads.causal_lm import CausalLmWorkload

    model = load_hf_model(spec, device, dtype_name, seed, AutoModelForCausalLM)
    return CausalLmWorkload(spec, model, torch.device(device))
