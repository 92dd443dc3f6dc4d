"""``reduce.stats`` and ``reduce.histogram`` for small CPU tensors, in NumPy.

A torch op costs 5-20 µs of dispatch whatever its size; the dozen ops of a
stats vector and a histogram cost ~0.7 ms for a BatchNorm weight of 64
numbers, which is most of what recording every parameter of a ResNet costs.
NumPy does the same work on a few thousand numbers in a tenth of that. The
results are the torch path's: the same fields, the same finite-only moments
(here in float64), and histogram bins computed in the tensor's own precision
with the same float operations, so every value lands in the same bin.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SMALL = 1 << 16  # elements; above this the torch ops' own speed wins


def widen(lo: float, hi: float) -> tuple[float, float]:
    """An automatic histogram range: one value alone gets the bin [v - 0.5, v + 0.5],
    as ``reduce.histogram`` does in torch ops."""
    return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)


def applies(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.numel() <= SMALL and t.dtype in (torch.float32, torch.float64)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().reshape(-1).numpy()


def stats(t: torch.Tensor) -> torch.Tensor:
    """float64 vector in STATS_FIELDS order; moments over the finite values only."""
    with np.errstate(all="ignore"):  # Inf - Inf while testing for non-finite values is expected
        return _stats(t)


def _stats(t: torch.Tensor) -> torch.Tensor:
    a = _array(t).astype(np.float64)
    n_total = a.size
    nan = inf = 0
    f = a
    if not math.isfinite(float(a.sum())):
        isnan, isinf = np.isnan(a), np.isinf(a)
        nan, inf = int(isnan.sum()), int(isinf.sum())
        f = a[~(isnan | isinf)]
    n = f.size
    if n == 0:
        return torch.tensor([n_total] + [math.nan] * 6 + [nan, inf], dtype=torch.float64)
    mean = float(f.sum()) / n
    std = math.sqrt(float(np.square(f - mean).sum()) / (n - 1)) if n > 1 else math.nan
    absmean = float(np.abs(f).sum()) / n
    zero_frac = (n - int(np.count_nonzero(f))) / n
    row = [n_total, mean, std, float(f.min()), float(f.max()), absmean, zero_frac, nan, inf]
    return torch.tensor(row, dtype=torch.float64)


def histogram(
    t: torch.Tensor, bins: int, range_: tuple[float, ...] | None = None, exact: bool = False
) -> dict[str, torch.Tensor]:
    """The dict ``reduce.histogram`` returns, with the same counts (``exact``: bin
    indexes checked against numpy's edges, as ``reduce.numpy_bins`` does)."""
    with np.errstate(all="ignore"):  # huge values may overflow float32 on their way to a bin index
        return _histogram(t, bins, range_, exact)


def _numpy_edges(lo: float, hi: float, bins: int, from_data: bool, kind: type[np.floating]) -> np.ndarray:
    """``numpy.histogram``'s edges: ``linspace`` in the array's precision from its own
    min and max, in float64 then rounded from a given range."""
    edges: np.ndarray = (
        np.linspace(kind(lo), kind(hi), bins + 1, dtype=kind)
        if from_data
        else np.linspace(lo, hi, bins + 1).astype(kind)
    )
    return edges


def _numpy_bins(vals: np.ndarray, idx: np.ndarray, edges: np.ndarray) -> np.ndarray:
    bins = edges.size - 1
    idx = np.clip(idx, 0, bins - 1)
    idx = np.maximum(idx - (vals < edges[idx]), 0)
    out: np.ndarray = idx + ((vals >= edges[idx + 1]) & (idx != bins - 1))
    return out


def _histogram(t: torch.Tensor, bins: int, range_: tuple[float, ...] | None, exact: bool) -> dict[str, torch.Tensor]:
    a = _array(t)
    kind = a.dtype.type
    nan = inf = 0
    vals = a
    mn, mx = (a.min(), a.max()) if a.size else (kind(0), kind(0))
    if not (np.isfinite(mn) and np.isfinite(mx)):  # min and max propagate NaN and show ±Inf
        isnan, isinf = np.isnan(a), np.isinf(a)
        nan, inf = int(isnan.sum()), int(isinf.sum())
        vals = a[~(isnan | isinf)]
        mn, mx = (vals.min(), vals.max()) if vals.size else (kind(0), kind(0))
    if range_ is None:
        lo, hi = widen(float(mn), float(mx))
    else:
        lo, hi = float(range_[0]), float(range_[1])
    scale = bins / (hi - lo)
    pos = (vals - kind(lo)) * kind(scale)  # in the tensor's precision, as the torch path computes it
    if range_ is not None:
        pos = np.clip(pos, 0, bins)
    if exact:
        edges = _numpy_edges(lo, hi, bins, range_ is None, kind)
        counts = np.bincount(_numpy_bins(vals, pos.astype(np.int64), edges), minlength=bins)
    else:
        counts = np.bincount(pos.astype(np.int64), minlength=bins + 1)
        counts = np.concatenate([counts[: bins - 1], [counts[bins - 1 : bins + 1].sum()]])
    outside = 0
    if range_ is not None:  # clamped into the edge bins above: take them back out
        below, above = int((vals < kind(lo)).sum()), int((vals > kind(hi)).sum())
        counts[0] -= below
        counts[-1] -= above
        outside = below + above
    as_int = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    return {
        "counts": torch.from_numpy(counts.astype(np.int64)),
        "lo": torch.tensor(lo, dtype=torch.float64),
        "hi": torch.tensor(hi, dtype=torch.float64),
        "nan": as_int(nan),
        "inf": as_int(inf),
        "outside": as_int(outside),
    }
