"""Reductions that run where the tensor lives, inside hooks or after a pass.

Each returns small tensors on the tensor's device and never calls ``.item()``
on CUDA, so a hook adds no host synchronisation. On the CPU the costly
counting ops (NaN, Inf) run only when a cheap sum says they are needed.

STATS_FIELDS is the order of the vector ``stats`` returns. Which reductions
the query language has, and how each is recorded, is ``reductions.REDUCTIONS``.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable, Hashable
from typing import Concatenate, ParamSpec, TypeVar, cast

import torch

from nnspec.numerics import native
from nnspec.numerics import small as reduce_small

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


HALF = (torch.float16, torch.bfloat16)


def _float(t: torch.Tensor) -> torch.Tensor:
    """The tensor to reduce: detached; integers and half precision (float16,
    bfloat16) widened to float32, so sums, moments and bin indexes of a half
    tensor are those of its float32 values (a bfloat16 sum of 4,096 values
    keeps 8 bits: its mean would be off by ~1e-3)."""
    t = t.detach()
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


_CHUNK = 1 << 22  # float32 sums of ≤ 2^22 ones are exact (BLAS dots included)

# CPU reductions of at most this many elements run on one thread: torch's
# parallel ops on a busy machine wait for a descheduled worker (a sum over
# 786k floats took 8 ms with 2 threads, 0.03 ms with 1), and one thread reads
# a tensor of this size at close to memory speed anyway.
ONE_THREAD_MAX = 1 << 22
ENDS = "min and max"  # what ``stats`` leaves in a Scratch for ``histogram``
TINY, HUGE = 1e-18, 1e15  # |x| outside: float32 sums of x² lose it (smallest normal 1.2e-38, max 3.4e38)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def steady(fn: Callable[Concatenate[torch.Tensor, _P], _R]) -> Callable[Concatenate[torch.Tensor, _P], _R]:
    """``fn(t, …)`` on one torch thread when ``t`` is a CPU tensor of at most
    ONE_THREAD_MAX elements; the caller's thread count is restored after."""

    @functools.wraps(fn)
    def run(t: torch.Tensor, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        threads = torch.get_num_threads()
        if threads == 1 or t.device.type != "cpu" or t.numel() > ONE_THREAD_MAX:
            return fn(t, *args, **kwargs)
        torch.set_num_threads(1)
        try:
            with native.caller_threads(threads):  # nnspec's kernels still split a large tensor
                return fn(t, *args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return run


class Scratch:
    """Reusable work buffers, and reductions already made, for one capture run.

    A fresh large tensor per hook costs page faults worth 1-2 ns per element
    on the CPU, more than the reductions themselves; one buffer per dtype and
    device, grown to the largest activation, avoids that.

    ``recall``/``remember``: a tensor passed on unchanged (by an Identity, a
    Dropout in eval mode, a tied weight) is reduced once. An entry is keyed by
    the tensor's memory (device, data pointer, shape, strides, dtype), its
    version counter (bumped by every in-place write) and what was computed; it
    holds only a weak reference to the tensor, and is valid while that tensor
    lives (its memory cannot then belong to another tensor) and dropped when
    it dies, so no activation is kept alive by it.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.dtype, str], torch.Tensor] = {}
        self._memo: dict[Hashable, tuple[weakref.ref[torch.Tensor], object]] = {}
        self.hits = 0

    def get(self, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (dtype, str(device))
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < n:
            buf = self._buffers[key] = torch.empty(n, dtype=dtype, device=device)
        return buf[:n]

    @staticmethod
    def _key(t: torch.Tensor, what: Hashable) -> Hashable | None:
        """None where the tensor cannot be told apart safely (inference tensors keep
        no version counter; meta, fake and sparse tensors have no plain memory)."""
        if t.is_inference() or t.layout != torch.strided or t.device.type == "meta":
            return None
        try:
            key = (str(t.device), t.data_ptr(), tuple(t.shape), t.stride(), t.dtype, t._version, what)
            hash(key)  # what: made of hashable parts (a list range would not be)
        except (RuntimeError, NotImplementedError, TypeError):
            return None
        return key

    def recall(self, t: torch.Tensor, what: Hashable) -> object | None:
        """What was remembered of ``t`` as ``what``, or None (a dict comes back as a copy)."""
        key = self._key(t, what)
        entry = self._memo.get(key) if key is not None else None
        if entry is None or entry[0]() is None:
            return None
        self.hits += 1
        value = entry[1]
        return dict(value) if isinstance(value, dict) else value

    def remember(self, t: torch.Tensor, what: Hashable, value: object) -> None:
        key = self._key(t, what)
        if key is None:
            return
        memo = self._memo

        def forget(_: weakref.ref[torch.Tensor]) -> None:
            memo.pop(key, None)

        try:
            ref = weakref.ref(t, forget)
        except TypeError:
            return
        memo[key] = (ref, value)


def _buffer(scratch: Scratch | None, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor | None:
    if scratch is None:
        return None
    return scratch.get(like.numel(), dtype or like.dtype, like.device)


def _nonzero_count(signs: torch.Tensor) -> torch.Tensor:
    """How many of a tensor of signs (-1, 0, 1) are not 0: the sum of their squares
    as one BLAS dot per chunk (no abs pass), exact at any size."""
    if signs.numel() <= _CHUNK:
        return torch.dot(signs, signs).double()
    return torch.stack([torch.dot(c, c) for c in signs.split(_CHUNK)]).double().sum()


def _finite_stats(
    t: torch.Tensor,
    n_total: int,
    nan: int,
    inf: int,
    total: torch.Tensor | None = None,
    scratch: Scratch | None = None,
) -> torch.Tensor:
    """Stats of an all-finite CPU tensor ``t`` (n_total counts NaN/Inf too).

    Without nnspec's kernel (``native``: one read, float32 only), five cheap
    passes besides the sum: aminmax, a BLAS dot for the sum of
    squares, sign(), a dot with the signs for the sum of |x| and a dot of the
    signs with themselves for the zero count. float64 accumulation is avoided
    on purpose: on the CPU it costs 10-20× a float32 pass. The few numbers
    they give are combined as Python floats (float64, the same IEEE operations
    as float64 tensors): on the CPU reading them costs nothing, and two dozen
    scalar tensor ops would cost more than the passes over a 100k-element tensor.
    """
    n = t.numel()
    if n == 0:
        return torch.tensor([float(n_total)] + [math.nan] * 6 + [float(nan), float(inf)], dtype=torch.float64)
    flat = t.reshape(-1)
    if flat.dtype != torch.float32 and flat.dtype != torch.float64:
        flat = flat.float()
    s_t = flat.sum() if total is None else total
    mn_t, mx_t = torch.aminmax(flat)
    sumsq_t = torch.dot(flat, flat)
    signs = torch.sign(flat, out=_buffer(scratch, flat))
    abssum_t = torch.dot(flat, signs)
    zeros = n - float(_nonzero_count(signs))
    s, mn, mx, sumsq, abssum = (float(v) for v in (s_t, mn_t, mx_t, sumsq_t, abssum_t))
    return _from_moments(flat, n_total, nan, inf, (s, sumsq, abssum, zeros, mn, mx, 0.0), scratch)


def _from_moments(
    flat: torch.Tensor, n_total: int, nan: int, inf: int, m: tuple[float, ...], scratch: Scratch | None
) -> torch.Tensor:
    """The stats vector from (sum and sum of squares of x - shift, sum of |x|, zeros,
    min, max, shift) of the finite values ``flat`` (from torch's passes, shift 0, or
    the native kernel's one read)."""
    s, sumsq, abssum, zeros, mn, mx, shift = m
    n = flat.numel()
    mean = shift + s / n
    var = (sumsq - s * (s / n)) / max(n - 1, 1)
    big = max(abs(mn), abs(mx))
    if flat.dtype == torch.float32 and (0 < big < TINY or big > HUGE):
        # squares outside float32's range (vanishing or exploding values) underflow to 0
        # or overflow to Inf in any float32 pass: these moments again, in float64
        wide = flat.double()
        mean = float(wide.mean())
        var = float(torch.linalg.vector_norm(wide - mean)) ** 2 / max(n - 1, 1)
        abssum = float(wide.abs().sum())
    elif var <= 1e-4 * sumsq / n:
        # |mean| ≫ std: E[x²]-E[x]² cancels; take the two-pass value instead
        dev = torch.sub(flat, torch.tensor(mean, dtype=flat.dtype), out=_buffer(scratch, flat))
        var = float(torch.linalg.vector_norm(dev)) ** 2 / max(n - 1, 1)
    std = math.sqrt(max(var, 0.0)) if n > 1 else math.nan
    row = [float(n_total), mean, std, mn, mx, abssum / n, zeros / n, float(nan), float(inf)]
    return torch.tensor(row, dtype=torch.float64)


@steady
def stats(t: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
    """float64 vector in STATS_FIELDS order; moments over the finite values only.

    With a ``scratch``, an all-finite tensor's min and max are remembered for a
    histogram of the same tensor, which then skips its min/max read (``ENDS``)."""
    given, t = t, _float(t)
    if reduce_small.applies(t) and not native.usable(t):  # nnspec's kernel is faster at every size
        vec = reduce_small.stats(t)
    else:
        vec = stats_torch(t, scratch)
    if scratch is not None and t.numel():
        _, _, _, lo, hi, _, _, nan, inf = vec.tolist()
        if nan == 0 and inf == 0:
            scratch.remember(given, ENDS, (lo, hi))
    return vec


def stats_torch(t: torch.Tensor, scratch: Scratch | None = None) -> torch.Tensor:
    """``stats`` in torch ops (one read in nnspec's own kernel for float32), whatever the size."""
    t = _float(t)
    if t.device.type != "cpu":
        return _masked_stats(t, torch.isnan(t).sum().double(), torch.isinf(t).sum().double())
    flat = t.reshape(-1)
    if flat.numel() and native.usable(flat):
        m = native.moments(flat)
        if math.isfinite(m[4]) and math.isfinite(m[5]):  # min and max show any NaN or Inf
            return _from_moments(flat, flat.numel(), 0, 0, m, scratch)
        if reduce_small.applies(flat):  # NaN or Inf in a small tensor: NumPy's float64 counting path
            return reduce_small.stats(flat)
    total = t.sum()
    if math.isfinite(float(total)):  # a finite sum means no NaN and no Inf
        return _finite_stats(t, t.numel(), 0, 0, total, scratch)
    nan = int(torch.isnan(t).sum())
    inf = int(torch.isinf(t).sum())
    return _finite_stats(t[torch.isfinite(t)], t.numel(), nan, inf)


def _masked_stats(t: torch.Tensor, nan: torch.Tensor, inf: torch.Tensor) -> torch.Tensor:
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


def stats_dict(vec: torch.Tensor) -> dict[str, float]:
    """The stats vector as a row of the stats table (numel, nan, inf as ints)."""
    values = [float(v) for v in vec]
    row = dict(zip(STATS_FIELDS, values))
    for k in ("numel", "nan", "inf"):
        row[k] = int(row[k])
    return row


@steady
def histogram(
    t: torch.Tensor, bins: int, range_: tuple[float, ...] | None = None, scratch: Scratch | None = None
) -> dict[str, torch.Tensor]:
    """Counts over ``bins`` equal bins, like ``numpy.histogram`` (last bin closed).

    Without a range the bins span the finite min..max. NaN, Inf and values
    outside a given range are counted separately, not dropped silently. Bin
    indexes of float32 and float64 tensors are computed in the tensor's
    precision, as ``torch.histc`` does: a value within float rounding of an
    edge may land in the next bin. A half-precision tensor (float16, bfloat16)
    is binned as its float32 values, exactly as ``numpy.histogram`` bins them:
    its values sit on a coarse grid that often meets a bin edge, so the bin
    index is checked against numpy's float32 edges (``exact``).
    """
    exact = t.dtype in HALF
    ends = scratch.recall(t, ENDS) if scratch is not None else None  # from ``stats`` of this tensor
    t = _float(t).reshape(-1)
    if t.device.type != "cpu":
        return histogram_sync_free(t, bins, range_, exact)
    if reduce_small.applies(t) and (exact or not native.usable(t)):  # the kernel: as fast small, faster large
        return reduce_small.histogram(t, bins, range_, exact)
    return histogram_torch(t, bins, range_, scratch, exact, ends)  # type: ignore[arg-type]


def histogram_torch(
    t: torch.Tensor,
    bins: int,
    range_: tuple[float, ...] | None = None,
    scratch: Scratch | None = None,
    exact: bool = False,
    ends: tuple[float, float] | None = None,
) -> dict[str, torch.Tensor]:
    """``histogram`` in torch ops on the CPU, whatever the size (``exact``: bins
    checked against numpy's float32 edges; ``ends``: the tensor's min and max,
    known all finite). The range and scale are Python floats (float64), as
    ``histogram_sync_free`` computes them in float64 tensors."""
    t = _float(t).reshape(-1)
    nan = inf = t.new_zeros((), dtype=torch.int64)
    vals = t
    fast = native.usable(t) and not exact  # nnspec's kernel: min/max in one read, bins in one more
    if ends is not None and t.numel():
        mn, mx = ends
    elif fast:
        mn, mx = native.minmax(t) if t.numel() else (0.0, 0.0)
    else:
        mn, mx = (float(v) for v in torch.aminmax(t)) if t.numel() else (0.0, 0.0)
    # min and max propagate NaN and show ±Inf, so finite ones mean all values are
    if not (math.isfinite(mn) and math.isfinite(mx)):
        finite = torch.isfinite(t)
        nan, inf = torch.isnan(t).sum(), torch.isinf(t).sum()
        vals = t[finite]
        mn, mx = (float(v) for v in torch.aminmax(vals)) if vals.numel() else (0.0, 0.0)
    if range_ is None:
        lo, hi = reduce_small.widen(mn, mx)
    else:
        lo, hi = float(range_[0]), float(range_[1])
    scale = bins / (hi - lo)
    lo_t, hi_t = torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)
    if fast and native.usable(vals):
        return _native_histogram(vals, bins, (lo_t, hi_t), scale, range_ is not None, nan, inf)
    lo_v = torch.tensor(lo, dtype=vals.dtype)  # rounded to the values' precision, as .to() rounds
    # pos = (x - lo) * scale, as torch.histc and histogram_sync_free compute it;
    # values equal to hi land at index ``bins`` and are folded into the last bin
    pos = _buffer(scratch, vals)
    pos = torch.sub(vals, lo_v, out=pos).mul_(torch.tensor(scale, dtype=vals.dtype))
    if range_ is not None:
        pos.clamp_(0, bins)
    if exact:
        edges = numpy_edges(lo_t, hi_t, bins, range_ is None, vals.dtype)
        counts = torch.bincount(numpy_bins(vals, pos.to(torch.int64), edges), minlength=bins)
    else:
        # float -> int32 is a vectorised truncation, float -> uint8 is not (4x slower):
        # go through int32, then narrow to uint8, which makes bincount fast
        wide = _buffer(scratch, vals, torch.int32)
        idx = pos.to(torch.int32) if wide is None else wide.copy_(pos)
        if bins < 255:
            narrow = _buffer(scratch, vals, torch.uint8)
            idx = idx.to(torch.uint8) if narrow is None else narrow.copy_(idx)
        every = torch.bincount(idx, minlength=bins + 1)
        counts = every[:bins].clone()
        counts[-1] += every[bins]
    outside = counts.new_zeros(())
    if range_ is not None:  # clamped into the edge bins above: take them back out
        below, above = (vals < lo_v).sum(), (vals > torch.tensor(hi, dtype=vals.dtype)).sum()
        counts[0] -= below
        counts[-1] -= above
        outside = below + above
    return {"counts": counts, "lo": lo_t, "hi": hi_t, "nan": nan, "inf": inf, "outside": outside}


def _native_histogram(
    vals: torch.Tensor,
    bins: int,
    ends: tuple[torch.Tensor, torch.Tensor],
    scale: float,
    ranged: bool,
    nan: torch.Tensor,
    inf: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """``histogram_torch``'s counts from nnspec's kernel: the same float32 position
    ``(x - lo) * scale``, clamped and truncated, in one read of the finite values."""
    lo_t, hi_t = ends
    every, below, above = native.bins(vals, float(lo_t), scale, bins, float(hi_t) if ranged else None)
    counts = every[:bins].copy()  # folded in NumPy: a few torch ops would cost more than a small tensor's count
    counts[-1] += every[bins] - above
    counts[0] -= below
    outside = torch.tensor(below + above, dtype=torch.int64)
    return {"counts": torch.from_numpy(counts), "lo": lo_t, "hi": hi_t, "nan": nan, "inf": inf, "outside": outside}


def numpy_edges(lo: torch.Tensor, hi: torch.Tensor, bins: int, from_data: bool, dtype: torch.dtype) -> torch.Tensor:
    """The ``bins + 1`` edges ``numpy.histogram`` uses for values of ``dtype``, as
    ``numpy.linspace`` computes them: in ``dtype`` when the range comes from the
    data (NumPy takes the array's own min and max), in float64 then rounded when
    it is given (Python floats). No host synchronisation."""
    k = torch.arange(bins + 1, device=lo.device)
    if from_data:
        lo_t, hi_t = lo.to(dtype), hi.to(dtype)
        edges = k.to(dtype) * ((hi_t - lo_t) / bins) + lo_t
        return torch.cat([edges[:-1], hi_t.reshape(1)])
    edges64 = k.double() * ((hi - lo) / bins) + lo
    return torch.cat([edges64[:-1], hi.reshape(1)]).to(dtype)


def numpy_bins(vals: torch.Tensor, idx: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Bin indexes (int64, within 0..bins-1) from estimates ``idx`` that are at most one
    off, corrected against ``edges`` as ``numpy.histogram`` does: a value below its
    bin's start goes one down, a value at or past its bin's end one up (not past
    the last bin, which is closed). Values outside the edges stay in an end bin."""
    bins = edges.numel() - 1
    idx = idx.clamp(0, bins - 1)
    idx = (idx - (vals < edges[idx]).to(torch.int64)).clamp_(min=0)
    up = (vals >= edges[idx + 1]) & (idx != bins - 1)
    return idx + up.to(torch.int64)


def histogram_sync_free(
    t: torch.Tensor, bins: int, range_: tuple[float, ...] | None = None, exact: bool = False
) -> dict[str, torch.Tensor]:
    """``histogram`` without a host synchronisation (for CUDA): no boolean
    indexing, no ``bincount`` (which sizes its output from the data), no
    ``.item()``. Non-finite and outside values go to a spare bin."""
    t = _float(t).reshape(-1)
    ok = torch.isfinite(t)
    nan, inf = torch.isnan(t).sum(), torch.isinf(t).sum()
    if range_ is None:
        big = torch.finfo(t.dtype).max
        lo = torch.where(ok, t, big).amin().double() if t.numel() else t.new_zeros((), dtype=torch.float64)
        hi = torch.where(ok, t, -big).amax().double() if t.numel() else t.new_zeros((), dtype=torch.float64)
        none = hi < lo  # no finite value at all
        lo, hi = torch.where(none, 0.0, lo), torch.where(none, 0.0, hi)
        same = hi <= lo
        lo, hi = torch.where(same, lo - 0.5, lo), torch.where(same, hi + 0.5, hi)
    else:
        lo = torch.full((), float(range_[0]), dtype=torch.float64, device=t.device)
        hi = torch.full((), float(range_[1]), dtype=torch.float64, device=t.device)
    lo_t, hi_t = lo.to(t.dtype), hi.to(t.dtype)
    inside = ok & (t >= lo_t) & (t <= hi_t)
    pos = ((t - lo_t) * (bins / (hi - lo)).to(t.dtype)).clamp(0, bins - 1)
    if exact:
        pos = numpy_bins(t, pos.to(torch.int64), numpy_edges(lo, hi, bins, range_ is None, t.dtype))
    idx = torch.where(inside, pos, bins).to(torch.int64)
    counts = torch.zeros(bins + 1, dtype=torch.int64, device=t.device).scatter_add_(0, idx, torch.ones_like(idx))
    outside = (ok & ~inside).sum()
    return {"counts": counts[:bins], "lo": lo, "hi": hi, "nan": nan, "inf": inf, "outside": outside}


@steady
def scalar(t: torch.Tensor, op: str, dim: int | None = None) -> torch.Tensor:
    """mean, max, min, std, norm (L2), dead_fraction, nan_count or inf_count of
    ``t``, over all elements or (the first five) along ``dim``."""
    t = _float(t)
    if op == "dead_fraction":
        return 1.0 - ever_active(t).double().mean()
    if op == "nan_count":
        return torch.isnan(t).sum().double()
    if op == "inf_count":
        return torch.isinf(t).sum().double()
    if op == "norm":
        return cast(torch.Tensor, torch.linalg.vector_norm(t, dim=dim))  # torch.linalg's stubs return Any
    if op in ("max", "min") and dim is not None:
        return cast(torch.Tensor, getattr(t, "a" + op)(dim=dim))  # getattr: Any
    if op in ("max", "min"):
        return cast(torch.Tensor, getattr(t, "a" + op)())
    fn = getattr(t, op)
    return cast(torch.Tensor, fn() if dim is None else fn(dim=dim))


def ever_active(t: torch.Tensor) -> torch.Tensor:
    """Per unit, whether it was > 0 for any sample: the first dimension is the
    batch, every position of the others a unit (a tensor of < 2 dimensions:
    each element a unit). NaN counts as not active."""
    units = t.reshape(t.shape[0], -1) if t.dim() >= 2 else t.reshape(1, -1)
    return (units > 0).any(dim=0)


def block_mean(t: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of each of rows×cols near-equal blocks of a 2-D tensor, and the count
    of non-finite values per block (a block holding any shows as non-finite).

    Block sums go through ``index_add_``, one pass per axis: no float64 copy
    of the whole tensor, which costs more than the rest on the CPU.
    """
    t = _float(t)
    r_edges = _edges(t.shape[0], rows, t.device)
    c_edges = _edges(t.shape[1], cols, t.device)
    sizes = torch.outer(torch.diff(r_edges).double(), torch.diff(c_edges).double())
    if t.device.type == "cpu" and bool(torch.isfinite(t.sum())):
        return _block_sum(t, r_edges, c_edges) / sizes, torch.zeros_like(sizes)
    ok = torch.isfinite(t)
    sums = _block_sum(torch.where(ok, t, 0.0), r_edges, c_edges)
    bad = _block_sum((~ok).to(t.dtype), r_edges, c_edges)
    return sums / sizes, bad


def _edges(n: int, k: int, device: torch.device | str) -> torch.Tensor:
    return torch.div(torch.arange(k + 1, device=device) * n, k, rounding_mode="floor")


def _block_ids(edges: torch.Tensor, n: int) -> torch.Tensor:
    """For each index 0..n-1, the block it belongs to."""
    return torch.bucketize(torch.arange(n, device=edges.device), edges[1:], right=True)


def _block_sum(x: torch.Tensor, r_edges: torch.Tensor, c_edges: torch.Tensor) -> torch.Tensor:
    rows, cols = len(r_edges) - 1, len(c_edges) - 1
    # rows in the tensor's precision (a few dozen terms per sum), columns in float64
    by_row = x.new_zeros(rows, x.shape[1]).index_add_(0, _block_ids(r_edges, x.shape[0]), x).double()
    return by_row.new_zeros(rows, cols).index_add_(1, _block_ids(c_edges, x.shape[1]), by_row)


BLOCK_AGGS = ("mean", "absmax", "rms", "std")


def block_edges(n: int, k: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Edges of ``k`` near-equal blocks along ``n`` (``k + 1`` of them, from 0 to n)."""
    return _edges(n, k, device)


def block_reduce(
    t: torch.Tensor, r_edges: torch.Tensor, c_edges: torch.Tensor, agg: str = "absmax"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One value per block of a 2-D tensor (blocks between consecutive edges, float64),
    and the count of non-finite values per block (a block holding any shows as
    non-finite). ``agg``: ``mean``; ``absmax``, the value of largest magnitude with
    its sign (the positive one when +m and -m tie); ``rms``, √(mean of squares);
    ``std``, the population standard deviation (ddof=0: a block of one value has 0).
    Statistics over the finite values of a block."""
    if agg not in BLOCK_AGGS:
        raise ValueError(f"block_reduce: unknown aggregation {agg!r}")
    t = _float(t)
    r_edges, c_edges = r_edges.to(t.device), c_edges.to(t.device)
    sizes = torch.outer(torch.diff(r_edges).double(), torch.diff(c_edges).double())
    if t.device.type == "cpu" and bool(torch.isfinite(t.sum())):
        x, bad = t, torch.zeros_like(sizes)
    else:
        ok = torch.isfinite(t)
        x = torch.where(ok, t, 0.0)
        bad = _block_sum((~ok).to(t.dtype), r_edges, c_edges)
    n = (sizes - bad).clamp(min=1)  # finite values per block
    if agg == "absmax":
        hi = _block_extreme(x, r_edges, c_edges, "amax")
        lo = _block_extreme(x, r_edges, c_edges, "amin")
        out = torch.where(hi.abs() >= lo.abs(), hi, lo)
    elif agg == "mean":
        out = _block_sum(x, r_edges, c_edges) / n
    elif agg == "rms":
        out = torch.sqrt(_block_sum(x * x, r_edges, c_edges) / n)
    else:
        mean = _block_sum(x, r_edges, c_edges) / n
        rows, cols = _block_ids(r_edges, x.shape[0]), _block_ids(c_edges, x.shape[1])
        dev = x - mean.to(x.dtype)[rows][:, cols]
        if not bool(bad.sum() == 0):  # non-finite values count nowhere
            dev = torch.where(torch.isfinite(t), dev, 0.0)
        out = torch.sqrt(_block_sum(dev * dev, r_edges, c_edges) / n)
    return out.double(), bad


def _block_extreme(x: torch.Tensor, r_edges: torch.Tensor, c_edges: torch.Tensor, op: str) -> torch.Tensor:
    """Block max (``amax``) or min (``amin``), one axis at a time."""
    rows, cols = len(r_edges) - 1, len(c_edges) - 1
    start = -math.inf if op == "amax" else math.inf
    r_ids = _block_ids(r_edges, x.shape[0])[:, None].expand(x.shape)
    by_row = x.new_full((rows, x.shape[1]), start).scatter_reduce_(0, r_ids, x, op)
    c_ids = _block_ids(c_edges, x.shape[1])[None, :].expand(by_row.shape)
    return by_row.new_full((rows, cols), start).scatter_reduce_(1, c_ids, by_row, op)
