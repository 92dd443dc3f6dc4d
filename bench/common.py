"""Timing helpers: interleaved runs, medians, ratios from one process."""

from __future__ import annotations

import statistics
import time


def interleaved_times(fns: dict, repeats: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Each callable's seconds per round, the callables run in turn (ABAB…) so that drift
    and load hit all alike; ``warmup`` untimed rounds first."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def interleaved(fns: dict, repeats: int = 5, warmup: int = 1) -> dict:
    """Median seconds of each callable, run in turn (ABAB…) so drift hits all alike."""
    return {k: statistics.median(v) for k, v in interleaved_times(fns, repeats, warmup).items()}


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


def interleaved_ratios(fns: dict, base: str, repeats: int = 5, warmup: int = 1) -> dict:
    """Each callable's time ÷ ``base``'s, per round of an interleaved run (ABAB…: a round's
    ratio compares runs seconds apart, so drift and load hit both alike): ``{name: (median,
    min, max)}`` of the ratios, and ``{base: (median, min, max)}`` of its seconds."""
    times = interleaved_times(fns, repeats, warmup)
    out = {base: spread(times[base])}
    for k, ts in times.items():
        if k != base:
            out[k] = spread([t / b for t, b in zip(ts, times[base])])
    return out


def spread(values: list) -> tuple:
    """(median, min, max) of ``values``."""
    return statistics.median(values), min(values), max(values)


def fmt_spread(s: tuple, unit: str = "×", digits: int = 2) -> str:
    """``min–max`` (median in brackets) of a ``spread``, e.g. ``1.08–1.12× (1.10)``."""
    med, lo, hi = s
    return f"{lo:.{digits}f}–{hi:.{digits}f}{unit} ({med:.{digits}f})"


def load_average() -> float:
    """The 1-minute load average (nan where the system has none)."""
    import os

    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def _busy_loop() -> None:
    while True:
        pass


class busy_beside:
    """``with busy_beside():`` a busy-loop process runs beside the block (a machine under load)."""

    def __enter__(self):
        import multiprocessing as mp

        self.proc = mp.get_context("spawn").Process(target=_busy_loop, daemon=True)
        self.proc.start()
        time.sleep(0.5)  # let it start spinning
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.join()
        return False
