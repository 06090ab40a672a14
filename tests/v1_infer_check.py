"""Run under a DeepSeek-OCR v1 driver interpreter (transformers 4.46.x) by tests/test_capture_v1.py:
for every capture mode and page, the inputs perfctl's v1 workload builds against the inputs the
folder's own `infer()` hands to `generate`, caught there (the model is built on the meta device:
preprocessing needs no weights). infer() moves its tensors with `.cuda()`; on a machine without a GPU
that is made a no-op for this check only.

    python tests/v1_infer_check.py MODEL_FOLDER PAGE... > result.json
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel

from perfctl.workloads.deepseek_ocr_v1 import CAPTURE_MODES, PROMPT, DeepseekOcrV1Workload
from perfctl.workloads.models import resolve_model


class Caught(Exception):
    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__("generate reached")
        self.call_args, self.call_kwargs = args, kwargs


def infer_inputs(model: Any, tokenizer: Any, page: Path, mode: str, out: str) -> dict[str, Any]:
    base_size, image_size, crop_mode = CAPTURE_MODES[mode]

    def generate(*args: Any, **kwargs: Any) -> None:
        raise Caught(args, kwargs)

    model.generate = generate
    try:
        with contextlib.redirect_stdout(sys.stderr):  # infer() prints as it goes
            model.infer(
                tokenizer,
                prompt=PROMPT,
                image_file=str(page),
                output_path=out,
                base_size=base_size,
                image_size=image_size,
                crop_mode=crop_mode,
                eval_mode=True,
            )
    except Caught as caught:
        tiles, views = caught.call_kwargs["images"][0]
        return {
            "input_ids": caught.call_args[0][0].tolist(),
            "images_seq_mask": caught.call_kwargs["images_seq_mask"][0].tolist(),
            "images_spatial_crop": caught.call_kwargs["images_spatial_crop"].tolist(),
            "tiles": tiles,
            "views": views,
        }
    raise AssertionError("infer() returned without calling generate")


def main(folder: str, pages: list[str]) -> dict[str, Any]:
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]  # no GPU here
    spec = resolve_model(folder, random_weights=True)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    with torch.device("meta"):
        model = AutoModel.from_config(config, trust_remote_code=True, torch_dtype=torch.float32)
    results = []
    with tempfile.TemporaryDirectory() as out:
        for mode in CAPTURE_MODES:
            work = DeepseekOcrV1Workload(spec, model, torch.device("cpu"), torch.float32, mode)
            work.tokenizer.eos_token_id = 1  # infer() passes it on to generate
            for page in pages:
                ours = work.prepare(Path(page))
                theirs = infer_inputs(model, work.tokenizer, Path(page), mode, out)
                mine = ours.inputs
                # infer() casts every view to bfloat16; perfctl's are in the model's dtype
                same_views = torch.equal(mine["images"][0][1].to(torch.bfloat16), theirs["views"])
                same_tiles = mine["images"][0][0].shape == theirs["tiles"].shape and torch.equal(
                    mine["images"][0][0].to(torch.bfloat16), theirs["tiles"].to(torch.bfloat16)
                )
                results.append(
                    {
                        "mode": mode,
                        "page": Path(page).name,
                        "same_input_ids": mine["input_ids"][0].tolist() == theirs["input_ids"],
                        "same_images_seq_mask": mine["images_seq_mask"][0].tolist()
                        == theirs["images_seq_mask"],
                        "same_images_spatial_crop": mine["images_spatial_crop"].tolist()
                        == theirs["images_spatial_crop"],
                        "same_global_view": same_views,
                        "same_tiles": same_tiles,
                        "tiles": int(theirs["tiles"].shape[0]) if theirs["tiles"].abs().sum() else 0,
                        "image_tokens": ours.image_tokens,
                        "infer_image_tokens": sum(theirs["images_seq_mask"]),
                        "prompt_tokens": ours.prompt_tokens,
                        "flops_mode": ours.flops_mode,
                    }
                )
    return {"transformers": __import__("transformers").__version__, "results": results}


if __name__ == "__main__":
    json.dump(main(sys.argv[1], sys.argv[2:]), sys.stdout, indent=1)
