"""DeepSeek-OCR v1 as a driver workload, through its own remote code.

v1 exists only as remote code shipped in the model folder beside the weights (`trust_remote_code`:
modeling_deepseekocr.py and the files it imports: deepencoder.py, modeling_deepseekv2.py,
configuration_deepseek_v2.py, conversation.py), written for transformers 4.46.x; it does not import on
transformers 5, which perfctl itself needs. So a v1 capture runs its driver in a second environment
(`perfctl capture --driver-python /path/to/venv/bin/python`, see docs/workloads.md); perfctl only
drives the folder's code, it ships none of it. Where the driver's interpreter has no transformers
4.46.x, or the folder lacks its remote code, the capture is refused before anything runs with a
one-line reason (`why_v1_cannot_run`).

Each page is prepared as the remote code's `infer()` prepares it -- `infer()` itself also generates,
so its steps are taken here one by one, with the remote module's own helpers (`format_messages`,
`load_pil_images`, `dynamic_preprocess`, `BasicImageTransform`, `text_encode`): the 'plain' prompt
`<image>\\nFree OCR. `, the global view padded (or, at most 640 wide, resized) to the mode's size, in
Gundam mode the local 640² tiles on the grid `dynamic_preprocess` picks from the page's aspect ratio,
image token runs with a newline token after every row and a view separator, `images_seq_mask` and
`images_spatial_crop`. Then `model.generate(input_ids, images=[(tiles, global view)], images_seq_mask,
images_spatial_crop)` as `infer()` calls it, except that generation is fixed-length greedy as for every
perfctl workload (infer's no_repeat_ngram_size=20 is not applied: it is host work per step that the
other workloads do not have).

Stages: SAM, CLIP and the projector are the vision modules; prefill/decode open at the first decoder
layer, because the remote code runs the encoders inside the language model's forward (after its
embedding lookup), so a hook on the language model itself would open prefill before vision.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfctl.errors import BadInput
from perfctl.workloads.deepseek_ocr2 import PreparedPage
from perfctl.workloads.models import ModelSpec

if TYPE_CHECKING:
    from perfctl.capture.driver_python import DriverPython

REMOTE_CODE_TRANSFORMERS = "4.46"
PROMPT = "<image>\nFree OCR. "  # the upstream README's plain-OCR prompt
IMAGE_TOKEN, IMAGE_TOKEN_ID = "<image>", 128815  # as infer() has them
PATCH_SIZE, DOWNSAMPLE_RATIO = 16, 4  # infer()'s patch_size and downsample_ratio
NO_CROP_BELOW = 640  # infer(): in crop mode a page of at most 640 x 640 gets no local tiles
# The upstream README's modes: name -> (base_size, image_size, crop_mode) for infer().
CAPTURE_MODES = {
    "tiny": (512, 512, False),
    "small": (640, 640, False),
    "base": (1024, 1024, False),
    "large": (1280, 1280, False),
    "gundam": (1024, 640, True),
}
DEFAULT_CAPTURE_MODE = "base"
INSTALL_HINT = (
    "make one with transformers==4.46.3 tokenizers==0.20.3, a torch with its torchvision, "
    "addict easydict einops and nvtx==0.2.11, and pass its python with --driver-python (docs/workloads.md)"
)


def check_capture_mode(mode: str | None) -> str:
    """A capture's --mode for v1: one of the modes infer() runs (default base)."""
    name = (mode or DEFAULT_CAPTURE_MODE).strip().lower()
    if name not in CAPTURE_MODES:
        raise BadInput(
            f"--mode {mode!r}: a DeepSeek-OCR v1 capture runs {', '.join(CAPTURE_MODES)} (the modes of the "
            "remote code's infer(); Gundam's tile grid follows each page's aspect ratio, and fixed grids "
            "or Gundam-M exist only in `perfctl flops`)"
        )
    return name


def remote_code_files(config: dict[str, Any], folder: Path | None = None) -> list[str]:
    """The Python files of the folder's remote code: those the config's `auto_map` names (e.g.
    modeling_deepseekocr.py) and, when `folder` is given, every file they import relatively."""
    auto_map = config.get("auto_map") or {}
    refs = [str(ref) for ref in auto_map.values() if isinstance(ref, str)]
    todo = sorted({ref.split("--")[-1].rsplit(".", 1)[0] + ".py" for ref in refs})
    seen: list[str] = []
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.append(name)
        path = folder / name if folder is not None else None
        if path is not None and path.is_file():
            source = path.read_text(errors="replace")
            todo += [f"{m}.py" for m in re.findall(r"^\s*from\s+\.(\w+)\s+import", source, re.MULTILINE)]
    return seen


def why_v1_cannot_run(
    name: str, folder: Path, config: dict[str, Any], driver: DriverPython | None = None
) -> str | None:
    """None when the driver's interpreter can run DeepSeek-OCR v1 from `folder`; otherwise one line
    saying why not and what to install or point to."""
    if driver is None:
        from perfctl.capture.driver_python import own_interpreter

        driver = own_interpreter()
    found = driver.packages.get("transformers") or "none"
    files = remote_code_files(config, folder)
    missing = [f for f in files if not (folder / f).is_file()]
    where = "perfctl's own Python" if driver.own else f"--driver-python {driver.path}"
    if not files:
        code = (
            f"{folder} has no remote code (its config.json has no auto_map naming modeling_deepseekocr.py): "
            "pass the folder of deepseek-ai/DeepSeek-OCR with its .py files"
        )
    elif missing:
        code = f"{folder} lacks {', '.join(missing)} of its remote code"
    else:
        code = ""
    version_ok = found.startswith(REMOTE_CODE_TRANSFORMERS + ".")
    if version_ok and not code:
        return None
    needs = []
    if not version_ok:
        needs.append(
            f"{where} has transformers {found} (v1's code does not import on transformers 5): {INSTALL_HINT}"
        )
    if code:
        needs.append(code)
    return (
        f"DeepSeek-OCR v1 runs only through its remote code under transformers {REMOTE_CODE_TRANSFORMERS}.x; "
        + "; ".join(needs)
        + f"; its FLOPs need none of this: perfctl flops {name} --mode base"
    )


def load_v1_model(spec: ModelSpec, device: str, dtype_name: str, seed: int) -> Any:
    """The folder's DeepseekOCRForCausalLM (its auto_map's AutoModel) with trust_remote_code: its
    weights, or -- random weights -- from its config on `device` with the torch seed set first."""
    import torch
    from transformers import AutoConfig, AutoModel

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(seed)
    model: Any
    if spec.random_weights:
        config = AutoConfig.from_pretrained(spec.folder, trust_remote_code=True)
        with torch.device(device):
            model = AutoModel.from_config(config, trust_remote_code=True, torch_dtype=dtype)
    else:
        model = AutoModel.from_pretrained(
            spec.folder, trust_remote_code=True, torch_dtype=dtype, use_safetensors=True
        )
        model.to(device)
    return model.eval()


@dataclass(frozen=True)
class V1Inputs:
    """One page as infer() builds it, before it moves anything to the device."""

    input_ids: list[int]
    images_seq_mask: list[bool]
    global_views: list[Any]  # CHW float tensors
    tiles: list[Any]
    grid: tuple[int, int]  # (width_crop_num, height_crop_num)


class DeepseekOcrV1Workload:
    def __init__(self, spec: ModelSpec, model: Any, device: Any, dtype: Any, mode: str) -> None:
        self.spec, self.model, self.device, self.dtype = spec, model, device, dtype
        self.config = model.config
        self.mode = check_capture_mode(mode)
        self.base_size, self.image_size, self.crop_mode = CAPTURE_MODES[self.mode]
        self.remote = sys.modules[type(model).__module__]  # the folder's modeling_deepseekocr
        self.tiles = 0
        self.tokenizer = self._tokenizer(spec.folder)
        self.prompt_source = (
            "utf-8 bytes as token ids (no tokenizer.json in the folder)"
            if isinstance(self.tokenizer, _Utf8Ids)
            else "tokenizer"
        )
        self.image_tokens = 0  # of the last page prepared (Gundam's depend on each page's shape)

    @staticmethod
    def _tokenizer(folder: Path) -> Any:
        if (folder / "tokenizer.json").is_file():
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(folder)
        return _Utf8Ids()

    def build(self, image_path: Path) -> V1Inputs:
        """infer()'s preprocessing of one page, step by step with the remote code's helpers."""
        from PIL import ImageOps

        remote = self.remote
        conversation = [
            {"role": "<|User|>", "content": PROMPT, "images": [str(image_path)]},
            {"role": "<|Assistant|>", "content": ""},
        ]
        prompt = remote.format_messages(conversations=conversation, sft_format="plain", system_prompt="")
        image = remote.load_pil_images(conversation)[0]
        transform = remote.BasicImageTransform(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), normalize=True)
        fill = tuple(int(x * 255) for x in transform.mean)
        before, after = prompt.split(IMAGE_TOKEN)
        ids = list(remote.text_encode(self.tokenizer, before, bos=False, eos=False))
        mask = [False] * len(ids)
        tiles: list[Any] = []
        grid = (1, 1)
        if self.crop_mode:
            if not (image.size[0] <= NO_CROP_BELOW and image.size[1] <= NO_CROP_BELOW):
                crops, found = remote.dynamic_preprocess(image)
                grid = (int(found[0]), int(found[1]))
                if grid[0] > 1 or grid[1] > 1:
                    tiles = [transform(c) for c in crops]
            global_view = ImageOps.pad(image, (self.base_size, self.base_size), color=fill)
            q_base = math.ceil((self.base_size // PATCH_SIZE) / DOWNSAMPLE_RATIO)
            image_ids = ([IMAGE_TOKEN_ID] * q_base + [IMAGE_TOKEN_ID]) * q_base + [IMAGE_TOKEN_ID]
            if tiles:
                q = math.ceil((self.image_size // PATCH_SIZE) / DOWNSAMPLE_RATIO)
                image_ids += ([IMAGE_TOKEN_ID] * (q * grid[0]) + [IMAGE_TOKEN_ID]) * (q * grid[1])
        else:
            if self.image_size <= NO_CROP_BELOW:
                image = image.resize((self.image_size, self.image_size))
            global_view = ImageOps.pad(image, (self.image_size, self.image_size), color=fill)
            q = math.ceil((self.image_size // PATCH_SIZE) / DOWNSAMPLE_RATIO)
            image_ids = ([IMAGE_TOKEN_ID] * q + [IMAGE_TOKEN_ID]) * q + [IMAGE_TOKEN_ID]
        ids += image_ids
        mask += [True] * len(image_ids)
        text = list(remote.text_encode(self.tokenizer, after, bos=False, eos=False))
        bos = 0  # infer()'s bos_id
        return V1Inputs(
            input_ids=[bos, *ids, *text],
            images_seq_mask=[False, *mask, *([False] * len(text))],
            global_views=[transform(global_view)],
            tiles=tiles,
            grid=grid,
        )

    def flops_mode(self, grid: tuple[int, int]) -> str:
        """The page's mode in `perfctl flops` terms: Gundam names its grid, and a Gundam page that got
        no tiles is the 1024² global view alone, i.e. base."""
        if not self.crop_mode:
            return self.mode
        return f"gundam-{grid[0]}x{grid[1]}" if grid != (1, 1) else "base"

    def prepare(self, image_path: Path) -> PreparedPage:
        import torch

        built = self.build(image_path)
        views = torch.stack(built.global_views).to(self.device, self.dtype)
        if built.tiles:
            tiles = torch.stack(built.tiles).to(self.device, self.dtype)
        else:  # infer(): zeros of the global size stand for 'no tiles' (the model tests their sum)
            tiles = torch.zeros((1, 3, self.base_size, self.base_size), device=self.device, dtype=self.dtype)
        input_ids = torch.tensor([built.input_ids], dtype=torch.long, device=self.device)
        image_tokens = sum(built.images_seq_mask)
        self.image_tokens = image_tokens
        return PreparedPage(
            inputs={
                "input_ids": input_ids,
                "attention_mask": torch.ones_like(input_ids),
                "images": [(tiles, views)],
                "images_seq_mask": torch.tensor(
                    [built.images_seq_mask], dtype=torch.bool, device=self.device
                ),
                "images_spatial_crop": torch.tensor([list(built.grid)], dtype=torch.long),
            },
            image_tokens=image_tokens,
            prompt_tokens=len(built.input_ids),
            flops_mode=self.flops_mode(built.grid),
        )

    def stage_modules(self) -> tuple[Any, list[Any]]:
        """(first decoder layer, [SAM, CLIP, projector]) for the stage hooks."""
        inner = self.model.model
        return inner.layers[0], [inner.sam_model, inner.vision_model, inner.projector]


class _Utf8Ids:
    """A stand-in tokenizer for a folder without tokenizer.json: a text's UTF-8 bytes are its token
    ids (below 256: no special token, never the image token), so the prompt keeps its length."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode("utf-8"))
