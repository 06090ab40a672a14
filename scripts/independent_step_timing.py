"""An independent timing of a perfctl run's `generate` calls, and its comparison with perfctl's clean
timing pass (issue 16: on the GPU host the two must agree within 5 %). No perfctl import: it reads the
run's files as plain JSON and uses only torch, transformers, PIL, numpy and the standard library.

    python scripts/independent_step_timing.py --run RUN_DIR --out independent.json [--forward-times]
    python scripts/independent_step_timing.py --run RUN_DIR --compare independent.json [--require-within 5]

Measure: the clean pass's settings (timing/workload.json; the device and dtype its driver resolved, from
timing/driver-info.json); the same DeepSeek-OCR-2 model built with transformers' own API (the seed set,
random weights from the config on the device, or the folder's weights); the same inputs (global view
scaled onto a grey square, local tiles, BOS + image placeholders + the OCR prompt, batches padded on
the left); the same warm-up (every distinct input shape, `warmup` rounds); then every generate call of
the pass, in its order, with its arguments (fixed length, greedy, the static KV cache for static and
compiled, transformers' own compile for compiled). The clock is this script's own: a CUDA event just
before the call and one from a logits processor whenever generate has a new token's logits, with no
synchronization inside the call (perfctl: module hooks, a synchronize at every stage edge, events
between). First token: call start -> prefill's logits; decode step k: token k's logits -> token k+1's,
generate's whole loop iteration as a caller sees it. On the CPU the same points are read with
time.perf_counter_ns, and the output says so. `--forward-times` then runs the calls again with a mark
before and after each top-level forward (not with compiled: no hook in a compiled forward), to tell the
forward from the loop around it: diagnostics.

Compare: per decode mode and batch size, the median decode step (perfctl's CUDA-event steps where it
has them, else its host clock) and median time to first token (perfctl's host clock) of perfctl's
clean-pass records against this script's, their ratio and whether they agree within 5 % (or PCT). The
calls must be the same calls (pages, input shapes, new tokens, decode steps). Exit 0 whatever the
verdict; with `--require-within PCT`, 1 when it is not within PCT. Bad input: exit 2, one line.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PROMPT_TEXT = "\nFree OCR. "
# what stands for the OCR prompt's 11 tokens when the model folder has no tokenizer (the built-ins)
STAND_IN_PROMPT_IDS = [201, 305, 410, 512, 618, 723, 829, 934, 1040, 1145, 1250]
TILE_SIDE = 768  # DeepSeek-OCR-2's local views
GREY = (127, 127, 127)
TOLERANCE_PCT = 5.0
METHOD = (
    "an event before generate and one from a logits processor at every new token's logits, no "
    "synchronization inside the call; first_token_ns: start -> first token; decode_step_ns[k]: token "
    "k -> token k+1 (generate's whole loop iteration)"
)


class BadRun(Exception):
    """Input this script cannot work from: exit 2 with one line."""


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadRun(f"cannot read {path}: {exc}") from None


def clean_pass_settings(run: Path) -> dict[str, Any]:
    """The clean timing pass's workload with the device and dtype its driver resolved."""
    timing = run / "timing"
    if not (timing / "workload.json").is_file():
        raise BadRun(f"{run} has no clean timing pass (timing/workload.json): capture it with --tool all")
    workload = read_json(timing / "workload.json")
    info = read_json(timing / "driver-info.json")
    if not isinstance(workload, dict) or not isinstance(info, dict):
        raise BadRun(f"{timing}: workload.json and driver-info.json must hold JSON objects")
    if workload.get("model", {}).get("model_type") != "deepseek_ocr2":
        raise BadRun(f"{run}: only DeepSeek-OCR-2 runs are timed here, not {workload.get('model')}")
    return workload | {"device": info["device"], "dtype": info["dtype"]}


# -- inputs, as DeepSeek-OCR-2's image processor and prompt make them -------------------------------


def view_tokens(config: Any, side: int) -> int:
    """Decoder positions one side x side view fills: the encoder's queries, 144 for up to 144 SAM tokens."""
    patch = config.vision_config.sam_config.patch_size
    patch = patch if isinstance(patch, int) else patch[0]
    sam_tokens = (side // patch // 4) ** 2
    return 144 if sam_tokens <= 144 else 256


def normalized(image: Any) -> Any:
    import numpy as np
    import torch

    pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    return torch.from_numpy(((pixels - np.float32(0.5)) / np.float32(0.5)).transpose(2, 0, 1).copy())


def global_view(rgb: Any, side: int) -> Any:
    from PIL import Image

    scale = side / max(rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    resized = rgb.resize(size, Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (side, side), GREY)
    canvas.paste(resized, ((side - size[0]) // 2, (side - size[1]) // 2))
    return canvas


def local_views(rgb: Any, tiles: int) -> list[Any]:
    """The page resized onto the rows x columns grid (rows * columns = tiles) nearest its aspect ratio."""
    from PIL import Image

    grids = [(r, tiles // r) for r in range(1, tiles + 1) if tiles % r == 0]
    rows, cols = min(grids, key=lambda g: abs(math.log((g[1] / g[0]) / (rgb.width / rgb.height))))
    page = rgb.resize((cols * TILE_SIDE, rows * TILE_SIDE), Image.Resampling.BICUBIC)
    boxes = [
        (c * TILE_SIDE, r * TILE_SIDE, (c + 1) * TILE_SIDE, (r + 1) * TILE_SIDE)
        for r in range(rows)
        for c in range(cols)
    ]
    return [page.crop(box) for box in boxes]


def prompt_ids(folder: Path, config: Any) -> tuple[list[int], str]:
    """The OCR prompt's token ids and where they came from (the folder's tokenizer, or stand-ins)."""
    if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        return list(tokenizer(PROMPT_TEXT, add_special_tokens=False)["input_ids"]), "tokenizer"
    return [i % int(config.text_config.vocab_size) for i in STAND_IN_PROMPT_IDS], "stand-in ids"


def page_inputs(
    path: Path, config: Any, tiles: int, text_ids: list[int], device: Any, dtype: Any
) -> dict[str, Any]:
    import torch
    from PIL import Image

    sam = config.vision_config.sam_config
    side = sam.image_size if isinstance(sam.image_size, int) else sam.image_size[0]
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    inputs: dict[str, Any] = {
        "pixel_values": normalized(global_view(rgb, side)).unsqueeze(0).to(device, dtype)
    }
    if tiles:
        inputs["pixel_values_local"] = torch.stack([normalized(v) for v in local_views(rgb, tiles)]).to(
            device, dtype
        )
        inputs["num_local_patches"] = [tiles]
    image_tokens = view_tokens(config, side) + 1 + tiles * view_tokens(config, TILE_SIDE)
    bos = config.text_config.bos_token_id
    ids = torch.tensor(
        [[0 if bos is None else bos] + [config.image_token_id] * image_tokens + text_ids], device=device
    )
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), **inputs}


def padding_id(config: Any) -> int:
    for source in (config.text_config, config):
        for name in ("pad_token_id", "eos_token_id"):
            value = getattr(source, name, None)
            value = (value or [None])[0] if isinstance(value, list) else value
            if isinstance(value, int):
                return value
    return 0


def batch_inputs(rows: list[dict[str, Any]], pad: int) -> dict[str, Any]:
    """Rows padded on the left to the longest prompt (masked out), image tensors stacked."""
    import torch

    longest = max(r["input_ids"].shape[1] for r in rows)
    out: dict[str, Any] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if key in ("input_ids", "attention_mask"):
            fill = pad if key == "input_ids" else 0
            out[key] = torch.cat(
                [torch.nn.functional.pad(v, (longest - v.shape[1], 0), value=fill) for v in values]
            )
        elif key == "num_local_patches":
            out[key] = [n for v in values for n in v]
        else:
            out[key] = torch.cat(values)
    return out


def shape_of(value: Any) -> Any:
    """An input's shape as perfctl's records write it (tensors: dims; lists: element by element)."""
    if hasattr(value, "shape"):
        return [int(d) for d in value.shape]
    return [shape_of(v) for v in value] if isinstance(value, list | tuple) else value


# -- the clock --------------------------------------------------------------------------------------


class Marks:
    """Points in time: CUDA events recorded on the current stream (no synchronization) on a GPU, else
    time.perf_counter_ns; the host clock is read at every point on both."""

    def __init__(self, cuda: bool, expected: int) -> None:
        import torch

        self.cuda, self._torch = cuda, torch
        # events made beforehand: making one at a mark would be timed too
        self._spare = [torch.cuda.Event(enable_timing=True) for _ in range(expected)] if cuda else []
        self.events: list[Any] = []
        self.host_ns: list[int] = []

    def mark(self) -> None:
        if self.cuda:
            event = self._spare.pop() if self._spare else self._torch.cuda.Event(enable_timing=True)
            event.record()
            self.events.append(event)
        self.host_ns.append(time.perf_counter_ns())

    def points(self) -> list[Any]:
        """The events on a GPU, else the host clock's readings."""
        return self.events if self.cuda else self.host_ns


def spans_ns(starts: list[Any], ends: list[Any]) -> list[int]:
    """Each start -> its end: host clock readings, or CUDA events (once the device is synchronized)."""
    return [
        b - a if isinstance(a, int) else round(a.elapsed_time(b) * 1e6)
        for a, b in zip(starts, ends, strict=False)
    ]


def intervals_ns(points: list[Any]) -> list[int]:
    return spans_ns(points[:-1], points[1:])


def token_processor(marks: Marks) -> Any:
    """A logits processor that marks each new token's logits: generate calls it in Python once per
    token, between forward calls, outside any compiled region."""
    from transformers import LogitsProcessor

    class TokenLogitsClock(LogitsProcessor):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            marks.mark()
            return scores

    return TokenLogitsClock()


class ForwardClock:
    """`--forward-times`: a mark before and after each top-level forward (hooks on the model)."""

    def __init__(self, model: Any, cuda: bool, calls: int) -> None:
        self.before, self.after = Marks(cuda, calls), Marks(cuda, calls)
        self._handles = [
            model.register_forward_pre_hook(lambda *_: self.before.mark()),
            model.register_forward_hook(lambda *_: self.after.mark()),
        ]

    def remove(self) -> list[int]:
        """Take the hooks off; each forward's time (the device synchronized since the last)."""
        for handle in self._handles:
            handle.remove()
        return spans_ns(self.before.points(), self.after.points())


# -- measure ----------------------------------------------------------------------------------------


def load_model(settings: dict[str, Any], device: Any, dtype: Any) -> Any:
    """The model as the capture built it: the torch seed set, then random weights from the config on
    the device (or the folder's weights), in eval mode; attention as transformers picks by default."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    folder = Path(settings["model"]["folder"])
    torch.manual_seed(int(settings.get("seed", 0)))
    if settings["model"]["random_weights"]:
        with torch.device(device):
            model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(folder), dtype=dtype)
    else:
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype).to(device)
    return model.eval()


def generate_args(decode: str, new_tokens: int) -> dict[str, Any]:
    """Fixed-length greedy generation (EOS cannot end it early), and the decode loop `decode` names."""
    args: dict[str, Any] = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
    if decode in ("static", "compiled"):  # compiled: transformers compiles the decode step by itself
        args["cache_implementation"] = "static"
    if decode == "static":
        args["disable_compile"] = True
    return args


def warmup_order(shapes: list[dict[str, Any]], rounds: int) -> list[int]:
    """The calls the warm-up runs: every distinct input shape `rounds` times, round r taking that
    shape's r-th call (first use of a shape -- lazy kernel loading, compilation -- stays out)."""
    same_shape: dict[str, list[int]] = {}
    for index, shape in enumerate(shapes):
        same_shape.setdefault(json.dumps(shape, sort_keys=True), []).append(index)
    return [calls[r % len(calls)] for r in range(rounds) for calls in same_shape.values()]


def timed_generate(model: Any, inputs: dict[str, Any], args: dict[str, Any], cuda: bool) -> dict[str, Any]:
    """One generate call timed from outside: first token, each decode step, wall time."""
    import torch
    from transformers import LogitsProcessorList

    marks = Marks(cuda, args["max_new_tokens"] + 1)
    if cuda:  # the previous call's work is not this one's
        torch.cuda.synchronize()
    started = time.perf_counter_ns()
    marks.mark()
    output = model.generate(**inputs, **args, logits_processor=LogitsProcessorList([token_processor(marks)]))
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter_ns() - started
    steps, host = intervals_ns(marks.points()), intervals_ns(marks.host_ns)
    return {
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "new_tokens": int(output.shape[1]) - int(inputs["input_ids"].shape[1]),
        "tokens_marked": len(marks.host_ns) - 1,  # logits processor calls: one per new token
        "wall_ns": wall,
        "first_token_ns": steps[0] if steps else None,
        "decode_step_ns": steps[1:],
        "host_first_token_ns": host[0] if host else None,
        "host_decode_step_ns": host[1:],
    }


def measure(run: Path, out: Path, forward_times: bool) -> dict[str, Any]:
    import torch
    import transformers

    settings = clean_pass_settings(run)
    device, dtype = torch.device(settings["device"]), getattr(torch, settings["dtype"])
    cuda = device.type == "cuda"
    if cuda and device.index is not None:  # events and synchronize go to the current device
        torch.cuda.set_device(device)
    decode, batch_size = settings.get("decode", "eager"), int(settings.get("batch_size", 1))
    if forward_times and decode == "compiled":
        raise BadRun("--forward-times hooks the forward, which --decode compiled compiles: not with it")
    model = load_model(settings, device, dtype)
    config, folder = model.config, Path(settings["model"]["folder"])
    pages = [Path(p) for p in settings["pages"]]
    text_ids, prompt_source = prompt_ids(folder, config)
    tiles = int(settings.get("tiles", 0))
    prepared = [page_inputs(p, config, tiles, text_ids, device, dtype) for p in pages]
    groups = [list(range(i, min(i + batch_size, len(pages)))) for i in range(0, len(pages), batch_size)]
    pad = padding_id(config)
    calls = [
        prepared[g[0]] if batch_size == 1 else batch_inputs([prepared[i] for i in g], pad) for g in groups
    ]
    shapes = [{k: shape_of(v) for k, v in sorted(c.items())} for c in calls]
    args = generate_args(decode, int(settings["max_new_tokens"]))

    def described(index: int, timing: dict[str, Any]) -> dict[str, Any]:
        what = {"pages": [pages[i].name for i in groups[index]], "batch_size": len(groups[index])}
        return {"call_index": index, **what, "input_shape": shapes[index], **timing}

    with torch.inference_mode():
        warm = [
            {"call_index": i, **timed_generate(model, calls[i], args, cuda)}
            for i in warmup_order(shapes, int(settings.get("warmup", 0)))
        ]
        measured = [
            {"sequence": repeat * len(calls) + index, "repeat": repeat}
            | described(index, timed_generate(model, calls[index], args, cuda))
            for repeat in range(int(settings.get("repeats", 1)))
            for index in range(len(calls))
        ]
        forwards = []
        for index in range(len(calls) if forward_times else 0):  # after the measured calls: apart
            hooks = ForwardClock(model, cuda, args["max_new_tokens"])
            timing = timed_generate(model, calls[index], args, cuda)
            spans = hooks.remove()
            forwards.append(
                described(index, timing) | {"prefill_forward_ns": spans[0], "decode_forward_ns": spans[1:]}
            )
    result = {
        "tool": "scripts/independent_step_timing.py",
        "run": str(run),
        "clock": "cuda_events" if cuda else "host_perf_counter_ns",
        "method": METHOD + ("" if cuda else "; on the CPU: time.perf_counter_ns readings, not CUDA events"),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cuda_runtime": torch.version.cuda,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if cuda else platform.machine(),
            "hostname": platform.node(),
            "attn_implementation": getattr(config, "_attn_implementation", None),
        },
        "workload": {
            "model": settings["model"]["name"],
            "model_folder": str(folder),
            "decode": decode,
            "batch_size": batch_size,
            "max_new_tokens": args["max_new_tokens"],
            "dtype": settings["dtype"],
            "seed": int(settings.get("seed", 0)),
            "tiles": tiles,
            "warmup": int(settings.get("warmup", 0)),
            "repeats": int(settings.get("repeats", 1)),
            "pages": [p.name for p in pages],
            "prompt_source": prompt_source,
        },
        "warmup_calls": warm,
        "calls": measured,
        **({"forward_calls": forwards} if forward_times else {}),
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


# -- compare ----------------------------------------------------------------------------------------


def perfctl_calls(run: Path) -> list[dict[str, Any]]:
    """The clean pass's measured generate calls (warm-up runs left out), in the order they ran."""
    path = run / "timing" / "pages.jsonl"
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise BadRun(f"cannot read {path}: {exc}") from None
    try:
        records = [json.loads(line) for line in lines if line.strip()]
    except ValueError as exc:
        raise BadRun(f"{path} is not JSON lines: {exc}") from None
    return sorted((r for r in records if not r.get("warmup")), key=lambda r: int(r["sequence"]))


def call_mismatches(theirs: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[str]:
    """Where the two sets of generate calls are not the same calls (pages, shapes, tokens, steps)."""
    if len(theirs) != len(ours):
        return [f"perfctl ran {len(theirs)} measured generate calls, this script {len(ours)}"]
    problems = []
    for t, o in zip(theirs, ours, strict=True):
        pages = [row["page"] for row in t["rows"]] if "rows" in t else [t["page"]]
        for what, perfctl, here in (
            ("pages", pages, o["pages"]),
            ("input shape", t["input_shape"], o["input_shape"]),
            ("new tokens", t["new_tokens"], o["new_tokens"]),
            ("decode steps", t["decode_steps"], len(o["decode_step_ns"])),
        ):
            if perfctl != here:
                problems.append(f"call {t['sequence']}: {what} {perfctl} in perfctl's record, {here} here")
    return problems


def median_ms(values: list[int]) -> float | None:
    return statistics.median(values) / 1e6 if values else None


def agreement(label: str, theirs: list[int], ours: list[int], tolerance: float) -> tuple[str, bool]:
    """A line with both medians, ours / perfctl's, and whether they agree within `tolerance` %."""
    perfctl, here = median_ms(theirs), median_ms(ours)
    if perfctl is None or here is None or perfctl <= 0:
        return f"  {label:<38} perfctl {perfctl}, independent {here}: nothing to compare", False
    ratio = here / perfctl
    within = abs(ratio - 1) * 100 <= tolerance
    verdict = f"{'within' if within else 'NOT within'} {tolerance:g} %"
    return (
        f"  {label:<38} perfctl {perfctl:9.3f} ms  independent {here:9.3f} ms  x{ratio:.4f}  {verdict}",
        within,
    )


Figure = tuple[str, list[int], list[int], bool]  # label, perfctl's values, ours, counts for the verdict


def batch_figures(
    pairs: list[tuple[dict[str, Any], dict[str, Any]]], forwards: list[Any], gpu: bool
) -> list[Figure]:
    """What is compared for the calls of one batch size (pairs: perfctl's record, ours)."""

    def theirs(key: str) -> list[int]:
        return [v for t, _ in pairs for v in t.get(key) or []]

    def ours(key: str) -> list[int]:
        return [v for _, o in pairs for v in (o[key] if isinstance(o[key], list) else [o[key]])]

    step_key = "decode_step_gpu_ns" if gpu else "decode_step_ns"
    figures: list[Figure] = [
        (
            f"decode step p50 ({'CUDA events' if gpu else 'host clock'})",
            theirs(step_key),
            ours("decode_step_ns"),
            True,
        ),
        (
            "first token p50 (perfctl: host clock)",
            [t["first_token_ns"] for t, _ in pairs],
            ours("first_token_ns"),
            True,
        ),
    ]
    # diagnostics, no verdict: the host clocks on a GPU, perfctl's CUDA-event vision + prefill, and
    # the forward alone where --forward-times timed it
    if gpu:
        stages = [t["stage_gpu_ns"]["vision"] + t["stage_gpu_ns"]["prefill"] for t, _ in pairs]
        figures.append(
            ("(host clocks) decode step p50", theirs("decode_step_ns"), ours("host_decode_step_ns"), False)
        )
        figures.append(
            ("(perfctl: vision + prefill events) first token", stages, ours("first_token_ns"), False)
        )
    sizes = {o["batch_size"] for _, o in pairs}
    forward = [v for f in forwards if f["batch_size"] in sizes for v in f["decode_forward_ns"]]
    if forward:
        figures.append(("(independent: forward only) decode step", theirs(step_key), forward, False))
    return figures


def compare(run: Path, independent: Path, tolerance: float) -> bool:
    """Print the comparison; True when every figure agrees within `tolerance` % and the calls match."""
    ours_all = read_json(independent)
    if not isinstance(ours_all, dict) or not isinstance(ours_all.get("calls"), list):
        raise BadRun(f"{independent} is not this script's output (no list of 'calls')")
    theirs, ours = perfctl_calls(run), ours_all["calls"]
    decode = read_json(run / "timing" / "driver-info.json").get("decode", "eager")
    env = ours_all["environment"]
    print(f"run {run}: {len(theirs)} measured generate calls in perfctl's clean pass, {len(ours)} here")
    versions = f"torch {env['torch']}, transformers {env['transformers']}"
    print(f"device {env['device']} ({env['device_name']}), {versions}")
    print(f"this script's clock: {ours_all['clock']}: {ours_all['method']}")
    try:
        mismatches = call_mismatches(theirs, ours)
        for problem in mismatches:
            print(f"  not the same calls: {problem}")
        ok = not mismatches
        for size in sorted({o["batch_size"] for o in ours}):
            pairs = [(t, o) for t, o in zip(theirs, ours, strict=False) if o["batch_size"] == size]
            gpu = all(t.get("decode_step_gpu_ns") for t, _ in pairs)
            steps = sum(len(o["decode_step_ns"]) for _, o in pairs)
            print(f"decode {decode}, batch {size}: {len(pairs)} generate calls, {steps} decode steps")
            for label, perfctl, here, counts in batch_figures(pairs, ours_all.get("forward_calls", []), gpu):
                line, within = agreement(label, perfctl, here, tolerance)
                print(line)
                ok = ok and (within or not counts)
    except (KeyError, TypeError) as exc:
        raise BadRun(f"a record of {run / 'timing' / 'pages.jsonl'} or {independent} lacks {exc}") from None
    print(f"verdict: {'within' if ok else 'NOT within'} {tolerance:g} % of perfctl's clean-pass step times")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a perfctl run folder (--tool all)")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", type=Path, help="measure: write the timings here (JSON)")
    action.add_argument("--compare", type=Path, metavar="INDEPENDENT_JSON", help="compare with this output")
    parser.add_argument("--forward-times", action="store_true", help="measure: also each forward's time")
    parser.add_argument("--require-within", type=float, metavar="PCT", help="compare: else exit 1")
    args = parser.parse_args(argv)
    try:
        if not args.run.is_dir():
            raise BadRun(f"no such run folder: {args.run}")
        if args.out is not None:
            if args.require_within is not None:
                raise BadRun("--require-within goes with --compare")
            result = measure(args.run, args.out, args.forward_times)
            print(f"{len(result['calls'])} generate calls timed ({result['clock']}): {args.out}")
            return 0
        if args.forward_times:
            raise BadRun("--forward-times goes with --out (measuring)")
        tolerance = TOLERANCE_PCT if args.require_within is None else args.require_within
        ok = compare(args.run, args.compare, tolerance)
        return 1 if args.require_within is not None and not ok else 0
    except BadRun as exc:
        print(f"independent_step_timing: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
