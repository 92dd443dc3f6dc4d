"""``heatmap``: 2-D tensors as cells, block means past the mark budget."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from nnspec.errors import SpecError
from nnspec.execute import messages as execute_messages
from nnspec.execute.data import Data
from nnspec.execute.transforms import fit_blocks
from nnspec.marks import messages
from nnspec.marks.common import (
    check_columns,
    color_scale,
    facet,
    inline,
)
from nnspec.numerics import reduce
from nnspec.query.ast import Step
from nnspec.spec.load import ViewSpec


def _as_2d(layer: str, t, mark: Step):
    if t.dim() == 1:
        return t.reshape(1, -1)
    if t.dim() == 0:
        return t.reshape(1, 1)
    if t.dim() != 2:
        raise SpecError(
            execute_messages.needs_2d(mark.name, layer, t.shape),
            mark.span,
            execute_messages.needs_2d_hint(t.shape),
        )
    return t


def heatmap_frame(data: Data, budget: int) -> tuple[pd.DataFrame, list[str]]:
    """``layer, row, col, value`` (+ ``row_end, col_end, flag``): block means past the budget."""
    per_layer = max(1, budget // max(1, len(data.tensors)))
    frames, notes = [], []
    for layer, t in data.tensors.items():
        rows, cols = fit_blocks(t.shape, per_layer)
        if (rows, cols) == tuple(t.shape):
            values = t.double()
            bad = None
            r_edges, c_edges = list(range(rows + 1)), list(range(cols + 1))
        else:
            values, bad = reduce.block_mean(t, rows, cols)
            r_edges = reduce._edges(t.shape[0], rows, "cpu").tolist()
            c_edges = reduce._edges(t.shape[1], cols, "cpu").tolist()
            notes.append(f"{layer}: " + execute_messages.note_block_mean(tuple(t.shape), (rows, cols)))
        v = values.reshape(-1).tolist()
        r_idx = [r for r in range(rows) for _ in range(cols)]
        c_idx = [c for _ in range(rows) for c in range(cols)]
        flags = _flags(v, None if bad is None else bad.reshape(-1).tolist())
        frames.append(
            pd.DataFrame(
                {
                    "layer": layer,
                    "row": [r_edges[r] for r in r_idx],
                    "col": [c_edges[c] for c in c_idx],
                    "value": [x if f == "" else math.nan for x, f in zip(v, flags)],
                    "row_end": [r_edges[r + 1] for r in r_idx],
                    "col_end": [c_edges[c + 1] for c in c_idx],
                    "flag": flags,
                }
            )
        )
        n_bad = sum(1 for f in flags if f)
        if n_bad:
            notes.append(f"{layer}: " + messages.note_nonfinite_cells(n_bad))
    return pd.concat(frames, ignore_index=True), notes


def _flags(values: list[float], bad_counts: list[float] | None) -> list[str]:
    out = []
    for i, x in enumerate(values):
        if bad_counts is not None and bad_counts[i] > 0:
            out.append(f"{int(bad_counts[i])} non-finite in block")
        elif math.isnan(x):
            out.append("NaN")
        elif math.isinf(x):
            out.append("+Inf" if x > 0 else "-Inf")
        else:
            out.append("")
    return out


def visit_heatmap(data: Data, mark: Step, view: ViewSpec):
    if data.kind != "tensors":
        raise SpecError(messages.needs_table("heatmap", ["tensors (not a table)"]), mark.span)
    data = Data(
        "tensors",
        tensors={k: _as_2d(k, t, mark) for k, t in data.tensors.items()},
        notes=data.notes,
    )
    frame, notes = heatmap_frame(data, view.max_marks)
    check_columns(mark, frame)
    flagged = bool((frame["flag"] != "").any())
    # the chart carries only what it draws; block starts label the bands
    drawn = frame[["layer", "row", "col", "value"] + (["flag"] if flagged else [])].copy()
    drawn["value"] = [_short(v) for v in drawn["value"]]
    axis = alt.Axis(labelOverlap=True, labelAngle=0)
    base = alt.Chart().encode(
        x=alt.X("col:O", title="column", axis=axis),
        y=alt.Y("row:O", title="row", axis=axis),
        tooltip=["layer:N", "row:O", "col:O", alt.Tooltip("value:Q", format=".4g")] + (["flag:N"] if flagged else []),
    )
    scale = color_scale(frame["value"], mark)
    color = alt.Color("value:Q", scale=scale, title=None)
    layers = [base.mark_rect().encode(color=color)]
    if flagged:  # NaN/Inf cells are drawn black, not dropped
        layers = [
            layers[0].transform_filter("datum.flag == ''"),
            base.mark_rect(color="black").transform_filter("datum.flag != ''"),
        ]
    if len(drawn) <= LABELLED_CELLS:  # few cells: print each value on its cell
        drawn["ink"] = _ink(drawn["value"], scale)
        ink = alt.condition("datum.ink == 'white'", alt.value("white"), alt.value("black"))
        text = base.mark_text(fontSize=10).encode(text=alt.Text("value:Q", format=".3~g"), color=ink)
        layers.append(text)
    chart = alt.layer(*layers, data=inline(drawn)) if len(layers) > 1 else layers[0].properties(data=inline(drawn))
    chart = chart.properties(**_heatmap_size(view, drawn))
    return frame, facet(chart, frame, mark), notes


LABELLED_CELLS = 64


def _ink(values: pd.Series, scale: alt.Scale) -> list[str]:
    """White text on the dark ends of the colour scale, black elsewhere."""
    finite = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    diverging = scale.to_dict().get("domainMid") == 0
    out = []
    for v in values:
        if not (isinstance(v, float) and math.isfinite(v)):
            out.append("white")
        elif diverging:
            m = max(abs(lo), abs(hi)) or 1.0
            out.append("white" if abs(v) / m > 0.6 else "black")
        else:
            out.append("white" if hi > lo and (v - lo) / (hi - lo) < 0.45 else "black")
    return out


def _heatmap_size(view: ViewSpec, drawn: pd.DataFrame) -> dict:
    """Square cells: 48 px at most, the whole grid inside about 360×300."""
    rows = max(drawn.groupby("layer")["row"].nunique())
    cols = max(drawn.groupby("layer")["col"].nunique())
    box_w, box_h = (220, 180) if drawn["layer"].nunique() > 1 else (360, 300)
    step = max(2.0, min(48.0, box_w / cols, box_h / rows))
    return {"width": view.width or round(cols * step), "height": view.height or round(rows * step)}


def _short(v: float) -> float:
    """9 significant digits: every float32 round-trips, and the JSON stays small."""
    return float(f"{v:.9g}") if math.isfinite(v) else v
