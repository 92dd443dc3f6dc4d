"""What flows through execute: ``Data`` (tensors by layer, or a tidy table) and
the ``Context`` views label their data with; the tidy tables of DESIGN §4.

Tables: stats ``layer, numel, mean, std, min, max, absmean, zero_frac, nan,
inf``; histogram ``layer, bin_start, bin_end, count``; a reduced scalar per
layer ``layer, value``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from nnspec.execute import messages
from nnspec.numerics import reduce
from nnspec.numerics.reduce import STATS_FIELDS


@dataclass
class Data:
    """What flows from transforms to marks: tensors by layer, or a table."""

    kind: str  # tensors | stats | histogram | scalar
    tensors: dict = field(default_factory=dict)
    table: pd.DataFrame | None = None
    notes: list = field(default_factory=list)
    label: str = "value"  # what a scalar table's value is, e.g. "abs | mean"
    source: str = ""  # the query's source kind: some marks draw attention or saliency differently
    edges: pd.DataFrame | None = None  # a graph's edges
    options: dict = field(default_factory=dict)  # a graph's depth, fold, direction, color
    context: Context | None = None
    layouts: dict = field(default_factory=dict)  # layer -> what each axis of a parameter is, e.g. ("in", "out")
    explorer: dict | None = None  # a graph's whole hierarchy for the page's explorer (execute/explore.py)


@dataclass
class Context:
    """What views may label their data with: the model and the batch's names."""

    model: object = None
    features: tuple = ()  # column names of a tabular input
    classes: tuple = ()  # class names of a string target
    target: object = None  # the target tensor
    tokens: tuple = ()  # token labels of a token input
    runs: list = field(default_factory=list)  # runs.Run: what views over steps read
    spec_name: str = ""


def stats_table(vectors: dict) -> pd.DataFrame:
    rows = [{"layer": layer, **reduce.stats_dict(v)} for layer, v in vectors.items()]
    return pd.DataFrame(rows, columns=("layer",) + STATS_FIELDS)


def scalar_table(values: dict) -> pd.DataFrame:
    return pd.DataFrame({"layer": list(values), "value": [float(v) for v in values.values()]})


def histogram_data(hists: dict, notes: list) -> Data:
    frames = []
    for layer, h in hists.items():
        counts = h["counts"].tolist()
        lo, hi = float(h["lo"]), float(h["hi"])
        bins = len(counts)
        starts, ends = histogram_edges(lo, hi, bins)
        frames.append(pd.DataFrame({"layer": layer, "bin_start": starts, "bin_end": ends, "count": counts}))
        nan, inf, outside = int(h["nan"]), int(h["inf"]), int(h["outside"])
        if nan or inf:
            notes.append(f"{layer}: " + messages.note_nonfinite(nan, inf))
        if outside:
            notes.append(f"{layer}: " + messages.note_outside(outside))
    return Data("histogram", table=pd.concat(frames, ignore_index=True), notes=notes)


def histogram_edges(lo: float, hi: float, bins: int) -> tuple[list[float], list[float]]:
    """Start and end of each of ``bins`` equal bins over [lo, hi]; the last ends exactly at ``hi``."""
    width = (hi - lo) / bins
    starts = [lo + i * width for i in range(bins)]
    return starts, starts[1:] + [hi]
