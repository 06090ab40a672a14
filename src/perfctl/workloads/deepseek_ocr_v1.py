"""DeepSeek-OCR v1 as a driver workload: what it needs, said plainly, since it cannot run here.

v1 exists only as remote code (`trust_remote_code`: modeling_deepseekocr.py and the files it imports,
shipped in the model folder beside the weights) written for transformers 4.46.x; that code does not
import on transformers 5, which perfctl needs (DeepSeek-OCR-2 is native there). So a capture of v1
would have to run its driver in a second Python environment with transformers 4.46.x and the
folder's remote code. perfctl does not do that yet: `--model` with a v1 folder (or the built-in
`deepseek-ocr` config, which has no remote code) is refused with this module's one-line reason,
which names the transformers version found and the remote-code files present or missing. The FLOP
model (`perfctl flops deepseek-ocr --mode ...`) needs none of it.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

REMOTE_CODE_TRANSFORMERS = "4.46"


def remote_code_files(config: dict[str, Any]) -> list[str]:
    """The Python files the config's `auto_map` entry points live in (e.g. modeling_deepseekocr.py)."""
    auto_map = config.get("auto_map") or {}
    modules = {
        str(ref).split("--")[-1].rsplit(".", 1)[0] for ref in auto_map.values() if isinstance(ref, str)
    }
    return sorted(f"{m}.py" for m in modules)


def why_v1_cannot_run(name: str, folder: Path, config: dict[str, Any]) -> str:
    """One line: why this environment cannot run DeepSeek-OCR v1 from `folder`, and what it needs."""
    try:
        found = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        found = "none"
    files = remote_code_files(config)
    present = [f for f in files if (folder / f).is_file()]
    missing = [f for f in files if f not in present]
    if not files:
        code = f"{folder} has no remote code (its config.json has no auto_map naming modeling_deepseekocr.py)"
    elif missing:
        code = f"{folder} lacks {', '.join(missing)} of its remote code"
    else:
        code = f"{folder} has its remote code ({', '.join(present)})"
    return (
        f"DeepSeek-OCR v1 runs only through its remote code under transformers {REMOTE_CODE_TRANSFORMERS}.x "
        f"(it does not import on transformers 5); this environment has transformers {found}, which "
        f"perfctl needs (>= 5.17), and {code}; perfctl has no v1 driver workload yet (it would need a second "
        f"environment with transformers 4.46.x); its FLOPs: perfctl flops {name} --mode base"
    )
