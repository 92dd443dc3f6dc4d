"""Where the time of a hooked forward goes, per hooked module: the plain forward,
the same with a no-op forward hook on every module nnspec hooks (PyTorch's own
hook machinery), with a hook that copies each output (the floor of a deferred
capture: one clone per module), nnspec's capture with the batched flush
stubbed out (the hooks and per-pass bookkeeping only), and nnspec's whole
capture (hooks + flush + transfer). Interleaved rounds, synchronised.

    python bench/bench_hook_parts.py [--root DIR] [--device cuda] [--repeats 15]
                                         [--models gpt,resnet50] [--gpt-batch 2] [--quick]

``--root``: the tree whose nnspec is measured (a copy with the old files, for a
before/after on the same card). Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ap.add_argument("--device", default="cuda")
ap.add_argument("--repeats", type=int, default=15)
ap.add_argument("--models", default="gpt,resnet50")
ap.add_argument("--gpt-batch", type=int, default=2)
ap.add_argument("--quick", action="store_true", help="small models and inputs (a dry run on the CPU)")
ap.add_argument("--label", default="")
args = ap.parse_args()
sys.path.insert(0, os.path.abspath(args.root))
os.environ["NNSPEC_REDUCE"] = "deferred"

import torch  # noqa: E402

from nnspec.capture import run as capture  # noqa: E402
from nnspec.compiler.compile import compile_plan  # noqa: E402
from nnspec.inputs.batch import Batch  # noqa: E402
from nnspec.numerics import batched  # noqa: E402
from nnspec.spec.load import load_spec  # noqa: E402

device = torch.device(args.device)
if device.type == "cpu":
    torch.set_num_threads(1)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(name):
    torch.manual_seed(0)
    if name == "gpt":
        from nnspec.models import GPT

        if args.quick:
            return (
                "GPT (quick: d 64, 12 layers, 1×8)",
                GPT(vocab=100, d=64, heads=4).eval(),
                torch.randint(0, 100, (1, 8)),
            )
        return (
            f"GPT-2-small-shaped {args.gpt_batch}×128",
            GPT().to(device).eval(),
            torch.randint(0, 50257, (args.gpt_batch, 128)),
        )
    from tests.vision_models import ResNet50ish

    if args.quick:
        return "ResNet-50-shaped (quick: width 4, 1×3×32²)", ResNet50ish(4).eval(), torch.randn(1, 3, 32, 32)
    return "ResNet-50-shaped 8×3×224²", ResNet50ish(64, classes=1000).to(device).eval(), torch.randn(8, 3, 224, 224)


def no_flush(self):
    """Deferred.flush without the reductions: every Pending gets 0, the copies are dropped."""
    for items in self.groups.values():
        for p, _ in items:
            p.value = 0
    self.groups = {}
    if hasattr(self, "_seen"):
        self._seen.clear()


def main():
    real_flush = batched.Deferred.flush
    print(f"root {args.root}{' (' + args.label + ')' if args.label else ''}, device {device}", end="")
    print(f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "", f"torch {torch.__version__}")
    print(
        "\n| model | variant | ms, median (min–max) | ÷ plain, median (min–max) | µs per hooked module over plain, median |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    for name in args.models.split(","):
        try:
            label, model, x = build(name)
        except Exception as e:  # a model that cannot be built is reported, the others go on
            print(f"| {name} | cannot build: {type(e).__name__}: {e} | | | |")
            continue
        measure(label, model, x.to(device), real_flush)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


def measure(label, model, x, real_flush):
    plans = {
        q: compile_plan(load_spec({"nnspec": 1, "views": [{"query": f"activations of * | {q}"}]}), model)
        for q in ("norm", "stats")
    }
    hooked = sorted(plans["stats"].hooked)
    mods = dict(model.named_modules())
    n = len(hooked)
    kept = []

    def plain():
        with torch.no_grad():
            model(x)
        sync()

    def hooked_with(fn):
        def run():
            hs = [mods[p].register_forward_hook(fn, with_kwargs=True) for p in hooked]
            try:
                with torch.no_grad():
                    model(x)
                sync()
            finally:
                for h in hs:
                    h.remove()

        return run

    def clone(m, a, k, out):
        if isinstance(out, torch.Tensor):
            kept.append(out.detach().clone())

    def cap(q, flush):
        def run():
            batched.Deferred.flush = flush
            try:
                capture.run(plans[q], model, Batch.of(x))
                sync()
            finally:
                batched.Deferred.flush = real_flush

        return run

    fns = {
        "plain forward": plain,
        "no-op hooks (PyTorch's own cost)": hooked_with(lambda m, a, k, o: None),
        "hooks that clone (the floor)": hooked_with(clone),
        "nnspec stats, flush stubbed (hooks + bookkeeping)": cap("stats", no_flush),
        "nnspec `| norm` (all)": cap("norm", real_flush),
        "nnspec `| stats` (all)": cap("stats", real_flush),
    }
    times = {k: [] for k in fns}
    for rnd in range(args.repeats + 2):
        for k, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            kept.clear()
            if rnd >= 2:
                times[k].append(dt)
    base = times["plain forward"]
    for k, ts in times.items():
        r = [t / b for t, b in zip(ts, base, strict=True)]
        extra = [(t - b) / n * 1e6 for t, b in zip(ts, base, strict=True)]
        ms = f"{statistics.median(ts) * 1e3:.2f} ({min(ts) * 1e3:.2f}–{max(ts) * 1e3:.2f})"
        print(f"| {label}, {n} hooked | {k} | {ms} | {statistics.median(r):.2f}× ({min(r):.2f}–{max(r):.2f}) | "
              f"{statistics.median(extra):.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
