"""--batch-size N: pages handed to `generate` N at a time, as a server batches requests.

The rule: a pass's pages go into batches of N in the order the pass runs them, the last batch holding
what is left (fewer than N when N does not divide the page count; its input shape is then its own,
and the warm-up runs it as it runs every distinct shape). Every repeat forms the same batches.

Rows are collated as Hugging Face's own processors pad a batch for generation: prompts of different
lengths are padded on the left (a decoder-only model generates from the right end of every row), the
padding masked out by `attention_mask`, so every row generates from its own last prompt token. Image
inputs are stacked along their first dimension: DeepSeek-OCR-2's global views (one per page) and local
tiles (every page of a run has the run's `--tiles`, so rows never differ in their number of tiles and
no image is padded), with `num_local_patches` one entry per row.

Padding is wasted work, not useful work: a batch's record keeps each row's own prompt length and its
padding, and analysis counts FLOPs and bytes from the rows' own lengths (perfctl.analysis.efficiency).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfctl.errors import BadInput

if TYPE_CHECKING:  # (the manifest's reader takes BATCH_SIZE_LIMIT from here, without the workloads)
    from perfctl.workloads.deepseek_ocr2 import PreparedPage

BATCH_SIZE_LIMIT = 1024  # far past where an H200 stops gaining throughput (batch 64: ~2,700 tokens/s)
ROW_KEYS = ("input_ids", "attention_mask")  # per-token inputs, padded on the left
STACKED_KEYS = ("pixel_values", "pixel_values_local")  # image tensors, stacked along dimension 0
LISTED_KEYS = ("num_local_patches",)  # one entry per row


@dataclass(frozen=True)
class PreparedBatch:
    """The rows of one `generate` call: the inputs collated, and each row's own page as prepared."""

    inputs: dict[str, Any]
    rows: tuple[PreparedPage, ...]
    prompt_tokens: int  # tokens per row as the model sees them: the longest row's, padding included

    @property
    def padding(self) -> list[int]:
        """Padding tokens of each row (left of its prompt)."""
        return [self.prompt_tokens - row.prompt_tokens for row in self.rows]


def batches_of(count: int, batch_size: int) -> list[list[int]]:
    """The page indices of each batch (see the module's rule)."""
    return [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]


def check_batching(batch_size: int, pages: int, profile_pages: int | None, model_is_v1: bool) -> None:
    """Refuse (BadInput) a --batch-size this capture cannot run as stated."""
    if not 1 <= batch_size <= BATCH_SIZE_LIMIT:
        raise BadInput(f"--batch-size must be between 1 and {BATCH_SIZE_LIMIT}, got {batch_size}")
    if batch_size == 1:
        return
    if model_is_v1:
        raise BadInput(
            "--batch-size above 1 is not supported for DeepSeek-OCR v1 yet: its remote code's generate "
            "takes one page (its Gundam tiles follow each page's shape)"
        )
    if batch_size > pages:
        raise BadInput(f"--batch-size {batch_size} is more than the {pages} pages given (--num-pages)")
    if profile_pages is not None and profile_pages % batch_size:
        raise BadInput(
            f"--profile-pages {profile_pages} is not a multiple of --batch-size {batch_size}: the profiled "
            "passes run whole batches, the clean pass's first ones"
        )


def collate(rows: list[PreparedPage], pad_token_id: int) -> PreparedBatch:
    """One `generate` call's inputs from its rows' (see the module's doc for how)."""
    import torch

    longest = max(row.prompt_tokens for row in rows)
    inputs: dict[str, Any] = {}
    for key in rows[0].inputs:
        values = [row.inputs[key] for row in rows]
        if key in ROW_KEYS:
            fill = pad_token_id if key == "input_ids" else 0
            inputs[key] = torch.cat(
                [torch.nn.functional.pad(v, (longest - v.shape[1], 0), value=fill) for v in values]
            )
        elif key in STACKED_KEYS:
            inputs[key] = torch.cat(values)
        elif key in LISTED_KEYS:
            inputs[key] = [entry for v in values for entry in v]
        else:  # a new input of a workload: refused rather than collated by guess
            raise BadInput(f"cannot batch the '{key}' input of {type(rows[0]).__name__} rows")
    return PreparedBatch(inputs=inputs, rows=tuple(rows), prompt_tokens=longest)


def pad_token_id(config: Any) -> int:
    """The id padding is written with: the model's pad token, else its EOS (what generate pads with),
    else 0. Masked out either way; only its embedding lookup runs."""
    text = getattr(config, "text_config", None) or config
    for source in (text, config):
        for name in ("pad_token_id", "eos_token_id"):
            value = getattr(source, name, None)
            if isinstance(value, list):
                value = value[0] if value else None
            if isinstance(value, int):
                return value
    return 0


def batch_fields(batch: PreparedBatch, paths: list[Path], page_indices: list[int]) -> dict[str, Any]:
    """What a batch's record in pages.jsonl says of its rows: each row's page, its place in the batch
    (`batch_row`), its own prompt length and its padding; `prompt_tokens` is the padded length every
    row runs at, `padding_tokens` the batch's padding in all."""
    padding = batch.padding
    return {
        "batch_size": len(batch.rows),
        "rows": [
            {
                "batch_row": row_index,
                "page": path.name,
                "page_index": page_index,
                "prompt_tokens": row.prompt_tokens,
                "padding_tokens": pad,
                "image_tokens": row.image_tokens,
            }
            for row_index, (row, path, page_index, pad) in enumerate(
                zip(batch.rows, paths, page_indices, padding, strict=True)
            )
        ],
        "prompt_tokens": batch.prompt_tokens,
        "padding_tokens": sum(padding),
        "image_tokens": batch.rows[0].image_tokens,
    }
