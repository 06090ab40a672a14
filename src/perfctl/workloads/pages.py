"""A capture's inputs, checked before any run: page images (the built-in sample pages or a user's
folder) for the document models, text prompts (the built-in sample prompts or a folder of .txt files)
for causal LMs."""

from __future__ import annotations

import warnings
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
    for page in pages:
        if text:
            check_page_text(page)
        else:
            check_page_image(page)
    return pages


def check_page_text(path: Path) -> None:
    """A text prompt must be UTF-8 text with something in it (the driver tokenizes it)."""
    try:
        prompt = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"prompt {path} is not readable UTF-8 text ({exc})") from None
    if not prompt.strip():
        raise BadInput(f"prompt {path} is empty")


def check_page_image(path: Path) -> None:
    """Decode a page once before any run, so that a page that is not an image, is damaged or truncated,
    or is too large to decode safely is refused up front (BadInput) instead of crashing the driver.

    Too large: over Pillow's decompression-bomb threshold (89.5 Mpx, about 9,459² pixels; a 600 dpi
    A3 scan is 70 Mpx), which Pillow only warns about up to twice that: here it is an error."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInput(f"page {path} is too large to decode safely ({exc}); scale it down first") from None
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's ways of saying "not a (whole) image"
        raise BadInput(f"page {path} is not a readable image ({exc})") from None
