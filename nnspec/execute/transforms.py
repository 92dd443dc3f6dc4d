"""Stage 4b: captured tensors ──transforms──▶ Data (tensors, or a small table).

Tables follow DESIGN.md §4: stats ``layer, numel, mean, std, min, max,
absmean, zero_frac, nan, inf``; histogram ``layer, bin_start, bin_end,
count``; a reduced scalar per layer ``layer, value``.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch

from nnspec.compiler import messages as compiler_messages
from nnspec.errors import SpecError
from nnspec.execute import messages
from nnspec.execute.data import Data, histogram_data, scalar_table, stats_table
from nnspec.numerics import reduce
from nnspec.numerics.reductions import REDUCTIONS
from nnspec.query import catalog
from nnspec.query import messages as query_messages
from nnspec.query.ast import Step

TransformFn = Callable[[Data, Step], Data]
# every transform of the query language (nnspec.query.catalog.TRANSFORMS) by name;
# tests/test_catalog.py keeps the two equal
TRANSFORMS: dict[str, TransformFn] = {}


def transform(name: str) -> Callable[[TransformFn], TransformFn]:
    """Register the decorated function as the transform ``name``."""

    def register(fn: TransformFn) -> TransformFn:
        assert name not in TRANSFORMS, f"transform {name!r} registered twice"
        TRANSFORMS[name] = fn
        return fn

    return register


def run_transforms(data: Data, steps: tuple[Step, ...], mark: Step | None = None) -> Data:
    if data.source == "input_grads" and not steps and mark is None and data.kind == "tensors":
        return saliency(data)
    for step in steps:
        fn = TRANSFORMS.get(step.name)
        if fn is None:
            raise SpecError(query_messages.unknown_step(step.name, TRANSFORMS), step.span)
        if data.kind != "tensors":
            raise SpecError(messages.step_needs_tensors(step.name), step.span)
        out = fn(data, step)
        out.source, out.context = out.source or data.source, out.context or data.context
        data = out
    return data


def _args(step: Step) -> dict:
    """The step's arguments by name, the catalog's defaults filled in."""
    return catalog.TRANSFORMS[step.name].bind(step.args)


def _each(data: Data, fn) -> Data:
    return Data(
        "tensors",
        tensors={k: fn(k, t) for k, t in data.tensors.items()},
        notes=data.notes,
    )


@transform("abs")
def transform_abs(data: Data, step: Step) -> Data:
    return _each(data, lambda k, t: t.abs())


@transform("flatten")
def transform_flatten(data: Data, step: Step) -> Data:
    return _each(data, lambda k, t: t.reshape(t.shape[0], -1) if t.dim() > 2 else t)


# -- reductions (numerics' REDUCTIONS): registered below, by what each gives
def transform_values(data: Data, step: Step) -> Data:
    """One value per layer, or with ``dim=`` a tensor reduced along that dimension."""
    compute = REDUCTIONS[step.name].compute
    dim = _args(step).get("dim")
    if dim is None:
        values = {k: compute(t) for k, t in data.tensors.items()}
        return Data("scalar", table=scalar_table(values), notes=data.notes, label=step.name)

    def along(layer, t):
        if not -t.dim() <= dim < t.dim():
            raise SpecError(messages.dim_out_of_range(step.name, dim, layer, t.shape), step.span)
        return compute(t, dim=dim)

    return _each(data, along)


def transform_stats(data: Data, step: Step) -> Data:
    compute = REDUCTIONS[step.name].compute
    return Data(
        "stats",
        table=stats_table({k: compute(t) for k, t in data.tensors.items()}),
        notes=data.notes,
    )


def transform_histogram(data: Data, step: Step) -> Data:
    compute, args = REDUCTIONS[step.name].compute, _args(step)
    hists = {k: compute(t, **args) for k, t in data.tensors.items()}
    return histogram_data(hists, list(data.notes))


@transform("update_ratio")
def transform_update_ratio(data: Data, step: Step) -> Data:
    """A change over an optimizer step: there is none in one forward/backward pass."""
    raise SpecError(
        compiler_messages.update_ratio_needs_steps(), step.span, compiler_messages.update_ratio_needs_steps_hint()
    )


_BY_WHAT_IT_GIVES = {"value": transform_values, "stats": transform_stats, "histogram": transform_histogram}
for _name, _reduction in REDUCTIONS.items():
    if _name not in TRANSFORMS:
        TRANSFORMS[_name] = _BY_WHAT_IT_GIVES[_reduction.gives]


@transform("downsample")
def transform_downsample(data: Data, step: Step) -> Data:
    """At most ``max`` cells: near-equal blocks, each one value by ``agg`` (absmax:
    the value of largest magnitude with its sign; mean; rms; std, ddof=0)."""
    args = _args(step)
    limit, agg = args["max"], args["agg"]
    out = {}
    for layer, t in data.tensors.items():
        t2 = t.reshape(1, -1) if t.dim() == 1 else t
        if t2.dim() != 2:
            raise SpecError(
                messages.needs_2d("downsample", layer, t.shape),
                step.span,
                messages.needs_2d_hint(t.shape),
            )
        rows, cols = fit_blocks(t2.shape, limit)
        if (rows, cols) != tuple(t2.shape):
            data.notes.append(f"{layer}: " + messages.note_blocks(t2.shape, (rows, cols), agg))
            r_edges, c_edges = reduce.block_edges(t2.shape[0], rows), reduce.block_edges(t2.shape[1], cols)
            t2, _ = reduce.block_reduce(t2, r_edges, c_edges, agg)
        out[layer] = t2.reshape(-1) if t.dim() == 1 else t2
    return Data("tensors", tensors=out, notes=data.notes)


@transform("sample")
def transform_sample(data: Data, step: Step) -> Data:
    args = _args(step)
    n = args["n"]
    g = torch.Generator().manual_seed(args["seed"])
    out = {}
    for layer, t in data.tensors.items():
        flat = t.reshape(-1)
        if flat.numel() > n:
            data.notes.append(f"{layer}: " + messages.note_sampled(n, flat.numel()))
            flat = flat[sample_indexes(flat.numel(), n, g)]
        out[layer] = flat
    return Data("tensors", tensors=out, notes=data.notes)


PERMUTE_MAX = 1 << 24  # elements a permutation may cover (128 MB of indexes); past it, draws


def sample_indexes(numel: int, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` of ``range(numel)`` without replacement, sorted, uniformly; memory O(n)
    past ``PERMUTE_MAX`` (a random permutation of 400 million indexes is 3.2 GB):
    the distinct values of repeated uniform draws are a uniform subset of their size,
    and a random ``n`` of them a uniform subset of size ``n``."""
    if numel <= PERMUTE_MAX:
        return torch.randperm(numel, generator=g)[:n].sort().values
    got = torch.empty(0, dtype=torch.int64)
    while got.numel() < n:
        draw = torch.randint(numel, (n - got.numel() + n // 8 + 16,), generator=g, dtype=torch.int64)
        got = torch.unique(torch.cat([got, draw]))
    return got[torch.randperm(got.numel(), generator=g)[:n]].sort().values


@transform("channels")
def transform_channels(data: Data, step: Step) -> Data:
    """One 2-D map per channel: every dimension before the last two becomes the channel."""
    return _each(data, lambda k, t: t.reshape(-1, t.shape[-2], t.shape[-1]) if t.dim() >= 3 else t)


@transform("pca")
def transform_pca(data: Data, step: Step) -> Data:
    """Principal components of each layer's samples (first dimension = samples)."""
    k = _args(step)["k"]
    frames, notes = [], list(data.notes)
    for layer, t in data.tensors.items():
        if t.dim() < 2 or t.shape[0] < 2:
            raise SpecError(messages.pca_needs_samples(layer, t.shape), step.span)
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise SpecError(messages.pca_nonfinite(layer, bad), step.span)
        scores, ratio = pca(t.reshape(t.shape[0], -1), k)
        frame = pd.DataFrame({"layer": layer, "sample": range(t.shape[0])})
        for i in range(scores.shape[1]):
            frame[f"pc{i + 1}"] = scores[:, i].tolist()
        labels = _sample_labels(data.context, t.shape[0])
        if labels is not None:
            frame["label"] = labels
        frames.append(frame)
        explained = ", ".join(f"pc{i + 1} {100 * r:.1f}%" for i, r in enumerate(ratio.tolist()))
        notes.append(f"{layer}: explained variance {explained}")
    return Data("pca", table=pd.concat(frames, ignore_index=True), notes=notes, context=data.context)


def pca(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores on the first ``k`` components and their share of the variance.

    SVD of the centred float64 matrix; each component's sign is fixed so that
    its largest loading is positive (SVD alone leaves it arbitrary).
    """
    x = x.double()
    x = x - x.mean(dim=0, keepdim=True)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    k = min(k, s.numel())
    signs = torch.sign(vh[:k].gather(1, vh[:k].abs().argmax(dim=1, keepdim=True))).squeeze(1)
    signs[signs == 0] = 1
    scores = u[:, :k] * s[:k] * signs
    total = (s**2).sum()
    ratio = (s[:k] ** 2) / total if total > 0 else torch.zeros(k, dtype=torch.float64)
    return scores, ratio


def _sample_labels(ctx, n: int):
    """The target of each sample (class names where there are), or the tokens
    when the samples are the positions of one sequence."""
    if ctx is None:
        return None
    if ctx.tokens and len(ctx.tokens) == n and (ctx.target is None or ctx.target.shape[0] != n):
        return [f"{i}:{t}" for i, t in enumerate(ctx.tokens)]
    if ctx.target is None or ctx.target.shape[0] != n:
        return None
    y = ctx.target.reshape(ctx.target.shape[0], -1)[:, 0] if ctx.target.dim() > 1 else ctx.target
    if ctx.classes:
        return [ctx.classes[int(i)] for i in y.tolist()]
    return y.tolist()


def saliency(data: Data) -> Data:
    """``input_grads`` with no steps: |grad| max over channels per image, or mean
    |grad| per feature for tabular input (named after the data set's columns)."""
    (g,) = data.tensors.values()
    if g.dim() == 4:
        sal = g.abs().amax(dim=1)
        note = "|gradient| of the loss w.r.t. each pixel, max over channels"
        return Data(
            "tensors", tensors={"input": sal}, notes=[*data.notes, note], source="saliency", context=data.context
        )
    if g.dim() == 2:
        names = data.context.features if data.context and len(data.context.features) == g.shape[1] else ()
        names = list(names) or [f"feature {i}" for i in range(g.shape[1])]
        frame = pd.DataFrame({"feature": names, "value": g.abs().mean(dim=0).tolist()})
        note = "mean |gradient| of the loss w.r.t. each input feature over the batch"
        return Data("features", table=frame, notes=[*data.notes, note], label="mean |input grad|", context=data.context)
    return data


def fit_blocks(shape, limit: int) -> tuple[int, int]:
    """The largest rows×cols grid ≤ limit cells that keeps the aspect ratio."""
    r, c = int(shape[0]), int(shape[1])
    if r * c <= limit:
        return r, c
    scale = (limit / (r * c)) ** 0.5
    rows, cols = max(1, min(r, int(r * scale))), max(1, min(c, int(c * scale)))
    while rows * cols > limit:
        if rows >= cols and rows > 1:
            rows -= 1
        else:
            cols -= 1
    if rows == 1 and cols < c:  # a very wide matrix: use the room the rows leave
        cols = min(c, limit)
    if cols == 1 and rows < r:
        rows = min(r, limit)
    return rows, cols
