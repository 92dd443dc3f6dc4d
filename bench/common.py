"""Timing helpers: interleaved runs, medians, ratios from one process."""

from __future__ import annotations

import statistics
import time


def interleaved(fns: dict, repeats: int = 5, warmup: int = 1) -> dict:
    """Median seconds of each callable, run in turn (ABAB…) so drift hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def bench_args():
    """``--repeats N --device cpu|cuda``, as every benchmark here takes them; returns (args, device)."""
    import argparse

    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    return args, torch.device(args.device)


def sync(device):
    """Wait for queued GPU work, so that a timing covers it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
