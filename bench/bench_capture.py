"""Capture overhead: the forward pass with the hooks a plan needs, against the
plain forward pass, on a ResNet-18-shaped CNN (8×3×64×64) and a GPT-2-small-shaped
transformer (4×128 tokens). Prints a Markdown table of ratios from one run.

    python bench/bench_capture.py [--repeats 5] [--device cpu|cuda]
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import bench_args, human_bytes, interleaved, sync
from nnspec.capture import run as capture
from nnspec.compiler.compile import compile_plan
from nnspec.compiler.explain import kept_bytes
from nnspec.inputs.batch import Batch
from nnspec.models import GPT, ResNet
from nnspec.spec.load import load_spec

QUERIES = {
    "stats": "activations of * | stats",
    "histogram": "activations of * | histogram(bins=50)",
}


def models(device):
    torch.manual_seed(0)
    cnn = ResNet(widths=(64, 128, 256, 512), blocks=2, classes=1000).to(device)
    x_cnn = torch.randn(8, 3, 64, 64, device=device)
    gpt = GPT().to(device)
    x_gpt = torch.randint(0, 50257, (4, 128), device=device)
    return {"ResNet-18-shaped CNN, 8×3×64×64": (cnn, x_cnn), "GPT-2-small-shaped, 4×128 tokens": (gpt, x_gpt)}


def main():
    args, device = bench_args()
    rows = []
    for name, (model, x) in models(device).items():
        model.eval()
        plans = {}
        for label, q in QUERIES.items():
            spec = load_spec({"nnspec": 1, "views": [{"query": q}]})
            plans[label] = compile_plan(spec, model)

        def plain(model=model, x=x):
            with torch.no_grad():
                model(x)
            sync(device)

        fns = {"plain": plain}
        for label, plan in plans.items():
            fns[label] = lambda plan=plan, model=model, x=x: (capture.run(plan, model, Batch.of(x)), sync(device))
        t = interleaved(fns, repeats=args.repeats)
        n_hooks = len(plans["stats"].hooked)
        for label, plan in plans.items():
            kept = sum(kept_bytes(c, None) or 0 for c in plan.captures)
            rows.append((name, QUERIES[label], n_hooks, t[label] / t["plain"], human_bytes(kept)))
        rows.append((name, "(plain forward, seconds)", 0, t["plain"], ""))
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| model | query | hooked modules | time ÷ plain forward | bytes kept |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, q, hooks, ratio, kept in rows:
        if q.startswith("("):
            print(f"| {name} | plain forward | – | {ratio:.3f} s | – |")
        else:
            q = q.replace("|", "\\|")  # a pipe inside a Markdown table cell
            print(f"| {name} | `{q}` | {hooks} | {ratio:.2f}× | {kept} |")


if __name__ == "__main__":
    main()
