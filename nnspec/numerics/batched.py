"""Deferred, batched reductions: the stats, histograms and norms of many tensors
in a few large kernels, after a pass instead of inside its hooks.

Why: on a GPU the per-tensor reductions of ``reduce`` launch 15-20 small
kernels per hooked module (``_masked_stats``, ``histogram_sync_free``), and
launches, not bytes, are what a hooked forward pass then costs (13.8× a plain
GPT-2-small forward on an H200). Here a hook only keeps a copy of its tensor
(``Deferred.keep``, one kernel: later in-place writes such as
``ReLU(inplace=True)`` cannot change it); after the pass all kept tensors of
one reduction are reduced together.

Layout: the tensors of a batch are laid end to end, each padded with NaN to a
whole number of CHUNK-element rows, as one ``[rows, CHUNK]`` matrix (one
``torch.cat``). Dense row reductions with no mask (``aminmax``, ``var_mean``,
the 1- and 0-norms: one read each) give per-row partials; the few rows whose
partials are not finite (NaN, ±Inf, or a tensor's padded last row) are picked
on the device (``topk``) and reduced again with masks; an
``index_add_``/``scatter_reduce_`` over the rows merges the partials per tensor
(Chan's formula for the variance). Pads are NaN, so they fall out of every
finite-only statistic and are taken back out of the NaN count. Histogram bins
are counted per row (slot ``row * (bins + 1) + bin``: a ReLU's zeros contend
for one row's counter, not one tensor's), then summed per tensor. Norms use
``torch._foreach_norm`` (multi-tensor kernels, no copy).

The numbers are those of ``reduce.stats`` / ``reduce.histogram`` /
``reduce.scalar(t, "norm")``: the same STATS_FIELDS vector (moments over the
finite values only, NaN/Inf counted apart; an empty or all-non-finite tensor
gives NaN moments, as on the CPU), the same bins (computed in the tensor's
precision with the same float operations as ``histogram_sync_free``; float16
and bfloat16 checked against numpy's edges), the same record dtypes. Nothing
here synchronises with the host until the results are read back, once per
reduction kind (``Deferred.flush``), together with one check that no batch
held more non-finite rows than it masked (``_optimistic``). Everything runs
on the CPU too (tests), where the in-hook path stays the faster one.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from nnspec.numerics import reduce
from nnspec.numerics.reduce import HALF, STATS_FIELDS

CHUNK = 4096  # elements per row: at most CHUNK - 1 pad elements per tensor
BUDGET = 1 << 27  # padded elements per batch: bounds the extra memory of a flush (~14 B each, histograms)
BATCHED = ("stats", "histogram", "norm")  # what Deferred keeps; other reductions stay per tensor
ENV = "NNSPEC_REDUCE"  # "deferred" or "in-hook" forces a path on every device (benchmarks, tests)
DEVICES = ("cuda",)  # where the deferred path is the default: kernel launches cost more than bytes there

_HEAD = 5  # a packed histogram row: lo, hi, nan, inf, outside, then the counts


# -- the policy ----------------------------------------------------------------------------
def mode() -> str:
    """``deferred``, ``in-hook`` or ``auto`` (deferred on DEVICES only), from NNSPEC_REDUCE."""
    value = os.environ.get(ENV, "").strip().lower()
    return value if value in ("deferred", "in-hook") else "auto"


def defers(t: torch.Tensor, op: str, how: str) -> bool:
    """Whether a capture reducing ``t`` with ``op`` keeps it for a batched reduction (``how``: ``mode()``)."""
    if op not in BATCHED or how == "in-hook":
        return False
    return how == "deferred" or t.device.type in DEVICES


# -- kept tensors, reduced after the pass --------------------------------------------------
class Pending:
    """A reduction whose value ``Deferred.flush`` fills in."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: object = None


def resolved(value: object) -> object:
    """``value`` itself, or the value of a flushed Pending (a dict comes back as a copy,
    as ``Scratch.recall`` returns one: two captures of one tensor share nothing mutable)."""
    if not isinstance(value, Pending):
        return value
    if value.value is None:
        raise RuntimeError("a deferred reduction was read before Deferred.flush")
    return dict(value.value) if isinstance(value.value, dict) else value.value


@dataclass
class Deferred:
    """The tensors kept during one capture run, by reduction, until ``flush``."""

    groups: dict[tuple[str, int | None, tuple[float, ...] | None], list[tuple[Pending, torch.Tensor]]] = field(
        default_factory=dict
    )
    # keep_once's memo: (memory, shape, strides, dtype, device, version, reduction) -> (weak ref, Pending)
    _seen: dict[tuple[object, ...], tuple[weakref.ref[torch.Tensor], Pending]] = field(default_factory=dict, repr=False)

    def keep(
        self, t: torch.Tensor, op: str, bins: int | None = None, range_: tuple[float, ...] | None = None,
        absolute: bool = False,
    ) -> Pending:  # fmt: skip
        """A copy of ``t`` (its absolute values with ``absolute``) kept for ``op``; its
        value once flushed. One kernel, no host synchronisation. Integers are
        widened here, as ``reduce`` widens them; half precision stays as it is
        (half the memory) and is widened in the batch."""
        t = t.detach()
        kept = t.abs() if absolute else t.clone(memory_format=torch.contiguous_format)
        if not kept.is_floating_point():
            kept = kept.float()
        pending = Pending()
        key = (op, bins if op == "histogram" else None, tuple(range_) if op == "histogram" and range_ else None)
        self.groups.setdefault(key, []).append((pending, kept))
        return pending

    def keep_once(
        self, t: torch.Tensor, op: str, bins: int | None = None, range_: tuple[float, ...] | None = None,
        absolute: bool = False,
    ) -> Pending:  # fmt: skip
        """``keep``, once per tensor and reduction: a tensor passed on unchanged (an
        Identity, a Dropout in eval mode) gets the Pending of its first keep. Keyed
        as ``reduce.Scratch`` keys its memo (memory, shape, strides, dtype, version
        counter, which every in-place write bumps), valid while the first tensor
        lives (held weakly: its memory cannot belong to another tensor meanwhile)."""
        try:
            if t.layout != torch.strided or t.is_meta:
                raise NotImplementedError
            key = (t.data_ptr(), t.shape, t.stride(), t.dtype, t.device, t._version, op, bins, range_, absolute)
        except (RuntimeError, NotImplementedError, TypeError):  # inference tensors keep no version counter
            return self.keep(t, op, bins, range_, absolute)
        entry = self._seen.get(key)
        if entry is not None and entry[0]() is not None:
            return entry[1]
        pending = self.keep(t, op, bins, range_, absolute)
        self._seen[key] = (weakref.ref(t), pending)
        return pending

    @property
    def kept_bytes(self) -> int:
        """What the kept copies hold now (the memory this path costs during a pass)."""
        return sum(t.numel() * t.element_size() for items in self.groups.values() for _, t in items)

    def flush(self) -> None:
        """Reduce every kept tensor, fill in its Pending with values on the CPU (one
        transfer per reduction kind and dtype) and let go of the copies. A batch
        that does not fit in the device's memory is reduced one tensor at a time."""
        groups, self.groups = self.groups, {}
        self._seen.clear()
        for (op, bins, range_), items in groups.items():
            pendings, tensors = [p for p, _ in items], [t for _, t in items]
            items.clear()
            try:
                values = _together(op, bins, range_, tensors)
            except torch.cuda.OutOfMemoryError:
                values = _one_by_one(op, bins, range_, tensors)
            tensors.clear()
            for p, v in zip(pendings, values, strict=True):
                p.value = v


def _together(op: str, bins: int | None, range_: tuple[float, ...] | None, tensors: list[torch.Tensor]) -> list[object]:
    """The values of ``op`` of every tensor, batched, on the CPU."""
    if op == "stats":
        return list(stats_many(tensors).cpu().unbind(0))
    if op == "histogram":
        assert bins is not None
        return list(unpack_histograms(histogram_rows(tensors, bins, range_).cpu()))
    norms = norm_many(tensors)
    out: list[object] = [None] * len(norms)
    by_dtype: dict[torch.dtype, list[int]] = {}
    for i, v in enumerate(norms):
        by_dtype.setdefault(v.dtype, []).append(i)
    for idx in by_dtype.values():  # one stack and one transfer per dtype (float32, float64): no kernel per tensor
        for i, v in zip(idx, torch.stack([norms[i] for i in idx]).cpu().unbind(0), strict=True):
            out[i] = v
    return out


def _one_by_one(
    op: str, bins: int | None, range_: tuple[float, ...] | None, tensors: list[torch.Tensor]
) -> list[object]:
    """The values of ``op`` of every tensor by the per-tensor reductions (no batch
    buffers: what still fits when a batch does not), on the CPU."""
    out: list[object] = []
    for t in tensors:
        if op == "stats":
            out.append(reduce.stats(t).cpu())
        elif op == "histogram":
            assert bins is not None
            out.append({k: v.cpu() for k, v in reduce.histogram(t, bins, range_).items()})
        else:
            out.append(reduce.scalar(t, "norm").cpu())
    return out


# -- batching --------------------------------------------------------------------------------
def _target(t: torch.Tensor) -> torch.dtype:
    """The dtype ``reduce._float`` reduces ``t`` in."""
    return t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32


def _batches(tensors: Sequence[torch.Tensor], exact: bool = False, chunk: int = CHUNK) -> list[list[int]]:
    """Indexes of ``tensors`` in groups that can share one matrix: one dtype (and, for
    histograms, one kind of binning), at most BUDGET padded elements (a larger
    tensor alone)."""
    by_kind: dict[tuple[torch.dtype, bool], list[int]] = {}
    for i, t in enumerate(tensors):
        by_kind.setdefault((_target(t), exact and t.dtype in HALF), []).append(i)
    out: list[list[int]] = []
    for idx in by_kind.values():
        current: list[int] = []
        size = 0
        for i in idx:
            n = _rows(tensors[i].numel(), chunk) * chunk
            if current and size + n > BUDGET:
                out.append(current)
                current, size = [], 0
            current.append(i)
            size += n
        out.append(current)
    return out


def _rows(n: int, chunk: int) -> int:
    """Rows a tensor of ``n`` elements takes (an empty one takes one row of pads)."""
    return max(1, -(-n // chunk))


def _to(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on ``device`` without a host synchronisation (pinned, asynchronous)."""
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def _in_order(batches: list[list[int]], rows: list[torch.Tensor]) -> torch.Tensor:
    """The batches' rows as one tensor in the order of the tensors they came from."""
    order = [i for idx in batches for i in idx]
    out = torch.cat(rows) if len(rows) > 1 else rows[0]
    if order == sorted(order):
        return out
    inverse = torch.empty(len(order), dtype=torch.int64)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return out[_to(inverse, out.device)]


@dataclass
class _Matrix:
    """Tensors laid end to end as ``[rows, chunk]``, NaN-padded, with what says whose each row is.

    x       the values, in the batch's dtype
    seg     for each row, the tensor it belongs to (int64, on the device)
    numel   each tensor's element count (float64, on the device)
    pads    each tensor's pad count (float64, on the device)
    """

    x: torch.Tensor
    seg: torch.Tensor
    numel: torch.Tensor
    pads: torch.Tensor

    @property
    def k(self) -> int:
        return int(self.numel.shape[0])


def _matrix(tensors: Sequence[torch.Tensor], chunk: int) -> _Matrix:
    """One ``torch.cat`` of the tensors and NaN pads; one small transfer of sizes."""
    dtype = _target(tensors[0])
    device = tensors[0].device
    sizes = [t.numel() for t in tensors]
    rows = [_rows(n, chunk) for n in sizes]
    pad = torch.full((chunk,), math.nan, dtype=dtype, device=device)
    parts: list[torch.Tensor] = []
    for t, n, r in zip(tensors, sizes, rows, strict=True):
        parts.append(t.reshape(-1))
        if r * chunk > n:
            parts.append(pad[: r * chunk - n])
    x = torch.cat(parts).to(dtype).view(-1, chunk)  # cat promotes integers and halves; .to: a lone half tensor
    host = torch.tensor(rows + sizes + [r * chunk - n for r, n in zip(rows, sizes, strict=True)], dtype=torch.int64)
    meta = _to(host, device)
    k = len(tensors)
    seg = torch.repeat_interleave(torch.arange(k, device=device), meta[:k], output_size=x.shape[0])
    return _Matrix(x, seg, meta[k : 2 * k].double(), meta[2 * k :].double())


# -- row partials ------------------------------------------------------------------------------
# Each row of a matrix reduced to P_FIELDS (float64): its finite count, NaN and Inf
# counts, the sum, |x| sum and sum of squared deviations from their mean of its
# finite values, their zero count, min and max (+Inf/-Inf when it has none).
P_FIELDS = ("n", "nan", "inf", "sum", "abssum", "m2", "zeros", "min", "max")  # m2: Σ (x - row mean)²
DIRTY_ROWS = 1024  # at most this many rows per batch re-reduced with masks (NaN, Inf, pads)
Overflow = torch.Tensor | None  # a 0-d bool on the device: more rows needed masks than got them


def dirty_budget(tensors: int, dirty_rows: int | None) -> int:
    """Rows a batch of ``tensors`` re-reduces with masks: ``dirty_rows``, or by default
    room for each tensor's padded last row twice over and a few NaN rows, at most
    DIRTY_ROWS (masking costs float64 passes over these rows: fewer is faster)."""
    return dirty_rows if dirty_rows is not None else min(DIRTY_ROWS, 64 + 2 * tensors)


def _masked_partials(x: torch.Tensor) -> torch.Tensor:
    """P_FIELDS of each row of ``x``, non-finite values masked out; sums in float64
    (two passes: the row's mean, then the squared deviations from it)."""
    ok = torch.isfinite(x)
    inf = torch.tensor(math.inf, dtype=x.dtype, device=x.device)
    n = ok.sum(dim=1).double()
    nan = torch.isnan(x).sum(dim=1).double()
    f = torch.where(ok, x, 0.0).double()
    total = f.sum(dim=1)
    dev = torch.where(ok, f - (total / n.clamp(min=1))[:, None], 0.0)
    cols = [
        n, nan, x.shape[1] - n - nan, total, f.abs().sum(dim=1), dev.square().sum(dim=1),
        n - torch.count_nonzero(f, dim=1).double(),  # f's zeros less the masked values it holds as 0
        torch.where(ok, x, inf).amin(dim=1).double(),
        torch.where(ok, x, -inf).amax(dim=1).double(),
    ]  # fmt: skip
    return torch.stack(cols, dim=1)


def _fast_partials(x: torch.Tensor, moments: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """P_FIELDS of each row of ``x`` as if all its values were finite (one read per
    op, no mask: ``aminmax``, ``var_mean``, the 1- and 0-norms), and which rows
    were not (NaN and ±Inf propagate into the mean and extremes). Without
    ``moments`` only the extremes are real (a histogram needs no more)."""
    lo, hi = torch.aminmax(x, dim=1)
    lo, hi = lo.double(), hi.double()
    cols = x.shape[1]
    n = torch.full_like(lo, float(cols))
    zero = torch.zeros_like(lo)
    if moments:
        var, mean = torch.var_mean(x, dim=1, correction=0)
        total, m2 = mean.double() * cols, var.double() * cols
        # in the matrix's precision: a float64 reduction of float32 values first makes a float64 copy
        absolute = torch.linalg.vector_norm(x, 1, dim=1).double()
        zeros = cols - torch.linalg.vector_norm(x, 0, dim=1).double()  # the 0-norm counts the nonzero ones
        dirty = ~(torch.isfinite(total) & torch.isfinite(m2))  # m2: squares beyond float32's range too
    else:
        total = absolute = m2 = zeros = zero
        dirty = ~(torch.isfinite(lo) & torch.isfinite(hi))  # min and max propagate NaN and show ±Inf
    return torch.stack([n, zero, zero, total, absolute, m2, zeros, lo, hi], dim=1), dirty


def _row_partials(x: torch.Tensor, moments: bool, dirty_rows: int) -> tuple[torch.Tensor, Overflow]:
    """P_FIELDS of each row: the fast pass for all rows, then the masked one for up
    to ``dirty_rows`` rows that need it (picked on the device, no synchronisation;
    clean rows picked to fill up give the same values), and whether more rows than
    that needed it (``_optimistic`` then runs the batch again, every row masked)."""
    if x.shape[0] <= dirty_rows:
        return _masked_partials(x), None
    parts, dirty = _fast_partials(x, moments)
    pick = torch.topk(dirty.to(torch.float32), dirty_rows, sorted=False).indices
    parts.index_copy_(0, pick, _masked_partials(x[pick]))
    return parts, dirty.sum() > dirty_rows


def _optimistic(
    batches: list[list[int]], run: Callable[[list[int], int | None], tuple[torch.Tensor, Overflow]]
) -> list[torch.Tensor]:
    """``run(batch, dirty_rows)`` of every batch, with the fast pass; the host reads
    the overflow flags once, after all of them, and runs again, every row masked,
    only the batches where more rows held NaN, Inf or pads than were masked."""
    done = [run(idx, None) for idx in batches]
    flags = [f for _, f in done if f is not None]
    if not flags or not bool(torch.stack(flags).any()):
        return [rows for rows, _ in done]
    return [rows if f is None or not bool(f) else run(idx, 1 << 62)[0] for idx, (rows, f) in zip(batches, done)]


def _per_tensor(m: _Matrix, parts: torch.Tensor) -> torch.Tensor:
    """Row partials merged per tensor (``[k, 9]``): counts and sums add up, min/max
    over the rows; ``nan`` without the pads."""
    sums = parts.new_zeros((m.k, 7)).index_add_(0, m.seg, parts[:, :7])
    ext = torch.stack([parts[:, 7], -parts[:, 8]], dim=1)
    ext = ext.new_full((m.k, 2), math.inf).scatter_reduce_(0, m.seg[:, None].expand(-1, 2), ext, "amin")
    sums[:, 1] -= m.pads
    return torch.cat([sums, ext[:, :1], -ext[:, 1:]], dim=1)


# -- stats -----------------------------------------------------------------------------------
def stats_many(tensors: Sequence[torch.Tensor], chunk: int = CHUNK, dirty_rows: int | None = None) -> torch.Tensor:
    """``reduce.stats`` of each tensor, as the rows of one ``[len(tensors), 9]`` float64
    tensor (STATS_FIELDS order) on their device. ``dirty_rows``: see ``dirty_budget``."""
    if not tensors:
        return torch.empty((0, len(STATS_FIELDS)), dtype=torch.float64)
    batches = _batches(tensors, chunk=chunk)

    def run(idx: list[int], rows: int | None) -> tuple[torch.Tensor, Overflow]:
        return _stats_rows(_matrix([tensors[i] for i in idx], chunk), dirty_budget(len(idx), rows or dirty_rows))

    return _in_order(batches, _optimistic(batches, run))


def _stats_rows(m: _Matrix, dirty_rows: int) -> tuple[torch.Tensor, Overflow]:
    """The STATS_FIELDS rows of one matrix's tensors. The variance: each row's sum of
    squared deviations from its own mean, merged per tensor by Chan's formula."""
    parts, overflow = _row_partials(m.x, True, dirty_rows)
    t = _per_tensor(m, parts)
    n, nan, inf, total, absolute, _, zeros, lo, hi = t.unbind(1)
    mean = total / n
    rn = parts[:, 0]
    row_mean = parts[:, 3] / rn.clamp(min=1)
    spread = parts[:, 5] + torch.where(rn > 0, rn * (row_mean - mean[m.seg]) ** 2, 0.0)
    m2 = spread.new_zeros(m.k).index_add_(0, m.seg, spread)
    std = torch.where(n > 1, torch.sqrt(m2 / (n - 1)), math.nan)
    none = n == 0
    lo, hi = torch.where(none, math.nan, lo), torch.where(none, math.nan, hi)
    return torch.stack([m.numel, mean, std, lo, hi, absolute / n, zeros / n, nan, inf], dim=1), overflow


# -- histograms ------------------------------------------------------------------------------
def histogram_rows(
    tensors: Sequence[torch.Tensor],
    bins: int,
    range_: tuple[float, ...] | None = None,
    chunk: int = CHUNK,
    dirty_rows: int | None = None,
) -> torch.Tensor:
    """``reduce.histogram`` of each tensor packed as a float64 row: lo, hi, nan, inf,
    outside, then the ``bins`` counts (``unpack_histogram`` gives the dict back)."""
    if not tensors:
        return torch.empty((0, _HEAD + bins), dtype=torch.float64)
    batches = _batches(tensors, exact=True, chunk=chunk)

    def run(idx: list[int], rows: int | None) -> tuple[torch.Tensor, Overflow]:
        m = _matrix([tensors[i] for i in idx], chunk)
        exact = tensors[idx[0]].dtype in HALF
        return _histogram_rows(m, bins, range_, exact, dirty_budget(len(idx), rows or dirty_rows))

    return _in_order(batches, _optimistic(batches, run))


def histogram_many(
    tensors: Sequence[torch.Tensor],
    bins: int,
    range_: tuple[float, ...] | None = None,
    chunk: int = CHUNK,
    dirty_rows: int | None = None,
) -> list[dict[str, torch.Tensor]]:
    """``reduce.histogram`` of each tensor, as its dicts (on the CPU)."""
    return unpack_histograms(histogram_rows(tensors, bins, range_, chunk, dirty_rows).cpu())


def unpack_histogram(row: torch.Tensor) -> dict[str, torch.Tensor]:
    """A packed row as ``reduce.histogram``'s dict: counts, nan, inf, outside int64; lo, hi float64."""
    whole = row.to(torch.int64)
    return {
        "counts": whole[_HEAD:],
        "lo": row[0].clone(),
        "hi": row[1].clone(),
        "nan": whole[2].clone(),
        "inf": whole[3].clone(),
        "outside": whole[4].clone(),
    }


def unpack_histograms(rows: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """``unpack_histogram`` of every row of ``[k, _HEAD + bins]`` at once: a few ops per
    field for all rows, instead of a few per row (the same values and dtypes)."""
    whole = rows.to(torch.int64)
    counts = whole[:, _HEAD:].unbind(0)
    lo, hi = rows[:, 0].clone().unbind(0), rows[:, 1].clone().unbind(0)
    nan, inf, outside = (whole[:, i].clone().unbind(0) for i in (2, 3, 4))
    return [
        {"counts": c, "lo": a, "hi": b, "nan": n, "inf": i, "outside": o}
        for c, a, b, n, i, o in zip(counts, lo, hi, nan, inf, outside, strict=True)
    ]


def _range(t: torch.Tensor, range_: tuple[float, ...] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each tensor's (lo, hi), float64, from its merged partials ``t``: the given range,
    or its finite min..max widened as ``histogram_sync_free`` widens it (no finite
    value: 0 ± 0.5; one value: v ± 0.5)."""
    if range_ is not None:
        lo = torch.full((t.shape[0],), float(range_[0]), dtype=torch.float64, device=t.device)
        return lo, torch.full_like(lo, float(range_[1]))
    none = t[:, 0] == 0
    lo, hi = torch.where(none, 0.0, t[:, 7]), torch.where(none, 0.0, t[:, 8])
    same = hi <= lo
    return torch.where(same, lo - 0.5, lo), torch.where(same, hi + 0.5, hi)


def _histogram_rows(
    m: _Matrix, bins: int, range_: tuple[float, ...] | None, exact: bool, dirty_rows: int
) -> tuple[torch.Tensor, Overflow]:
    """Packed histogram rows of one matrix's tensors: bin indexes as
    ``histogram_sync_free`` computes them (the tensor's precision), every tensor's
    bins (and a spare one for NaN, Inf, outside values and pads) in one count."""
    x = m.x
    parts, overflow = _row_partials(x, False, dirty_rows)
    t = _per_tensor(m, parts)
    lo, hi = _range(t, range_)
    lo_t, hi_t = lo.to(x.dtype)[m.seg][:, None], hi.to(x.dtype)[m.seg][:, None]
    scale = (bins / (hi - lo)).to(x.dtype)[m.seg][:, None]
    inside = (x >= lo_t) & (x <= hi_t)  # False for NaN and ±Inf: no mask needed
    pos = torch.sub(x, lo_t).mul_(scale).clamp_(0, bins - 1).to(torch.int64)
    if exact:
        pos = _numpy_bins(x, pos, _edges(lo, hi, bins, range_ is None, x.dtype), m.seg)
    # a count per row, then per tensor: the atomic adds of a row's values (a ReLU's zeros
    # all in one bin) contend for that row's bins only, not for one tensor's
    rows = torch.arange(x.shape[0], device=x.device)[:, None] * (bins + 1)
    slot = pos.masked_fill_(~inside, bins).add_(rows)
    per_row = _bincount(slot.reshape(-1), x.shape[0] * (bins + 1)).view(x.shape[0], bins + 1)
    counts = per_row.new_zeros((m.k, bins + 1), dtype=torch.int64).index_add_(0, m.seg, per_row.long())
    counts = counts[:, :bins].double()
    outside = t[:, 0] - counts.sum(dim=1)
    return torch.cat([torch.stack([lo, hi, t[:, 1], t[:, 2], outside], dim=1), counts], dim=1), overflow


def _bincount(idx: torch.Tensor, size: int) -> torch.Tensor:
    """Counts of ``idx`` (int64, within 0..size-1; each count below 2^31): ``torch.bincount``
    on the CPU, a ``scatter_add_`` elsewhere (CUDA's bincount reads the max back to the host)."""
    if idx.device.type == "cpu":
        return torch.bincount(idx, minlength=size)
    return scatter_count(idx, size)


def scatter_count(idx: torch.Tensor, size: int) -> torch.Tensor:
    """``torch.bincount(idx, minlength=size)`` without reading anything back: int32 ones
    (a broadcast one, no buffer of ones) added at ``idx``; counts must stay below 2^31."""
    return torch.zeros(size, dtype=torch.int32, device=idx.device).scatter_add_(
        0, idx, torch.ones(1, dtype=torch.int32, device=idx.device).expand_as(idx)
    )


def _edges(lo: torch.Tensor, hi: torch.Tensor, bins: int, from_data: bool, dtype: torch.dtype) -> torch.Tensor:
    """``reduce.numpy_edges`` of every tensor, ``[k, bins + 1]``."""
    steps = torch.arange(bins + 1, device=lo.device)
    if from_data:
        lo_t, hi_t = lo.to(dtype)[:, None], hi.to(dtype)[:, None]
        edges = steps.to(dtype) * ((hi_t - lo_t) / bins) + lo_t
        return torch.cat([edges[:, :-1], hi_t], dim=1)
    edges64 = steps.double() * ((hi - lo)[:, None] / bins) + lo[:, None]
    return torch.cat([edges64[:, :-1], hi[:, None]], dim=1).to(dtype)


def _numpy_bins(x: torch.Tensor, idx: torch.Tensor, edges: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """``reduce.numpy_bins`` with each row's tensor's own edges."""
    bins = edges.shape[1] - 1
    flat = edges.reshape(-1)
    base = (seg * (bins + 1))[:, None]
    idx = idx.clamp(0, bins - 1)
    idx = (idx - (x < flat[base + idx]).to(torch.int64)).clamp_(min=0)
    up = (x >= flat[base + idx + 1]) & (idx != bins - 1)
    return idx + up.to(torch.int64)


# -- norms -----------------------------------------------------------------------------------
def norm_many(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``reduce.scalar(t, "norm")`` of each tensor (0-d, float32, float64 for float64
    tensors) by ``torch._foreach_norm``, a few multi-tensor kernels per dtype."""
    out: list[torch.Tensor | None] = [None] * len(tensors)
    by_dtype: dict[torch.dtype, list[int]] = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    for dtype, idx in by_dtype.items():
        group = [tensors[i] if tensors[i].is_floating_point() else tensors[i].float() for i in idx]
        norms = torch._foreach_norm(group, 2, dtype=torch.float32 if dtype in HALF else None)
        for i, v in zip(idx, norms, strict=True):
            out[i] = v
    return [v for v in out if v is not None]
