"""A page's input shape, and the warm-up that runs every distinct shape of the measured pages.

The first `generate` of an input shape in a process pays for work later calls of that shape do not:
CUDA loads kernels lazily on first use (`cuLibraryLoadData`, `cuKernelSetAttribute` inside the call),
cuBLAS and cuDNN pick and set up kernels per problem shape, the allocator grows its pools. On an H200
a Llama-3.2-1B-sized model's page of a prompt length the warm-up had not run took 2,427 ms against
562 ms (../shared/docs/h200-production.md). So the driver's warm-up covers every distinct input shape
among the pages the pass measures, `--warmup N` times each, rather than the first N pages.

A page's shape is the shapes of the tensors handed to `generate` (`PreparedPage.inputs`): a causal
LM's prompt length, DeepSeek-OCR-2's global view and local tiles, DeepSeek-OCR v1's views, tiles and
image token runs (Gundam's tiles follow each page's aspect ratio); what is not a tensor (a list of
tile counts, a flag) counts by its value. Pure Python without torch: the driver may run in another
environment (DeepSeek-OCR v1's, see workloads.deepseek_ocr_v1), and tests need no model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

InputShape = dict[str, Any]  # input name -> dims (a tensor), nested lists (a list of tensors), or value


def input_shape(inputs: Mapping[str, Any]) -> InputShape:
    """The shape of a page's `generate` inputs, as JSON-able data (see the module's doc)."""
    return {name: _shape_of(value) for name, value in sorted(inputs.items())}


def _shape_of(value: Any) -> Any:
    dims = getattr(value, "shape", None)
    if dims is not None:
        return [int(d) for d in dims]
    if isinstance(value, list | tuple):
        return [_shape_of(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return type(value).__name__  # an object generate takes whole: its kind is all a shape can say


def shape_key(shape: InputShape) -> str:
    """One string per distinct shape (equal shapes, equal keys)."""
    return json.dumps(shape, sort_keys=True, separators=(",", ":"))


def describe_shape(shape: InputShape) -> str:
    """A shape in words for logs: its tensors' dims, e.g. 'attention_mask 1x37, input_ids 1x37'."""

    def words(value: Any) -> str:
        if isinstance(value, list) and all(isinstance(d, int) for d in value):
            return "x".join(str(d) for d in value) or "scalar"
        if isinstance(value, list):
            return "[" + ", ".join(words(v) for v in value) + "]"
        return str(value)

    return ", ".join(f"{name} {words(value)}" for name, value in shape.items())


@dataclass(frozen=True)
class WarmupPlan:
    """The distinct input shapes of a pass's pages and the warm-up runs that cover them.

    shapes         the distinct shapes, in the order their first page comes
    shape_of_page  per page (its index in the pass's page list), the index of its shape
    runs           the page index of each warm-up run, in order: every shape once per round, each
                   round taking the shape's next page (so one shape over N rounds runs its first N
                   pages, as the warm-up did before it covered shapes)
    """

    shapes: list[InputShape]
    shape_of_page: list[int]
    runs: list[int]

    def pages_of(self, shape_index: int) -> list[int]:
        return [page for page, s in enumerate(self.shape_of_page) if s == shape_index]

    def not_warmed_up(self) -> list[int]:
        """The pages whose shape no warm-up run covers (only with a warm-up of 0 rounds)."""
        warmed = {self.shape_of_page[page] for page in self.runs}
        return [page for page, s in enumerate(self.shape_of_page) if s not in warmed]

    def to_json(self) -> dict[str, Any]:
        """What driver-info.json records of the plan."""
        runs_per_shape = [
            sum(1 for page in self.runs if self.shape_of_page[page] == s) for s in range(len(self.shapes))
        ]
        return {
            "input_shapes": [
                {"shape": shape, "pages": self.pages_of(s), "warmup_runs": runs_per_shape[s]}
                for s, shape in enumerate(self.shapes)
            ],
            "warmup_runs": len(self.runs),
            "pages_of_shapes_not_warmed_up": self.not_warmed_up(),
        }


def plan_warmup(page_shapes: Sequence[InputShape], rounds: int) -> WarmupPlan:
    """The warm-up for pages of these shapes: `rounds` runs of every distinct shape (0: none)."""
    keys: dict[str, int] = {}
    shapes: list[InputShape] = []
    shape_of_page = []
    for shape in page_shapes:
        key = shape_key(shape)
        if key not in keys:
            keys[key] = len(shapes)
            shapes.append(shape)
        shape_of_page.append(keys[key])
    pages_of_shape = [[p for p, s in enumerate(shape_of_page) if s == index] for index in range(len(shapes))]
    runs = [pages[r % len(pages)] for r in range(rounds) for pages in pages_of_shape]
    return WarmupPlan(shapes, shape_of_page, runs)
