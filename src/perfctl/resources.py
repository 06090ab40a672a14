"""Where perfctl's bundled files live: built-in model configs, sample pages, report templates and the
shipped runs.

In a source checkout (editable install) they are the top-level `models/`, `templates/` and `shipped/`
folders; in an installed wheel they travel as `perfctl/_bundled/...` (see pyproject's force-include).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT_ROOT = _PACKAGE_DIR.parent.parent

DEFAULT_MODEL = "deepseek-ocr2-tiny"
SAMPLE_PAGES_DIR = _PACKAGE_DIR / "workloads" / "sample_pages"
SAMPLE_PROMPTS_DIR = _PACKAGE_DIR / "workloads" / "sample_prompts"


def _bundled_dir(name: str) -> Path:
    for candidate in (_PACKAGE_DIR / "_bundled" / name, _CHECKOUT_ROOT / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"perfctl's bundled '{name}' folder is missing (broken install?)")


def models_dir() -> Path:
    return _bundled_dir("models")


def templates_dir() -> Path:
    return _bundled_dir("templates")


def shipped_dir() -> Path:
    """The run folders that come with perfctl (perfctl.shipped)."""
    return _bundled_dir("shipped")


def builtin_model_names() -> list[str]:
    return sorted(p.name for p in models_dir().iterdir() if (p / "config.json").is_file())


def builtin_model_dir(name: str) -> Path | None:
    """The folder of a built-in model config, or None when `name` is not a built-in name.

    Only plain names count: a path (even one that happens to hold a config.json) is never built-in.
    """
    return models_dir() / name if name in builtin_model_names() else None
