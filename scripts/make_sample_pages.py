"""Render perfctl's built-in sample document pages (deterministic: fixed seed, fixed layout).

The PNGs in src/perfctl/workloads/sample_pages/ were made by this script; re-run it only to change
them (pixels may differ slightly across Pillow versions because of font rasterisation).

    python scripts/make_sample_pages.py [--count 12] [--out src/perfctl/workloads/sample_pages]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WORDS = [
    "inference",
    "kernel",
    "latency",
    "throughput",
    "decoder",
    "encoder",
    "vision",
    "token",
    "prefill",
    "decode",
    "memory",
    "bandwidth",
    "matrix",
    "attention",
    "expert",
    "router",
    "tensor",
    "cache",
    "page",
    "layout",
    "table",
    "figure",
    "section",
    "result",
    "model",
    "batch",
    "profile",
    "trace",
    "range",
    "stream",
    "launch",
    "device",
    "host",
    "compute",
    "utilization",
    "precision",
    "gradient",
    "sample",
]
WIDTH, HEIGHT, MARGIN = 1024, 1448, 72


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
    return " ".join(words).capitalize() + "."


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if font.getlength(trial) <= width:
            line = trial
        else:
            lines.append(line)
            line = word
    return [*lines, line] if line else lines


def render_page(index: int) -> Image.Image:
    rng = random.Random(1000 + index)
    page = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(page)
    title = ImageFont.load_default(size=34)
    body = ImageFont.load_default(size=19)
    y = MARGIN
    draw.text((MARGIN, y), f"{index + 1}. {_sentence(rng)[:48]}", font=title, fill="black")
    y += 70
    columns = 2 if index % 3 == 2 else 1
    col_width = (WIDTH - 2 * MARGIN - (columns - 1) * 32) // columns
    for col in range(columns):
        x, cy = MARGIN + col * (col_width + 32), y
        bottom = HEIGHT - MARGIN - 250  # the table starts below this line
        while cy + 26 < bottom:
            for line in _wrap(" ".join(_sentence(rng) for _ in range(rng.randint(2, 5))), body, col_width):
                if cy + 26 >= bottom:
                    break
                draw.text((x, cy), line, font=body, fill=(20, 20, 20))
                cy += 26
            cy += 18
    # a small table at the bottom, as in reports and invoices
    ty = HEIGHT - MARGIN - 220
    cols = [MARGIN, MARGIN + 300, MARGIN + 520, MARGIN + 700, WIDTH - MARGIN]
    for r in range(6):
        draw.line([(MARGIN, ty + r * 40), (WIDTH - MARGIN, ty + r * 40)], fill="black", width=1)
        if r == 5:
            break
        for c in range(4):
            cell = rng.choice(WORDS) if r == 0 or c == 0 else f"{rng.uniform(0, 999):.2f}"
            draw.text((cols[c] + 8, ty + r * 40 + 10), cell, font=body, fill="black")
    for c in cols:
        draw.line([(c, ty), (c, ty + 200)], fill="black", width=1)
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("src/perfctl/workloads/sample_pages"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        render_page(i).convert("L").save(args.out / f"page-{i + 1:02d}.png", optimize=True)
    print(f"wrote {args.count} pages to {args.out}")


if __name__ == "__main__":
    main()
