"""nnspec's one-read CPU kernels (``numerics/native.py``) against the torch passes they
replace (``NNSPEC_NATIVE=0``), interleaved in one process: ns per element of a stats
vector and a 64-bin histogram at several sizes, and ``activations of * | stats`` /
``| histogram(bins=64)`` capture ÷ plain forward on a ResNet-50-shaped network
(tests/vision_models.py, 8×3×224², or 2×3×224² with --quick), on one torch thread
and on two.

    python bench/bench_native.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nnspec.capture import run as capture  # noqa: E402
from nnspec.compiler.compile import compile_plan  # noqa: E402
from nnspec.inputs.batch import Batch  # noqa: E402
from nnspec.numerics import native, reduce  # noqa: E402
from nnspec.spec.load import load_spec  # noqa: E402


def use_native(on: bool) -> None:
    os.environ["NNSPEC_NATIVE"] = "1" if on else "0"
    native.library.cache_clear()


def timed(fn, repeats: int) -> dict[str, list[float]]:
    """fn(native: bool) timed in turn, ABAB…: {'torch': [...], 'native': [...]}."""
    out: dict[str, list[float]] = {"torch": [], "native": []}
    for on in (False, True):
        use_native(on)
        fn()
    for _ in range(repeats):
        for name, on in (("torch", False), ("native", True)):
            use_native(on)
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    use_native(True)
    return out


def per_element(repeats: int) -> None:
    print("| reduction | elements | torch passes, ns/element | nnspec kernel | ratio (min–max) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    g = torch.Generator().manual_seed(0)
    for n in (131_072, 524_288, 1_572_864):
        t = torch.randn(n, generator=g)
        scratch = reduce.Scratch()  # work buffers reused, as capture and the Recorder reuse them
        for name, fn in (
            ("stats", lambda t=t, s=scratch: reduce.stats(t, s)),
            ("histogram(64)", lambda t=t, s=scratch: reduce.histogram(t, 64, None, s)),
        ):

            def many(fn=fn):
                for _ in range(20):
                    fn()

            got = timed(many, repeats)
            a, b = (statistics.median(got[k]) / 20 / n * 1e9 for k in ("torch", "native"))
            ratios = [y / x for x, y in zip(got["torch"], got["native"])]
            print(f"| {name} | {n:,} | {a:.3f} | {b:.3f} | {b / a:.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) |")


def capture_ratio(repeats: int, batch: int) -> None:
    from tests.vision_models import ResNet50ish

    torch.manual_seed(0)
    model = ResNet50ish(width=64, classes=1000).eval()  # torchvision resnet50 widths
    x = torch.randn(batch, 3, 224, 224)
    print(f"\nResNet-50-shaped, {batch}×3×224², capture ÷ plain forward (median of {repeats}, interleaved)\n")
    print("| query | threads | torch passes | nnspec kernel |\n| --- | ---: | ---: | ---: |")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for query in ("activations of * | stats", "activations of * | histogram(bins=64)"):
            plan = compile_plan(load_spec({"nnspec": 1, "views": [{"query": query}]}), model)

            def plain():
                with torch.no_grad():
                    model(x)

            def hooked(plan=plan):
                capture.run(plan, model, Batch.of(x))

            times: dict[str, list[float]] = {"plain": [], "torch": [], "native": []}
            for _ in range(repeats + 1):
                for name, fn, on in (("plain", plain, True), ("torch", hooked, False), ("native", hooked, True)):
                    use_native(on)
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
            base = statistics.median(times["plain"][1:])
            cells = []
            for k in ("torch", "native"):
                r = [v / p for v, p in zip(times[k][1:], times["plain"][1:])]
                cells.append(f"{statistics.median(times[k][1:]) / base:.2f}× ({min(r):.2f}–{max(r):.2f})")
            print(f"| `{query}` | {threads} | {cells[0]} | {cells[1]} |")
    use_native(True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if native.library() is None:
        sys.exit("no C compiler here: nothing to compare (the torch passes run)")
    print(f"torch {torch.__version__}, load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    torch.set_num_threads(1)
    per_element(args.repeats)
    capture_ratio(3 if args.quick else args.repeats, 2 if args.quick else 8)


if __name__ == "__main__":
    main()
