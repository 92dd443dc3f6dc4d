"""Stage 4b: captured tensors ──transforms──▶ Data (tensors, or a small table).

Tables follow DESIGN.md §4: stats ``layer, numel, mean, std, min, max,
absmean, zero_frac, nan, inf``; histogram ``layer, bin_start, bin_end,
count``; a reduced scalar per layer ``layer, value``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from . import messages, reduce
from .compiler import ViewPlan
from .errors import SpecError
from .query_ast import Step
from .reduce import STATS_FIELDS

HIST_COLUMNS = ("layer", "bin_start", "bin_end", "count")
DEFAULT_BINS = 50


@dataclass
class Data:
    """What flows from transforms to marks: tensors by layer, or a table."""

    kind: str  # tensors | stats | histogram | scalar
    tensors: dict = field(default_factory=dict)
    table: pd.DataFrame | None = None
    notes: list = field(default_factory=list)
    label: str = "value"  # what a scalar table's value is, e.g. "abs | mean"


def gather(vp: ViewPlan, captured) -> Data:
    """The captures of one view as Data; capture problems become notes or errors."""
    notes: list[str] = []
    values = {}
    for layer, c in zip(vp.layers, vp.captures):
        if c.key in captured.errors:
            problem = captured.errors[c.key]
            if c.index is not None and "index" in problem:
                raise SpecError(problem, c.index.span)
            notes.append(problem)
            continue
        notes.extend(captured.notes.get(c.key, ()))
        values[layer] = captured.values[c.key]
    if not values:
        raise SpecError(
            notes[0] if notes else messages.no_match(str(vp.query.source)),
            vp.query.source.span,
        )
    reduction = vp.captures[0].reduce
    if reduction is None:
        return Data("tensors", tensors=values, notes=notes)
    if reduction.op == "stats":
        return Data("stats", table=stats_table(values), notes=notes)
    if reduction.op == "histogram":
        return _histogram_data(values, notes)
    return Data("scalar", table=_scalar_table(values), notes=notes, label=f"{vp.query.source.kind} | {reduction}")


def stats_table(vectors: dict) -> pd.DataFrame:
    rows = [{"layer": layer, **reduce.stats_dict(v)} for layer, v in vectors.items()]
    return pd.DataFrame(rows, columns=("layer",) + STATS_FIELDS)


def _scalar_table(values: dict) -> pd.DataFrame:
    return pd.DataFrame({"layer": list(values), "value": [float(v) for v in values.values()]})


def _histogram_data(hists: dict, notes: list) -> Data:
    frames = []
    for layer, h in hists.items():
        counts = h["counts"].tolist()
        lo, hi = float(h["lo"]), float(h["hi"])
        bins = len(counts)
        width = (hi - lo) / bins
        starts = [lo + i * width for i in range(bins)]
        ends = starts[1:] + [hi]
        frames.append(pd.DataFrame({"layer": layer, "bin_start": starts, "bin_end": ends, "count": counts}))
        nan, inf, outside = int(h["nan"]), int(h["inf"]), int(h["outside"])
        if nan or inf:
            notes.append(f"{layer}: " + messages.note_nonfinite(nan, inf))
        if outside:
            notes.append(f"{layer}: " + messages.note_outside(outside))
    return Data("histogram", table=pd.concat(frames, ignore_index=True), notes=notes)


def run_transforms(data: Data, steps: tuple[Step, ...]) -> Data:
    for step in steps:
        fn = globals().get(f"transform_{step.name}")
        if fn is None:
            raise SpecError(messages.unknown_step(step.name, TRANSFORM_NAMES), step.span)
        if data.kind != "tensors":
            raise SpecError(messages.step_needs_tensors(step.name), step.span)
        data = fn(data, step)
    return data


def _each(data: Data, fn) -> Data:
    return Data(
        "tensors",
        tensors={k: fn(k, t) for k, t in data.tensors.items()},
        notes=data.notes,
    )


def transform_abs(data: Data, step: Step) -> Data:
    return _each(data, lambda k, t: t.abs())


def _reduce(data: Data, step: Step) -> Data:
    dim = step.arg("dim")
    if dim is None:
        values = {k: reduce.scalar(t, step.name) for k, t in data.tensors.items()}
        return Data("scalar", table=_scalar_table(values), notes=data.notes, label=step.name)

    def along(layer, t):
        if not -t.dim() <= dim < t.dim():
            raise SpecError(messages.dim_out_of_range(step.name, dim, layer, t.shape), step.span)
        return reduce.scalar(t, step.name, dim)

    return _each(data, along)


transform_mean = transform_max = transform_min = transform_std = transform_norm = _reduce


def transform_flatten(data: Data, step: Step) -> Data:
    return _each(data, lambda k, t: t.reshape(t.shape[0], -1) if t.dim() > 2 else t)


def transform_stats(data: Data, step: Step) -> Data:
    return Data(
        "stats",
        table=stats_table({k: reduce.stats(t) for k, t in data.tensors.items()}),
        notes=data.notes,
    )


def transform_histogram(data: Data, step: Step) -> Data:
    bins = step.arg("bins", DEFAULT_BINS)
    rng = step.arg("range")
    hists = {k: reduce.histogram(t, bins, tuple(rng) if rng else None) for k, t in data.tensors.items()}
    return _histogram_data(hists, list(data.notes))


def transform_downsample(data: Data, step: Step) -> Data:
    limit = step.arg("max", 10_000)
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
            data.notes.append(f"{layer}: " + messages.note_block_mean(t2.shape, (rows, cols)))
            t2, _ = reduce.block_mean(t2, rows, cols)
        out[layer] = t2.reshape(-1) if t.dim() == 1 else t2
    return Data("tensors", tensors=out, notes=data.notes)


def transform_sample(data: Data, step: Step) -> Data:
    n = step.arg("n", 1000)
    g = torch.Generator().manual_seed(step.arg("seed", 0))
    out = {}
    for layer, t in data.tensors.items():
        flat = t.reshape(-1)
        if flat.numel() > n:
            data.notes.append(f"{layer}: " + messages.note_sampled(n, flat.numel()))
            flat = flat[torch.randperm(flat.numel(), generator=g)[:n].sort().values]
        out[layer] = flat
    return Data("tensors", tensors=out, notes=data.notes)


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


TRANSFORM_NAMES = tuple(n[len("transform_") :] for n in list(globals()) if n.startswith("transform_"))
