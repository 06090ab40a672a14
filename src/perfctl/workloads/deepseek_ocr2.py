"""DeepSeek-OCR-2 (transformers' native `deepseek_ocr2`) as a driver workload.

Inputs are built here rather than by the HF processor so that the built-in configs run with no
tokenizer download: the global view is resized (longest side to the SAM input size), padded to a
square with mid-grey and normalized to [-1, 1], as DeepSeek-OCR-2's image processor does; the prompt is
BOS + one placeholder per image token + a fixed text prompt. A model folder with its own tokenizer
gets its prompt tokenized by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfctl.flops.deepseek_ocr2 import TILE_SIDE, image_tokens
from perfctl.workloads.models import ModelSpec

PROMPT_TEXT = "\nFree OCR. "
# Stand-in ids for PROMPT_TEXT when no tokenizer is present: 11 tokens, as the real tokenizer gives
# for the OCR prompt (../shared/docs/nsys-facts.md: 257 image tokens + 11 text tokens per page).
SYNTHETIC_PROMPT_IDS = [201, 305, 410, 512, 618, 723, 829, 934, 1040, 1145, 1250]
GREY = (127, 127, 127)


@dataclass(frozen=True)
class PreparedPage:
    inputs: dict[str, Any]
    image_tokens: int
    prompt_tokens: int  # all tokens of the prompt, image placeholders included
    flops_mode: str | None = None  # DeepSeek-OCR v1: the page's mode for `perfctl flops --mode`


class DeepseekOcr2Workload:
    def __init__(self, spec: ModelSpec, model: Any, device: Any, dtype: Any, tiles: int = 0) -> None:
        self.spec, self.model, self.device, self.dtype = spec, model, device, dtype
        self.config = model.config
        sam = self.config.vision_config.sam_config
        self.image_side = sam.image_size if isinstance(sam.image_size, int) else sam.image_size[0]
        self.tiles = tiles
        self.image_tokens = image_tokens(self.config, tiles)
        self.prompt_ids, self.prompt_source = self._prompt_ids(spec.folder)

    def _prompt_ids(self, folder: Path) -> tuple[list[int], str]:
        if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder)
            return list(tokenizer(PROMPT_TEXT, add_special_tokens=False)["input_ids"]), "tokenizer"
        vocab = int(self.config.text_config.vocab_size)
        return [i % vocab for i in SYNTHETIC_PROMPT_IDS], "synthetic"

    def prepare(self, image_path: Path) -> PreparedPage:
        import torch
        from PIL import Image

        with Image.open(image_path) as img:
            rgb = img.convert("RGB")
        inputs: dict[str, Any] = {"pixel_values": _normalized(_fit_square(rgb, self.image_side)).unsqueeze(0)}
        if self.tiles:
            inputs["pixel_values_local"] = torch.stack([_normalized(t) for t in _tile(rgb, self.tiles)])
            inputs["num_local_patches"] = [self.tiles]
        text = self.config.text_config
        bos = text.bos_token_id if text.bos_token_id is not None else 0
        ids = [bos] + [self.config.image_token_id] * self.image_tokens + self.prompt_ids
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        for key in ("pixel_values", "pixel_values_local"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.device, self.dtype)
        return PreparedPage(
            inputs={"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), **inputs},
            image_tokens=self.image_tokens,
            prompt_tokens=len(ids),
        )

    def stage_modules(self) -> tuple[Any, list[Any]]:
        """(decoder, vision modules) for the stage hooks."""
        inner = self.model.model
        return self.model.get_decoder(), [inner.vision_tower, inner.multi_modal_projector]


def _fit_square(rgb: Any, side: int) -> Any:
    """The page scaled to fit side x side (longest side), centred on mid-grey."""
    from PIL import Image

    scale = side / max(rgb.size)
    resized = rgb.resize(
        (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BICUBIC
    )
    canvas = Image.new("RGB", (side, side), GREY)
    canvas.paste(resized, ((side - resized.width) // 2, (side - resized.height) // 2))
    return canvas


def _grid(tiles: int, aspect: float) -> tuple[int, int]:
    """(rows, columns) with rows x columns = tiles whose shape is closest to the page's width/height."""
    shapes = [(r, tiles // r) for r in range(1, tiles + 1) if tiles % r == 0]
    return min(shapes, key=lambda rc: abs(math.log((rc[1] / rc[0]) / aspect)))


def _tile(rgb: Any, tiles: int) -> list[Any]:
    """The page resized onto a grid of `tiles` 768² local views (the grid closest to its aspect ratio),
    cut row by row, as DeepSeek-OCR-2's image processor crops pages into patches."""
    from PIL import Image

    rows, cols = _grid(tiles, rgb.width / rgb.height)
    page = rgb.resize((cols * TILE_SIDE, rows * TILE_SIDE), Image.Resampling.BICUBIC)
    return [
        page.crop((c * TILE_SIDE, r * TILE_SIDE, (c + 1) * TILE_SIDE, (r + 1) * TILE_SIDE))
        for r in range(rows)
        for c in range(cols)
    ]


def _normalized(image: Any) -> Any:
    """CHW float pixels in [-1, 1] (mean 0.5, std 0.5), as the model's image processor gives them."""
    import torch

    side_w, side_h = image.size
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    pixels = pixels.view(side_h, side_w, 3).permute(2, 0, 1).float()
    return (pixels / 255.0 - 0.5) / 0.5
