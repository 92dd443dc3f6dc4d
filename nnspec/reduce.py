"""Reductions that run where the tensor lives, inside hooks or after a pass.

Each returns small tensors on the tensor's device and never calls ``.item()``
on CUDA, so a hook adds no host synchronisation. On the CPU the costly
counting ops (NaN, Inf) run only when a cheap sum says they are needed.

STATS_FIELDS is the order of the vector ``stats`` returns.
"""

from __future__ import annotations

import math

import torch

STATS_FIELDS = (
    "numel",
    "mean",
    "std",
    "min",
    "max",
    "absmean",
    "zero_frac",
    "nan",
    "inf",
)
SCALAR_OPS = ("mean", "max", "min", "std", "norm")


def _float(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    return t if t.is_floating_point() else t.float()


def _finite_stats(t: torch.Tensor, n_total: int, nan, inf) -> torch.Tensor:
    """Stats of an all-finite tensor ``t`` (n_total counts NaN/Inf too)."""
    n = t.numel()
    if n == 0:
        nanv = torch.tensor(math.nan, dtype=torch.float64, device=t.device)
        z = torch.zeros((), dtype=torch.float64, device=t.device)
        return torch.stack([z + n_total, nanv, nanv, nanv, nanv, nanv, nanv, nan, inf])
    mean = t.sum(dtype=torch.float64) / n
    mn, mx = torch.aminmax(t)
    # two-pass std: stable where E[x²]-E[x]² would cancel
    sq = torch.linalg.vector_norm(t - mean.to(t.dtype), dtype=torch.float64)
    std = sq / math.sqrt(n - 1) if n > 1 else sq * math.nan
    absmean = torch.linalg.vector_norm(t, 1, dtype=torch.float64) / n
    # exact zero count: sign() is ±1 for any non-zero finite value, subnormals included
    nonzero = t.sign().abs().sum(dtype=torch.float64)
    zero_frac = (n - nonzero) / n
    parts = [
        mean.new_tensor(float(n_total)),
        mean,
        std,
        mn.double(),
        mx.double(),
        absmean,
        zero_frac,
    ]
    return torch.stack(parts + [nan.double(), inf.double()])


def stats(t: torch.Tensor) -> torch.Tensor:
    """float64 vector in STATS_FIELDS order; moments over the finite values only."""
    t = _float(t)
    zero = torch.zeros((), dtype=torch.float64, device=t.device)
    if t.device.type == "cpu" and bool(torch.isfinite(t.sum())):
        return _finite_stats(t, t.numel(), zero, zero)
    # a non-finite sum: count exactly (on CUDA always, to avoid a sync)
    nan = torch.isnan(t).sum().double()
    inf = torch.isinf(t).sum().double()
    finite = t[torch.isfinite(t)] if t.device.type == "cpu" else torch.where(torch.isfinite(t), t, 0.0)
    if t.device.type != "cpu":  # keep shapes static; zeros stand in for non-finite values
        return _masked_stats(t, nan, inf)
    return _finite_stats(finite, t.numel(), nan, inf)


def _masked_stats(t: torch.Tensor, nan, inf) -> torch.Tensor:
    ok = torch.isfinite(t)
    n = ok.sum().double()
    f = torch.where(ok, t, 0.0)
    mean = f.sum(dtype=torch.float64) / n
    big = torch.finfo(t.dtype).max
    mn = torch.where(ok, t, big).amin().double()
    mx = torch.where(ok, t, -big).amax().double()
    dev = torch.where(ok, t - mean.to(t.dtype), 0.0)
    std = torch.linalg.vector_norm(dev, dtype=torch.float64) / torch.sqrt(n - 1)
    absmean = torch.linalg.vector_norm(f, 1, dtype=torch.float64) / n
    zeros = (ok & (t == 0)).sum().double()
    numel = torch.full((), float(t.numel()), dtype=torch.float64, device=t.device)
    return torch.stack([numel, mean, std, mn, mx, absmean, zeros / n, nan, inf])


def stats_dict(vec) -> dict:
    """The stats vector as a row of the stats table (numel, nan, inf as ints)."""
    values = [float(v) for v in vec]
    row = dict(zip(STATS_FIELDS, values))
    for k in ("numel", "nan", "inf"):
        row[k] = int(row[k])
    return row


def histogram(t: torch.Tensor, bins: int, range_: tuple | None = None) -> dict:
    """Counts over ``bins`` equal bins, like ``numpy.histogram`` (last bin closed).

    Without a range the bins span the finite min..max. NaN, Inf and values
    outside a given range are counted separately, not dropped silently.
    """
    t = _float(t).reshape(-1)
    finite_mask = torch.isfinite(t)
    all_finite = t.device.type == "cpu" and bool(finite_mask.all())
    if range_ is None:
        if all_finite:
            lo, hi = torch.aminmax(t) if t.numel() else (t.new_zeros(()), t.new_zeros(()))
        else:
            big = torch.finfo(t.dtype).max
            lo = torch.where(finite_mask, t, big).amin() if t.numel() else t.new_zeros(())
            hi = torch.where(finite_mask, t, -big).amax() if t.numel() else t.new_zeros(())
        lo, hi = lo.double(), hi.double()
        same = hi <= lo
        lo, hi = torch.where(same, lo - 0.5, lo), torch.where(same, hi + 0.5, hi)
    else:
        lo = torch.tensor(float(range_[0]), dtype=torch.float64, device=t.device)
        hi = torch.tensor(float(range_[1]), dtype=torch.float64, device=t.device)
    inside = finite_mask & (t >= lo.to(t.dtype)) & (t <= hi.to(t.dtype))
    vals = t if all_finite and range_ is None else t[inside]
    # same arithmetic as torch.histc: (x - min) * bins / (max - min)
    pos = (vals - lo.to(t.dtype)) * bins / (hi - lo).to(t.dtype)
    idx = pos.to(torch.int64).clamp_(0, bins - 1)
    counts = torch.bincount(idx, minlength=bins)
    nan = torch.isnan(t).sum() if not all_finite else counts.new_zeros(())
    inf = torch.isinf(t).sum() if not all_finite else counts.new_zeros(())
    outside = (finite_mask & ~inside).sum() if range_ is not None else counts.new_zeros(())
    return {
        "counts": counts,
        "lo": lo,
        "hi": hi,
        "nan": nan,
        "inf": inf,
        "outside": outside,
    }


def scalar(t: torch.Tensor, op: str, dim: int | None = None) -> torch.Tensor:
    """mean, max, min, std or norm (L2) of ``t``, over all elements or along ``dim``."""
    t = _float(t)
    if op == "norm":
        return torch.linalg.vector_norm(t, dim=dim)
    if op in ("max", "min") and dim is not None:
        return getattr(t, "a" + op)(dim=dim)
    if op in ("max", "min"):
        return getattr(t, "a" + op)()
    fn = getattr(t, op)
    return fn() if dim is None else fn(dim=dim)


def block_mean(t: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of each of rows×cols near-equal blocks of a 2-D tensor, and the count
    of non-finite values per block (a block holding any shows as non-finite)."""
    t = _float(t)
    r_edges = _edges(t.shape[0], rows, t.device)
    c_edges = _edges(t.shape[1], cols, t.device)
    finite = torch.isfinite(t)
    bad = (~finite).double()
    f = torch.where(finite, t, 0.0).double()
    s = _block_sum(_block_sum(f, r_edges, 0), c_edges, 1)
    nbad = _block_sum(_block_sum(bad, r_edges, 0), c_edges, 1)
    sizes = torch.outer(torch.diff(r_edges).double(), torch.diff(c_edges).double())
    return s / sizes, nbad


def _edges(n: int, k: int, device) -> torch.Tensor:
    return torch.div(torch.arange(k + 1, device=device) * n, k, rounding_mode="floor")


def _block_sum(x: torch.Tensor, edges: torch.Tensor, dim: int) -> torch.Tensor:
    c = torch.cumsum(x, dim=dim)
    zero = torch.zeros_like(c.narrow(dim, 0, 1))
    c = torch.cat([zero, c], dim=dim)
    return c.index_select(dim, edges[1:]) - c.index_select(dim, edges[:-1])
