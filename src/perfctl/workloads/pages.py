"""A capture's inputs, checked before any run: page images (the built-in sample pages or a user's
folder) for the document models, text prompts (the built-in sample prompts or a folder of .txt files)
for causal LMs."""

from __future__ import annotations

from pathlib import Path

from perfctl.errors import BadInput
from perfctl.resources import SAMPLE_PAGES_DIR, SAMPLE_PROMPTS_DIR

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
PROMPT_SUFFIXES = {".txt"}


def list_pages(folder: Path | None, count: int | None = None, text: bool = False) -> list[Path]:
    """The page images of `folder` (default: the built-in sample pages), sorted by name; with `text`,
    the text prompts (.txt) of `folder` (default: the built-in sample prompts).

    `count` takes the first N; asking for more pages than the folder holds is an error rather than a
    silent repeat, so that a run's page list is always what the user asked for.
    """
    default, suffixes = (SAMPLE_PROMPTS_DIR, PROMPT_SUFFIXES) if text else (SAMPLE_PAGES_DIR, IMAGE_SUFFIXES)
    folder = default if folder is None else folder
    if not folder.exists():
        raise BadInput(f"pages folder does not exist: {folder}")
    if not folder.is_dir():
        raise BadInput(f"pages path is not a folder: {folder}")
    pages = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not pages:
        what = "text prompts" if text else "page images"
        raise BadInput(f"no {what} ({', '.join(sorted(suffixes))}) in {folder}")
    if count is not None:
        if count < 1:
            raise BadInput(f"--num-pages must be at least 1, got {count}")
        if count > len(pages):
            raise BadInput(f"--num-pages {count} asks for more pages than {folder} holds ({len(pages)})")
        pages = pages[:count]
    return pages
