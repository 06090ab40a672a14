"""DeepSeek-OCR-2 (transformers' native `deepseek_ocr2`) as a driver workload.

Inputs are built here rather than by the HF processor so that the built-in configs run with no
tokenizer download: the global view is resized (longest side to the SAM input size), padded to a
square with mid-grey and normalized to [-1, 1], as DeepSeek-OCR-2's image processor does; the prompt is
BOS + one placeholder per image token + a fixed text prompt. A model folder with its own tokenizer
gets its prompt tokenized by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def image_token_count(config: Any) -> int:
    """Decoder positions one global view takes: the vision encoder's query count + 1 view separator.

    SAM turns an S×S image into (S/patch/4)² tokens; the encoder then emits 144 queries when that is
    at most 144 (768² views) and 256 otherwise (1024² views).
    """
    sam = config.vision_config.sam_config
    side = sam.image_size if isinstance(sam.image_size, int) else sam.image_size[0]
    patch = sam.patch_size if isinstance(sam.patch_size, int) else sam.patch_size[0]
    sam_tokens = (side // patch // 4) ** 2
    return (144 if sam_tokens <= 144 else 256) + 1


class DeepseekOcr2Workload:
    def __init__(self, spec: ModelSpec, model: Any, device: Any, dtype: Any) -> None:
        self.spec, self.model, self.device, self.dtype = spec, model, device, dtype
        self.config = model.config
        sam = self.config.vision_config.sam_config
        self.image_side = sam.image_size if isinstance(sam.image_size, int) else sam.image_size[0]
        self.image_tokens = image_token_count(self.config)
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
        scale = self.image_side / max(rgb.size)
        resized = rgb.resize(
            (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BICUBIC
        )
        canvas = Image.new("RGB", (self.image_side, self.image_side), GREY)
        canvas.paste(
            resized, ((self.image_side - resized.width) // 2, (self.image_side - resized.height) // 2)
        )
        pixels = torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8)
        pixels = pixels.view(self.image_side, self.image_side, 3).permute(2, 0, 1).float()
        pixels = ((pixels / 255.0 - 0.5) / 0.5).unsqueeze(0)

        text = self.config.text_config
        bos = text.bos_token_id if text.bos_token_id is not None else 0
        ids = [bos] + [self.config.image_token_id] * self.image_tokens + self.prompt_ids
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        return PreparedPage(
            inputs={
                "input_ids": input_ids,
                "attention_mask": torch.ones_like(input_ids),
                "pixel_values": pixels.to(self.device, self.dtype),
            },
            image_tokens=self.image_tokens,
            prompt_tokens=len(ids),
        )

    def stage_modules(self) -> tuple[Any, list[Any]]:
        """(decoder, vision modules) for the stage hooks."""
        inner = self.model.model
        return self.model.get_decoder(), [inner.vision_tower, inner.multi_modal_projector]


def load_deepseek_ocr2(spec: ModelSpec, device: str, dtype_name: str, seed: int) -> DeepseekOcr2Workload:
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(seed)
    model: Any  # transformers types .to() oddly for auto classes
    if spec.random_weights:
        config = AutoConfig.from_pretrained(spec.folder)
        with torch.device(device):
            model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    else:
        model = AutoModelForImageTextToText.from_pretrained(spec.folder, dtype=dtype)
        model.to(device)
    model.eval()
    return DeepseekOcr2Workload(spec, model, torch.device(device), dtype)
