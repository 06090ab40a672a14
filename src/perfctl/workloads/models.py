"""Which model a capture runs: a built-in config name or a local folder, checked without importing torch.

A built-in name (see `perfctl.resources.builtin_model_names`) is an architecture config with no
weights: it always runs with seeded random weights. A folder must hold a `config.json`; when it also
holds weights they are loaded, otherwise the user must ask for random weights explicitly.

Two kinds of model run: DeepSeek-OCR-2 (`deepseek_ocr2`) over page images, and causal LMs (a config
whose `architectures` name a `...ForCausalLM` class, or whose model type perfctl's FLOP model knows)
over text prompts, and DeepSeek-OCR v1 (`deepseek_vl_v2` with its SAM + CLIP encoder) over page images
through its remote code, which needs a driver interpreter with transformers 4.46.x
(`perfctl.workloads.deepseek_ocr_v1`; refused with what it needs otherwise).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfctl.errors import BadInput
from perfctl.resources import builtin_model_dir, builtin_model_names

if TYPE_CHECKING:
    from perfctl.capture.driver_python import DriverPython

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")
V1_MODEL_TYPE = "deepseek_vl_v2"  # DeepSeek-OCR v1's config (only v1 configs of this type get through)
PAGE_IMAGE_MODEL_TYPES = {"deepseek_ocr2", V1_MODEL_TYPE}


def takes_page_images(model_type: str) -> bool:
    """Whether the model reads page images (else: text prompts)."""
    return model_type in PAGE_IMAGE_MODEL_TYPES


def is_causal_lm(config: dict[str, Any]) -> bool:
    from perfctl.flops.decoder import BUILDERS

    architectures = config.get("architectures") or []
    return str(config.get("model_type")) in BUILDERS or any(
        str(a).endswith("ForCausalLM") for a in architectures
    )


def is_v1_spec(spec: ModelSpec) -> bool:
    """A resolved model is DeepSeek-OCR v1 (resolve_model lets no other deepseek_vl_v2 through)."""
    return spec.model_type == V1_MODEL_TYPE


@dataclass(frozen=True)
class ModelSpec:
    name: str  # as the user gave it: a built-in name or a path
    folder: Path
    builtin: bool
    model_type: str
    has_weights: bool
    random_weights: bool

    def to_json(self) -> dict[str, Any]:
        """The manifest's `model_spec` (workload.json keeps every field: perfctl.workloads.workload)."""
        return {
            "name": self.name,
            "folder": str(self.folder),
            "builtin": self.builtin,
            "model_type": self.model_type,
            "weights": "random (seeded)" if self.random_weights else "loaded from folder",
        }


def resolve_model(name: str, random_weights: bool = False, driver: DriverPython | None = None) -> ModelSpec:
    """`driver`: the interpreter that will run the driver (default: perfctl's own); DeepSeek-OCR v1
    runs only where it has transformers 4.46.x."""
    builtin = builtin_model_dir(name)
    folder = builtin if builtin is not None else Path(name)
    if builtin is None:
        if not folder.exists():
            raise BadInput(
                f"model '{name}' is neither a built-in model ({', '.join(builtin_model_names())}) "
                f"nor an existing folder"
            )
        if not folder.is_dir():
            raise BadInput(f"model path is not a folder: {folder}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise BadInput(f"model folder {folder} has no config.json")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read {config_path}: {exc}") from None
    if not isinstance(config, dict):
        raise BadInput(
            f"{config_path} is not a model config (a JSON object), it holds a {type(config).__name__}"
        )
    model_type = str(config.get("model_type", ""))
    from perfctl.flops.deepseek_ocr import is_deepseek_ocr_v1
    from perfctl.workloads.deepseek_ocr_v1 import why_v1_cannot_run

    if is_deepseek_ocr_v1(config):
        problem = why_v1_cannot_run(name, folder, config, driver)
        if problem:
            raise BadInput(problem)
        model_type = V1_MODEL_TYPE
    elif model_type == V1_MODEL_TYPE:
        raise BadInput(
            f"model type '{model_type}' in {config_path} without DeepSeek-OCR v1's SAM + CLIP encoder "
            "(vision_config.model_name deeplip_b_l) is DeepSeek-VL2, which is not supported"
        )
    if not takes_page_images(model_type) and not is_causal_lm(config):
        raise BadInput(
            f"model type '{model_type or '?'}' in {config_path} is not supported yet (supported: "
            f"{', '.join(sorted(PAGE_IMAGE_MODEL_TYPES))}, and causal LMs: a config whose architectures "
            "name a ...ForCausalLM class)"
        )
    has_weights = builtin is None and any(any(folder.glob(p)) for p in WEIGHT_PATTERNS)
    if builtin is None and not has_weights and not random_weights:
        raise BadInput(
            f"model folder {folder} has no weights; pass --random-weights to run its "
            f"architecture with seeded random weights"
        )
    if has_weights and not random_weights:
        check_weight_files(folder)
    return ModelSpec(
        name=name,
        folder=folder.resolve(),
        builtin=builtin is not None,
        model_type=model_type,
        has_weights=has_weights,
        random_weights=random_weights or not has_weights,
    )


def check_weight_files(folder: Path) -> None:
    """Refuse weight files that cannot load (empty, or a safetensors file whose header is not a whole
    JSON object) before a run starts, instead of the driver failing under nsys."""
    for pattern in WEIGHT_PATTERNS:
        for path in sorted(folder.glob(pattern)):
            size = path.stat().st_size
            if size == 0:
                raise BadInput(f"weight file {path} is empty")
            if path.suffix != ".safetensors":
                continue
            with path.open("rb") as fh:
                head = fh.read(8)
                length = int.from_bytes(head, "little") if len(head) == 8 else -1
                header = fh.read(length) if 0 < length <= size - 8 else b""
            try:
                ok = isinstance(json.loads(header), dict)
            except ValueError:
                ok = False
            if not ok:
                raise BadInput(
                    f"weight file {path} is not a readable safetensors file (damaged or truncated)"
                )
