"""Capture overhead: the forward pass with the hooks a plan needs, against the
plain forward pass, on a GPT-2-small-shaped transformer (4×128 tokens), a
ResNet-18-shaped CNN (8×3×64×64) and a ResNet-50-shaped one (8×3×224×224),
with the reductions in the hooks (``in-hook``) and kept for one batched
reduction after the pass (``deferred``, ``nnspec.numerics.batched``).
Prints a Markdown table of ratios from one run: the median of the repeats'
ratios (each repeat times every variant in turn, so drift hits all alike)
with their min–max, and on CUDA the peak memory of the pass over the plain
forward's.

    python bench/bench_capture.py [--repeats 7] [--device cpu|cuda]
                                  [--models gpt,resnet18,resnet50,hf-gpt2] [--paths in-hook,deferred]
                                  [--gpt-batch 4] [--queries stats,histogram,norm]

``hf-gpt2``: Hugging Face GPT-2 small built from ``GPT2Config()`` with a seed (random
weights; needs ``transformers``, skipped with a note without it), ``--gpt-batch``×128
tokens like the other GPT.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import human_bytes, interleaved_times, sync
from nnspec.capture import run as capture
from nnspec.compiler.compile import compile_plan
from nnspec.compiler.explain import kept_bytes
from nnspec.inputs.batch import Batch
from nnspec.models import GPT, ResNet
from nnspec.numerics import batched
from nnspec.spec.load import load_spec

QUERIES = {
    "stats": "activations of * | stats",
    "histogram": "activations of * | histogram(bins=64)",
    "norm": "activations of * | norm",
}
PATHS = ("in-hook", "deferred")


def models(device, names, gpt_batch: int = 4):
    """The benchmark's models and inputs, by short name, built on ``device``."""
    torch.manual_seed(0)
    out = {}
    if "gpt" in names:
        out[f"GPT-2-small-shaped, {gpt_batch}×128 tokens"] = (
            GPT().to(device),
            torch.randint(0, 50257, (gpt_batch, 128), device=device),
        )
    if "hf-gpt2" in names:
        try:
            from transformers import GPT2Config, GPT2Model
        except ImportError as e:
            print(f"hf-gpt2 skipped: {e}", file=sys.stderr)
        else:
            torch.manual_seed(0)
            out[f"Hugging Face GPT-2 small (GPT2Config()), {gpt_batch}×128 tokens"] = (
                GPT2Model(GPT2Config()).to(device),
                torch.randint(0, 50257, (gpt_batch, 128), device=device),
            )
    if "resnet18" in names:
        cnn = ResNet(widths=(64, 128, 256, 512), blocks=2, classes=1000).to(device)
        out["ResNet-18-shaped CNN, 8×3×64×64"] = (cnn, torch.randn(8, 3, 64, 64, device=device))
    if "resnet50" in names:
        from tests.vision_models import ResNet50ish  # torchvision's ResNet-50, line for line, at full width

        out["ResNet-50-shaped CNN, 8×3×224×224"] = (
            ResNet50ish(width=64, classes=1000).to(device),
            torch.randn(8, 3, 224, 224, device=device),
        )
    return out


def ratios(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """Per repeat, each variant's seconds ÷ the plain forward's of the same repeat
    (variants run in turn, ABC…ABC…); ``plain`` itself in seconds."""
    times = interleaved_times(fns, repeats, warmup)
    out = {k: [a / b for a, b in zip(v, times["plain"], strict=True)] for k, v in times.items()}
    out["plain"] = times["plain"]
    return out


def peak_bytes(fn, device) -> int | None:
    """Peak CUDA memory allocated while ``fn`` runs, above what was allocated before."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    return torch.cuda.max_memory_allocated() - base


def with_path(path: str, fn):
    """``fn`` run with NNSPEC_REDUCE set to ``path`` (restored after)."""

    def call():
        old = os.environ.get(batched.ENV)
        os.environ[batched.ENV] = path
        try:
            return fn()
        finally:
            if old is None:
                os.environ.pop(batched.ENV, None)
            else:
                os.environ[batched.ENV] = old

    return call


def variants(model, x, device, paths, queries=tuple(QUERIES)):
    """The plain forward and every (query, path) capture of ``model`` on ``x``, and their plans."""
    model.eval()

    def plain():
        with torch.no_grad():
            model(x)
        sync(device)

    fns = {"plain": plain}
    plans = {}
    for label, q in QUERIES.items():
        if label not in queries:
            continue
        plans[label] = compile_plan(load_spec({"nnspec": 1, "views": [{"query": q}]}), model)
        for path in paths:
            run = lambda plan=plans[label]: (capture.run(plan, model, Batch.of(x)), sync(device))  # noqa: E731
            fns[(label, path)] = with_path(path, run)
    return fns, plans


def runs(key, fn) -> bool:
    """Whether ``fn`` runs; if not, why, on stderr (the other variants still get measured)."""
    try:
        fn()
    except Exception as e:  # a benchmark reports a failing variant and goes on
        print(f"{key}: {type(e).__name__}: {e}", file=sys.stderr)
        return False
    return True


def spread(v: list) -> str:
    return f"{statistics.median(v):.2f}× ({min(v):.2f}–{max(v):.2f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="gpt,resnet18,resnet50")
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--gpt-batch", type=int, default=4, help="sequences of 128 tokens for the GPT models")
    ap.add_argument("--queries", default=",".join(QUERIES), help="of: " + ", ".join(QUERIES))
    args = ap.parse_args()
    device = torch.device(args.device)
    paths = [p for p in args.paths.split(",") if p]
    print(f"device: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""), end="")
    print(f", torch {torch.__version__}, CUDA {torch.version.cuda}, threads {torch.get_num_threads()}\n")
    print("| model | query | path | hooked modules | time ÷ plain forward, median (min–max) | peak memory ÷ plain's | bytes kept (EXPLAIN) |")  # fmt: skip
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    queries = [q for q in args.queries.split(",") if q]
    for name, (model, x) in models(device, args.models.split(","), args.gpt_batch).items():
        fns, plans = variants(model, x, device, paths, queries)
        fns = {k: fn for k, fn in fns.items() if runs(k, fn)}
        r = ratios(fns, args.repeats)
        plain_peak = peak_bytes(fns["plain"], device)
        for key, fn in fns.items():
            if key == "plain":
                continue
            label, path = key
            plan = plans[label]
            peak = peak_bytes(fn, device)
            mem = f"{peak / plain_peak:.2f}× ({human_bytes(peak)})" if peak is not None and plain_peak else "–"
            kept = human_bytes(sum(kept_bytes(c, None) or 0 for c in plan.captures))
            q = QUERIES[label].replace("|", "\\|")  # a pipe inside a Markdown table cell
            print(f"| {name} | `{q}` | {path} | {len(plan.hooked)} | {spread(r[key])} | {mem} | {kept} |", flush=True)
        secs = r["plain"]
        plain_mem = human_bytes(plain_peak) if plain_peak is not None else "–"
        print(f"| {name} | plain forward | – | – | {statistics.median(secs) * 1e3:.2f} ms ({min(secs) * 1e3:.2f}–{max(secs) * 1e3:.2f}) | {plain_mem} | – |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
