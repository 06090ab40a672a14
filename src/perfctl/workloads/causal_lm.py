"""Any Hugging Face causal LM from a local model folder as a driver workload: prompt-only pages.

Each page is a text prompt (a .txt file); stages come from the same hooks as for the document models
(perfctl.driver.markers): the first decoder call of a page is `prefill`, every later one a `decode`
step, and there is no vision stage. The model is built with transformers' AutoModelForCausalLM from
the folder: its weights, or with `--random-weights` its config alone (seeded random weights).
The prompt is tokenized by the folder's tokenizer when it has one; otherwise the prompt's UTF-8 bytes
are the token ids (modulo the vocabulary), after the config's BOS token -- a stand-in that keeps each
prompt's length tied to its text, said as such in driver-info.json (`prompt_source`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perfctl.workloads.deepseek_ocr2 import PreparedPage
from perfctl.workloads.models import ModelSpec


class CausalLmWorkload:
    image_tokens = 0  # prompt-only pages: no image, no vision stage
    tiles = 0

    def __init__(self, spec: ModelSpec, model: Any, device: Any) -> None:
        self.spec, self.model, self.device = spec, model, device
        self.config = model.config
        self.tokenizer = self._tokenizer(spec.folder)
        self.prompt_source = (
            "tokenizer"
            if self.tokenizer is not None
            else "utf-8 bytes as token ids (no tokenizer in the folder)"
        )

    @staticmethod
    def _tokenizer(folder: Path) -> Any:
        if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(folder)
        return None

    def token_ids(self, text: str) -> list[int]:
        if self.tokenizer is not None:
            return list(self.tokenizer(text)["input_ids"])
        vocab = int(self.config.vocab_size)
        bos = self.config.bos_token_id
        return ([] if bos is None else [int(bos)]) + [b % vocab for b in text.encode("utf-8")]

    def prepare(self, prompt_path: Path) -> PreparedPage:
        import torch

        ids = self.token_ids(prompt_path.read_text(encoding="utf-8"))
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        return PreparedPage(
            inputs={"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)},
            image_tokens=0,
            prompt_tokens=len(ids),
        )

    def stage_modules(self) -> tuple[Any, list[Any]]:
        """(decoder, vision modules) for the stage hooks: the base model, and no vision modules."""
        return self.model.get_decoder(), []
