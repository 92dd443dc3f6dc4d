"""Every reduction, declared once: what it computes, whether a capture hook
can run it, and how the recorder merges it across steps' ranks.

    REDUCTIONS["std"].compute(t, dim=1)         the transform, on a whole tensor
    REDUCTIONS["std"].pushdown                  compile may move it into the hook
    REDUCTIONS["std"].partial / combine / finish
        tensor ──partial──▶ small float64 vector (in the hook, on the device)
               ──combine──▶ one vector from every rank's (rows of a stacked tensor)
               ──finish───▶ the record a run stores

Its name and arguments (with their defaults) are the query language's: each
record reads them from ``nnspec.query.catalog.TRANSFORMS``, where the
parser finds them without importing torch. The numerics stay in ``reduce``
(tuned, and shared with the capture): the records only call into it.

A record's layout (what ``runs`` stores as little-endian float64):
    stats       STATS_FIELDS: numel, mean, std, min, max, absmean, zero_frac, nan, inf
    histogram   HISTOGRAM_HEAD (lo, hi, nan, inf, outside), then count_0 … count_{bins-1}
    any other   value

Adding a reduction: its catalog entry (name, arguments), its record here,
its case in tests/test_reductions.py, its row in docs/guide.md. The parser,
execute, the compiler's rules and the recorder find it through these tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import torch

from nnspec.numerics import reduce
from nnspec.numerics.reduce import Scratch
from nnspec.query.catalog import DEFAULT_BINS, TRANSFORMS, Arg

HISTOGRAM_HEAD = ("lo", "hi", "nan", "inf", "outside")
GIVES = ("value", "stats", "histogram")


class Params(Protocol):
    """What a reduction pushed into a capture was asked for (``compiler.plan.Reduce``)."""

    @property
    def op(self) -> str: ...
    @property
    def abs(self) -> bool: ...
    @property
    def bins(self) -> int | None: ...
    @property
    def range(self) -> tuple[float, float] | None: ...


AgreeRange = Callable[[torch.Tensor], tuple[float, float]]
Partial = Callable[[torch.Tensor, Params, Scratch | None, AgreeRange | None], torch.Tensor]


def _as_is(part: torch.Tensor) -> torch.Tensor:
    return part


@dataclass(frozen=True, slots=True)
class Reduction:
    """One reduction of a tensor to a few numbers.

    gives       "value": one number (with ``dim=``, a tensor along that
                dimension); "stats": a STATS_FIELDS vector; "histogram":
                ``reduce.histogram``'s dict
    compute     ``compute(t, scratch=None, **arguments)``: the reduction of a
                whole tensor; ``arguments`` are the catalog's, defaults filled
    pushdown    a capture hook can run it, so pushdown_reductions moves a
                leading one (without ``dim=``) into the capture
    skips_flatten  skip_flatten may drop a ``flatten`` before it (its value
                does not depend on the tensor's shape)
    partial, combine, finish  how a run records it at every recorded step and
                merges the ranks of a DDP run or the shards of an FSDP2 one;
                None: not computed that way
    across      how ``combine`` merges the ranks' partials, in words (EXPLAIN)
    """

    name: str
    gives: str
    compute: Callable[..., Any]
    pushdown: bool = True
    skips_flatten: bool = False
    partial: Partial | None = None
    combine: Callable[[torch.Tensor], torch.Tensor] | None = None
    finish: Callable[[torch.Tensor], torch.Tensor] = _as_is
    across: str = ""

    def __post_init__(self) -> None:
        if self.name not in TRANSFORMS or not TRANSFORMS[self.name].reduction:
            raise ValueError(f"reduction {self.name!r} is not a reduction of nnspec.query.catalog.TRANSFORMS")
        if self.gives not in GIVES:
            raise ValueError(f"reduction {self.name!r} gives {self.gives!r}: expected one of {', '.join(GIVES)}")
        if (self.partial is None) != (self.combine is None):
            raise ValueError(f"reduction {self.name!r}: a partial needs a combine, and a combine a partial")
        if (self.combine is None) != (not self.across):
            raise ValueError(f"reduction {self.name!r}: a combine is described in 'across', and only a combine")

    @property
    def args(self) -> tuple[Arg, ...]:
        """Its arguments in positional order, with their defaults (the catalog's)."""
        return TRANSFORMS[self.name].args

    @property
    def dim(self) -> bool:
        """Whether it takes ``dim=`` (a tensor along that dimension, instead of one value)."""
        return "dim" in TRANSFORMS[self.name].arg_names

    @property
    def combines(self) -> bool:
        return self.combine is not None


# -- whole tensors -----------------------------------------------------------------------
def _scalar(op: str) -> Callable[..., torch.Tensor]:
    def compute(t: torch.Tensor, scratch: Scratch | None = None, dim: int | None = None) -> torch.Tensor:
        return reduce.scalar(t, op, dim)

    compute.__name__ = compute.__qualname__ = op
    return compute


def _stats(t: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
    return reduce.stats(t, scratch)


def _histogram(
    t: torch.Tensor,
    scratch: Scratch | None = None,
    bins: int = DEFAULT_BINS,
    range: tuple[float, float] | None = None,  # the query's own name for it
) -> dict[str, torch.Tensor]:
    return reduce.histogram(t, bins, tuple(range) if range else None, scratch)


def _update_ratio(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """‖after − before‖ / ‖before‖ of a parameter over one optimizer step."""
    ratio: torch.Tensor = torch.linalg.vector_norm((after - before).double()) / torch.linalg.vector_norm(
        before.double()
    )
    return ratio


# -- partials: one rank's tensor at one step -----------------------------------------------
def _count(t: torch.Tensor) -> torch.Tensor:
    return torch.full((1,), float(t.numel()), dtype=torch.float64, device=t.device)


_EMPTY = {"max": -math.inf, "min": math.inf}  # an empty shard (FSDP2's last rank may hold no rows)


def _one(t: torch.Tensor, r: Params, scratch: Scratch | None, agree: AgreeRange | None) -> torch.Tensor:
    """max, min, norm, nan_count, inf_count: the value itself."""
    if t.numel() == 0 and r.op in _EMPTY:
        return torch.full((1,), _EMPTY[r.op], dtype=torch.float64, device=t.device)
    return reduce.scalar(t, r.op).double().reshape(1)


def _mean_partial(t: torch.Tensor, r: Params, scratch: Scratch | None, agree: AgreeRange | None) -> torch.Tensor:
    return torch.cat([_count(t), reduce.scalar(t, "mean").double().reshape(1)])


def _std_partial(t: torch.Tensor, r: Params, scratch: Scratch | None, agree: AgreeRange | None) -> torch.Tensor:
    mean = reduce.scalar(t, "mean").double().reshape(1)
    if t.numel() < 2:  # one value (or an empty shard) has no std, and weighs nothing in Chan's merge
        return torch.cat([_count(t), mean, torch.full_like(mean, math.nan)])
    std = reduce.scalar(t, "std").double().reshape(1)
    return torch.cat([_count(t), mean, std])


def _dead_partial(t: torch.Tensor, r: Params, scratch: Scratch | None, agree: AgreeRange | None) -> torch.Tensor:
    if t.numel() == 0:  # an empty shard: no unit active in it
        return torch.zeros(math.prod(t.shape[1:]), dtype=torch.float64, device=t.device)
    return reduce.ever_active(reduce._float(t)).double()  # per unit: ever > 0


def _stats_partial(t: torch.Tensor, r: Params, scratch: Scratch | None, agree: AgreeRange | None) -> torch.Tensor:
    return reduce.stats(t, scratch)


def _histogram_partial(t: torch.Tensor, r: Params, scratch: Scratch | None, agree: AgreeRange | None) -> torch.Tensor:
    """``agree`` (DDP): the (lo, hi) every rank uses for an automatic range, so that bins line up."""
    rng = r.range or (agree(t) if agree is not None else None)
    return pack_histogram(reduce.histogram(t, r.bins or DEFAULT_BINS, rng, scratch))


def pack_histogram(h: dict[str, torch.Tensor]) -> torch.Tensor:
    """``reduce.histogram``'s dict as its partial: HISTOGRAM_HEAD, then the counts (float64)."""
    if h["counts"].device.type == "cpu":  # one tensor from five numbers: fewer ops than five casts and a stack
        head = torch.tensor([float(h[k]) for k in HISTOGRAM_HEAD], dtype=torch.float64)
    else:  # on a device: no host synchronisation
        head = torch.stack([h[k].double().reshape(()) for k in HISTOGRAM_HEAD])
    return torch.cat([head, h["counts"].double()])


# -- combine: rows of partials, one per rank, as if the tensors were concatenated --------------
def _mean_combine(p: torch.Tensor) -> torch.Tensor:
    n, ok = p[:, 0].sum(), p[:, 0] > 0  # an empty part's mean is NaN, and weighs nothing
    return torch.stack([n, (p[ok, 0] * p[ok, 1]).sum() / n])


def _std_combine(p: torch.Tensor) -> torch.Tensor:
    m2 = torch.where(p[:, 0] > 1, p[:, 2] ** 2 * (p[:, 0] - 1), torch.zeros_like(p[:, 2]))  # one value: std NaN, m2 0
    n, mean, m2 = _chan(p[:, 0], p[:, 1], m2)
    return torch.stack([n, mean, (m2 / (n - 1)).sqrt() if n > 1 else torch.tensor(math.nan)])


def _chan(n: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge per-part counts, means and sums of squared deviations (Chan et al.)."""
    ok = n > 0
    total = n[ok].sum()
    if total == 0:
        return total, torch.tensor(math.nan, dtype=torch.float64), torch.tensor(math.nan, dtype=torch.float64)
    mu = (n[ok] * mean[ok]).sum() / total
    return total, mu, m2[ok].sum() + (n[ok] * (mean[ok] - mu) ** 2).sum()


def _stats_combine(p: torch.Tensor) -> torch.Tensor:
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


def _histogram_combine(p: torch.Tensor) -> torch.Tensor:
    return torch.cat([p[0, :2], p[:, 2:].sum(dim=0)])  # the same lo, hi on every rank; counts add up


def _amax(p: torch.Tensor) -> torch.Tensor:
    return p.amax(dim=0)


def _amin(p: torch.Tensor) -> torch.Tensor:
    return p.amin(dim=0)


def _norm_combine(p: torch.Tensor) -> torch.Tensor:
    return p.pow(2).sum(dim=0).sqrt()


def _sum(p: torch.Tensor) -> torch.Tensor:
    return p.sum(dim=0)


# -- finish: the record to store --------------------------------------------------------------
def _mean_finish(part: torch.Tensor) -> torch.Tensor:
    return part[1:2]


def _std_finish(part: torch.Tensor) -> torch.Tensor:
    return part[2:3]


def _dead_finish(part: torch.Tensor) -> torch.Tensor:
    return (1.0 - part.mean()).reshape(1)  # the share of units never active


def _registry(*records: Reduction) -> Mapping[str, Reduction]:
    out: dict[str, Reduction] = {}
    for r in records:
        assert r.name not in out, f"{r.name} declared twice"
        out[r.name] = r
    return MappingProxyType(out)


# In this order error messages list them.
REDUCTIONS: Mapping[str, Reduction] = _registry(
    Reduction(
        "stats", "stats", _stats, skips_flatten=True,
        partial=_stats_partial, combine=_stats_combine,
        across="counts and NaN/Inf add up, min/max exact, mean/std by Chan's formula",
    ),
    Reduction(
        "histogram", "histogram", _histogram, skips_flatten=True,
        partial=_histogram_partial, combine=_histogram_combine,
        across="an automatic range agreed across ranks (all_reduce of min/max) before binning, bin counts add up",
    ),
    Reduction(
        "norm", "value", _scalar("norm"), skips_flatten=True,
        partial=_one, combine=_norm_combine, across="sqrt of the summed squares",
    ),
    Reduction(
        "mean", "value", _scalar("mean"), skips_flatten=True,
        partial=_mean_partial, combine=_mean_combine, finish=_mean_finish,
        across="means weighted by counts",
    ),
    Reduction("max", "value", _scalar("max"), skips_flatten=True, partial=_one, combine=_amax, across="max of maxima"),
    Reduction("min", "value", _scalar("min"), skips_flatten=True, partial=_one, combine=_amin, across="min of minima"),
    Reduction(
        "std", "value", _scalar("std"), skips_flatten=True,
        partial=_std_partial, combine=_std_combine, finish=_std_finish,
        across="counts, means and squared deviations by Chan's formula",
    ),
    # units: the positions after the first (batch) dimension; NaN counts as not active
    Reduction(
        "dead_fraction", "value", _scalar("dead_fraction"),
        partial=_dead_partial, combine=_amax, finish=_dead_finish,
        across="each unit's ever-active flag, any rank",
    ),
    Reduction("nan_count", "value", _scalar("nan_count"), partial=_one, combine=_sum, across="counts add up"),
    Reduction("inf_count", "value", _scalar("inf_count"), partial=_one, combine=_sum, across="counts add up"),
    # ‖Δw‖/‖w‖ over one optimizer step: compute(before, after); the recorder snapshots
    # the parameter at a recorded step and compares it at the next one
    Reduction("update_ratio", "value", _update_ratio, pushdown=False),
)  # fmt: skip

__all__ = ["GIVES", "HISTOGRAM_HEAD", "REDUCTIONS", "Params", "Reduction", "pack_histogram"]
