"""Per-step reductions of recorded captures, in a form that adds up across ranks.

    tensor ──partial()──▶ a small float64 vector, on the tensor's device (in the hook)
           ──combine()──▶ one vector from every rank's   (DDP: counts, sums, min, max
                                                          and histogram bins exact)
           ──finish()───▶ the record a run stores: STATS_FIELDS, a histogram, or one value

A record's layout (what ``runs`` stores as little-endian float64):
    stats       numel, mean, std, min, max, absmean, zero_frac, nan, inf
    histogram   lo, hi, nan, inf, outside, count_0 … count_{bins-1}
    any other   value
"""

from __future__ import annotations

import math

import torch

from . import reduce
from .compiler import Reduce

HISTOGRAM_HEAD = ("lo", "hi", "nan", "inf", "outside")


def partial(r: Reduce, t: torch.Tensor, scratch=None, agree_range=None) -> torch.Tensor:
    """The reduction of one rank's tensor, as a vector ``combine`` can merge.

    ``agree_range`` (DDP): a function from a tensor to the (lo, hi) every rank
    uses for an automatic histogram, so that bins line up across ranks.
    """
    t = t.detach()
    if r.abs:
        t = t.abs()
    op = r.op
    if op == "stats":
        return reduce.stats(t, scratch)
    if op == "histogram":
        rng = r.range or (agree_range(t) if agree_range is not None else None)
        h = reduce.histogram(t, r.bins, rng, scratch)
        head = torch.stack([h[k].double().reshape(()) for k in HISTOGRAM_HEAD])
        return torch.cat([head, h["counts"].double()])
    if op == "dead_fraction":
        return reduce.ever_active(reduce._float(t)).double()  # per unit: ever > 0
    n = torch.full((1,), float(t.numel()), dtype=torch.float64, device=t.device)
    if op == "mean":
        return torch.cat([n, reduce.scalar(t, "mean").double().reshape(1)])
    if op == "std":
        return torch.cat([n, reduce.scalar(t, "mean").double().reshape(1), reduce.scalar(t, "std").double().reshape(1)])
    return reduce.scalar(t, op).double().reshape(1)  # max, min, norm, nan_count, inf_count


def combine(r: Reduce, parts: list[torch.Tensor]) -> torch.Tensor:
    """Every rank's partial as one, as if the ranks' tensors were concatenated."""
    if len(parts) == 1:
        return parts[0]
    p = torch.stack([x.double().cpu() for x in parts])
    op = r.op
    if op == "stats":
        return _stats(p)
    if op == "histogram":
        return torch.cat([p[0, :2], p[:, 2:].sum(dim=0)])
    if op == "dead_fraction":
        return p.amax(dim=0)
    if op == "mean":
        n = p[:, 0].sum()
        return torch.stack([n, (p[:, 0] * p[:, 1]).sum() / n])
    if op == "std":
        n, mean, m2 = _chan(p[:, 0], p[:, 1], p[:, 2] ** 2 * (p[:, 0] - 1).clamp(min=0))
        return torch.stack([n, mean, (m2 / (n - 1)).sqrt() if n > 1 else torch.tensor(math.nan)])
    if op == "max":
        return p.amax(dim=0)
    if op == "min":
        return p.amin(dim=0)
    if op == "norm":
        return p.pow(2).sum(dim=0).sqrt()
    return p.sum(dim=0)  # nan_count, inf_count


def finish(r: Reduce, part: torch.Tensor) -> torch.Tensor:
    """The record to store, from a (combined) partial."""
    op = r.op
    if op == "dead_fraction":
        return (1.0 - part.mean()).reshape(1)
    if op == "mean":
        return part[1:2]
    if op == "std":
        return part[2:3]
    return part


def _chan(n, mean, m2):
    """Merge per-part counts, means and sums of squared deviations (Chan et al.)."""
    ok = n > 0
    total = n[ok].sum()
    if total == 0:
        return total, torch.tensor(math.nan, dtype=torch.float64), torch.tensor(math.nan, dtype=torch.float64)
    mu = (n[ok] * mean[ok]).sum() / total
    return total, mu, m2[ok].sum() + (n[ok] * (mean[ok] - mu) ** 2).sum()


def _stats(p: torch.Tensor) -> torch.Tensor:
    """Merge STATS_FIELDS rows: moments over the finite values of every rank."""
    numel, mean, std, mn, mx, absmean, zero_frac, nan, inf = p.unbind(dim=1)
    finite = numel - nan - inf
    m2 = torch.where(finite > 1, std**2 * (finite - 1), torch.zeros_like(std))
    n, mu, m2 = _chan(finite, mean, m2)
    ok = finite > 0
    out_std = (m2 / (n - 1)).sqrt() if n > 1 else torch.tensor(math.nan, dtype=torch.float64)
    if n > 0:
        weighted = [(finite[ok] * v[ok]).sum() / n for v in (absmean, zero_frac)]
        lo, hi = mn[ok].min(), mx[ok].max()
    else:
        weighted = [torch.tensor(math.nan, dtype=torch.float64)] * 2
        lo = hi = torch.tensor(math.nan, dtype=torch.float64)
    return torch.stack([numel.sum(), mu, out_std, lo, hi, *weighted, nan.sum(), inf.sum()])
