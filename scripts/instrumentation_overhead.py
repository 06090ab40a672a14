"""What does perfctl's instrumentation cost a page? The same greedy, fixed-length generate timed with
and without perfctl's stage hooks and NVTX ranges, on one loaded model (issue 8; goal: <= 1 %).

    python scripts/instrumentation_overhead.py --model deepseek-ocr2 --device cuda --pages 10 \
        --rounds 3 --new-tokens 64 --warmup 2 --out overhead.json

Settings, each run on every page of every round, back to back, in an order rotated from page to page
so that no setting always runs first:
  bare   no hooks attached, no NVTX; the GPU synchronized once, at the end of the page;
  nvtx   the nsys pass's instrumentation: perfctl's StageMarker with the real NvtxEmitter (a `page`
         range around the page, stage ranges from the hooks and, per decode step, from its logits
         processor), no synchronization at stage edges;
  clean  the clean timing pass's: the same plus a synchronization at every stage edge and, on CUDA,
         the CUDA-event stage probe (perfctl.driver.__main__.stage_marker builds both markers, as the
         driver does).
Hooks are attached before an instrumented page and removed after it, so `bare` runs with none (each
row records the perfctl hooks on the model and the stage ranges opened). A page's time is
perf_counter_ns around everything perfctl adds to it and the generate with the final synchronize;
the probe's CUDA events are read after that, as the driver reads them. The NVML telemetry thread of
the clean pass is not part of `clean` (scripts/timing_noise_probe.py's `no-nvml` setting measures it).

Overhead of a setting: the median over (round, page) pairs of setting / bare - 1, with a seeded
bootstrap 95 % interval, and the ratio of the median page times (perfctl.analysis.instrumentation).
Prints a table; --out writes every row, the summary, host, GPU and versions as JSON. Bad input: one
line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from perfctl.analysis.instrumentation import BASELINE, overhead_summary, rotated
from perfctl.errors import BadInput, PerfctlError
from perfctl.files import utc_now, write_json_atomic
from perfctl.hardware.host import host_identity, package_versions
from perfctl.stages import PAGE
from perfctl.workloads.models import ModelSpec, resolve_model, takes_page_images
from perfctl.workloads.pages import list_pages
from perfctl.workloads.shapes import input_shape, plan_warmup

SETTINGS = (BASELINE, "nvtx", "clean")
SETTING_MEANS = {
    BASELINE: "no hooks, no NVTX; one synchronize at the end of the page",
    "nvtx": "StageMarker + NvtxEmitter as in the nsys pass: page and stage ranges, no sync at stage edges",
    "clean": "as the clean timing pass: NVTX ranges, sync at every stage edge, CUDA-event probe on CUDA",
}
DEFAULT_PAGES = 10


class CountingEmitter:
    """Hands every range to the real emitter and counts the pushes (a check that `bare` opened none)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.pushes = 0

    def push(self, name: str, payload: int | None = None) -> None:
        self.pushes += 1
        self.inner.push(name, payload)

    def pop(self) -> None:
        self.inner.pop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="deepseek-ocr2", help="a built-in model name or a model folder")
    ap.add_argument("--random-weights", action="store_true", help="a folder's config, random weights")
    ap.add_argument("--device", default="auto", help="auto (cuda when torch sees a GPU), cuda, cuda:N or cpu")
    ap.add_argument("--dtype", default="auto", help="auto (bfloat16 on CUDA, else float32)")
    ap.add_argument(
        "--pages", type=int, default=None, help=f"sample pages per round (default {DEFAULT_PAGES} or all)"
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="warm-up runs of each distinct input shape (every setting), not counted",
    )
    ap.add_argument("--out", type=Path, default=None, help="write rows and summary as JSON here")
    return ap.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    for flag, value, least in (
        ("--pages", args.pages, 1),
        ("--rounds", args.rounds, 1),
        ("--new-tokens", args.new_tokens, 1),
        ("--warmup", args.warmup, 0),
    ):
        if value is not None and value < least:
            raise BadInput(f"{flag} must be at least {least}, got {value}")
    if args.out is not None and not args.out.parent.is_dir():
        raise BadInput(f"--out: folder {args.out.parent} does not exist")


def choose_pages(text: bool, wanted: int | None) -> list[Path]:
    available = list_pages(None, None, text=text)
    if wanted is None:
        return available[:DEFAULT_PAGES]
    if wanted > len(available):
        what = "sample prompts" if text else "sample pages"
        raise BadInput(f"--pages {wanted}: there are only {len(available)} built-in {what}")
    return available[:wanted]


def perfctl_hook_count(model: Any) -> int:
    """Forward hooks and pre-hooks on all of the model's modules (torch keeps them in these dicts)."""
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def run(args: argparse.Namespace, spec: ModelSpec, paths: list[Path]) -> dict[str, Any]:
    import torch

    from perfctl.driver.__main__ import device_identity, resolve_device_dtype, stage_marker
    from perfctl.driver.markers import NvtxEmitter
    from perfctl.driver.nvtx_compat import installed_nvtx_version, nvtx_problem
    from perfctl.workloads.loader import load_workload

    problem = nvtx_problem(installed_nvtx_version(), None)
    if problem:
        raise BadInput(problem)
    device, dtype = resolve_device_dtype(args.device, args.dtype)
    started_at = utc_now()
    print(f"loading {spec.name} on {device} {dtype} ...", file=sys.stderr, flush=True)
    work = load_workload(spec, device, dtype, 0)
    prepared = [work.prepare(p) for p in paths]
    decoder, vision = work.stage_modules()

    def synchronize() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    nvtx = NvtxEmitter()
    counting = CountingEmitter(nvtx)
    markers = {s: stage_marker(counting, device, sync_stage_edges=(s == "clean")) for s in SETTINGS[1:]}
    hooks_before = perfctl_hook_count(work.model)
    gen = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
    sequence = 0

    def timed_page(setting: str, index: int) -> tuple[dict[str, Any], Any]:
        nonlocal sequence
        page = prepared[index]
        gc.collect()  # the previous page's garbage is not collected inside this one's time
        counting.pushes = 0
        record: dict[str, Any] = {}
        if setting == BASELINE:
            hooks = perfctl_hook_count(work.model) - hooks_before
            start = time.perf_counter_ns()
            out = work.model.generate(**page.inputs, **gen)
            synchronize()
            wall = time.perf_counter_ns() - start
        else:
            marker, probe = markers[setting]
            marker.attach(work.model, decoder, vision, new_tokens=args.new_tokens)
            start = time.perf_counter_ns()
            nvtx.push(PAGE, sequence)
            marker.begin_page()
            # the hooks on the model during the page (prefill's go on at the page's start); counting
            # them is no part of the instrumentation: its time is left out of the page's
            counted = time.perf_counter_ns()
            hooks = perfctl_hook_count(work.model) - hooks_before
            start += time.perf_counter_ns() - counted
            out = work.model.generate(**page.inputs, **gen, logits_processor=marker.logits_processors())
            synchronize()
            times = marker.end_page()
            nvtx.pop()
            wall = time.perf_counter_ns() - start
            marker.detach()
            if probe is not None:
                record["stage_gpu_ns"] = probe.collect().gpu_ns
            record |= {
                "stage_wall_ns": times.wall_ns,
                "decode_steps": times.decode_steps,
                "hooks_ns": times.hooks_ns,
            }
            sequence += 1
        record = {
            "setting": setting,
            "page": paths[index].name,
            "page_index": index,
            "wall_ns": wall,
            "perfctl_hooks": hooks,
            "stage_ranges": counting.pushes,
            "new_tokens": int(out.shape[1]) - page.prompt_tokens,
            **record,
        }
        return record, out

    def one_turn(turn: int, index: int) -> tuple[list[dict[str, Any]], dict[str, bool]]:
        """Every setting on one page, in this turn's order; and whether each instrumented setting
        generated the same tokens as `bare` (the hooks only observe, so it must)."""
        records, outputs = [], {}
        for position, setting in enumerate(rotated(SETTINGS, turn)):
            record, outputs[setting] = timed_page(setting, index)
            # which tokens came out: greedy decoding of random bf16 weights sits on near-ties, so a GPU
            # run need not repeat its tokens (and the MoE experts they route to) even without perfctl
            digest = hashlib.sha256(outputs[setting].cpu().numpy().tobytes()).hexdigest()[:16]
            records.append(record | {"position": position, "tokens_sha256": digest})
        same = {s: bool(torch.equal(outputs[s], outputs[BASELINE])) for s in SETTINGS[1:]}
        return records, same

    warmup_rows: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    same_tokens = dict.fromkeys(SETTINGS[1:], True)
    with torch.inference_mode():
        # every distinct input shape, --warmup times each, as the driver's warm-up (workloads.shapes)
        plan = plan_warmup([input_shape(page.inputs) for page in prepared], args.warmup)
        for w, index in enumerate(plan.runs):
            records, _ = one_turn(w, index)
            warmup_rows += [r | {"warmup": w} for r in records]
        for rnd in range(args.rounds):
            for index in range(len(prepared)):
                records, same = one_turn(rnd + index, index)
                rows += [r | {"round": rnd} for r in records]
                same_tokens = {s: same_tokens[s] and same[s] for s in same_tokens}
                line = ", ".join(f"{r['setting']} {r['wall_ns'] / 1e6:.1f} ms" for r in records)
                print(f"round {rnd} page {index}: {line}", file=sys.stderr, flush=True)
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "started_at": started_at,
        "finished_at": utc_now(),
        "settings": SETTING_MEANS,
        "model": spec.to_json(),
        "device": device,
        "dtype": dtype,
        "pages": [p.name for p in paths],
        "rounds": args.rounds,
        "new_tokens": args.new_tokens,
        "warmup": args.warmup,
        "prompt_tokens": [p.prompt_tokens for p in prepared],
        "parameters": sum(p.numel() for p in work.model.parameters()),
        "same_tokens_as_bare": same_tokens,
        "host": host_identity(),
        "device_identity": device_identity(device),
        "versions": {"torch": torch.__version__, "python": platform.python_version()}
        | package_versions(["transformers", "nvtx"]),
        "rows": rows,
        "warmup_rows": warmup_rows,
        "summary": overhead_summary(rows),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.2f} %"


def table(result: dict[str, Any]) -> str:
    summary = result["summary"]
    ident = result["device_identity"]
    where = ident.get("gpu_name") or ident.get("cpu") or result["device"]
    lines = [
        f"instrumentation overhead: {result['model']['name']} on {result['device']} ({where}), "
        f"{result['dtype']}, {len(result['pages'])} pages x {result['rounds']} rounds, "
        f"{result['new_tokens']} new tokens, {result['warmup']} warm-up runs per input shape",
        f"{'setting':8} {'pages':>5} {'median page':>12} {'overhead (paired)':>18} "
        f"{'95% CI':>22} {'ratio of medians':>17}  goal <= {summary['goal']:.0%}",
    ]
    for name, s in summary["settings"].items():
        median = f"{s['median_page_ns'] / 1e6:.2f} ms"
        if name == summary["baseline"]:
            lines.append(f"{name:8} {s['pages']:>5} {median:>12} {'(baseline)':>18}")
            continue
        ci = s["overhead_ci"]
        ci_text = "-" if ci is None else f"[{_pct(ci[0])}, {_pct(ci[1])}]"
        lines.append(
            f"{name:8} {s['pages']:>5} {median:>12} {_pct(s['overhead']):>18} {ci_text:>22} "
            f"{s['ratio_of_medians']:>17.4f}  {s['verdict']}"
        )
    same = result["same_tokens_as_bare"]
    lines.append("same tokens as bare: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()))
    inside: dict[str, list[float]] = {name: [] for name in summary["settings"]}
    for row in result["rows"]:
        if "hooks_ns" in row:
            inside[row["setting"]].append(row["hooks_ns"] / row["wall_ns"])
    lines.append(
        "time inside perfctl's hooks, median share of the page (measured in the hooks; with `clean` it "
        "includes the waits for the GPU at stage edges): "
        + ", ".join(f"{n} {_pct(statistics.median(v))}" for n, v in inside.items() if v)
    )
    outputs: dict[tuple[str, int], set[str]] = {}
    for row in result["rows"]:
        outputs.setdefault((row["setting"], row["page_index"]), set()).add(row.get("tokens_sha256", ""))
    lines.append(
        "distinct outputs of one page over the rounds, per setting (1 = repeatable): "
        + ", ".join(
            f"{name} {max(len(v) for (s, _), v in outputs.items() if s == name)}"
            for name in summary["settings"]
        )
    )
    effect = summary["position_effect"]
    if effect:
        lines.append(
            "page time / its page's mean, by position run: "
            + ", ".join(f"{int(k) + 1}. {v:.4f}" for k, v in effect.items())
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_args(args)
        # the model and pages are checked before torch loads
        spec = resolve_model(args.model, args.random_weights)
        paths = choose_pages(not takes_page_images(spec.model_type), args.pages)
        result = run(args, spec, paths)
        if args.out is not None:
            write_json_atomic(args.out, result)
    except PerfctlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(table(result))
    if args.out is not None:
        print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
