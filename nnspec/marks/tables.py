"""``box`` (five numbers per layer) and ``table`` (any table as text)."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from nnspec.errors import SpecError
from nnspec.execute import messages as execute_messages
from nnspec.execute.data import Data, stats_table
from nnspec.marks import messages
from nnspec.marks.common import (
    check_columns,
    inline,
    size,
    tooltip,
)
from nnspec.numerics import reduce
from nnspec.query.ast import Step
from nnspec.spec.load import ViewSpec


def box_frame(data: Data) -> pd.DataFrame:
    """Five numbers per layer over all finite elements: whiskers at min and max."""
    import torch

    rows = []
    for layer, t in data.tensors.items():
        flat = t.reshape(-1).double()
        finite = flat[torch.isfinite(flat)].sort().values
        n = finite.numel()
        q = [_quantile(finite, p) for p in (0.0, 0.25, 0.5, 0.75, 1.0)] if n else [math.nan] * 5
        rows.append(
            {
                "layer": layer,
                "min": q[0],
                "q1": q[1],
                "median": q[2],
                "q3": q[3],
                "max": q[4],
                "numel": flat.numel(),
                "nonfinite": flat.numel() - n,
            }
        )
    return pd.DataFrame(rows)


def _quantile(sorted_t, p: float) -> float:
    """Linear interpolation between closest ranks, as numpy's default."""
    pos = p * (sorted_t.numel() - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, sorted_t.numel() - 1)
    return float(sorted_t[lo] + (sorted_t[hi] - sorted_t[lo]) * (pos - lo))


def visit_box(data: Data, mark: Step, view: ViewSpec):
    if data.kind != "tensors":
        raise SpecError(execute_messages.step_needs_tensors("box"), mark.span)
    frame = box_frame(data)
    check_columns(mark, frame)
    x = alt.X("layer:N", sort=None)
    base = alt.Chart().encode(
        x=x,
        tooltip=tooltip(frame),
    )
    chart = alt.layer(
        base.mark_rule().encode(y=alt.Y("min:Q", title="value", scale=_whole(frame)), y2="max:Q"),
        base.mark_bar(size=18).encode(y="q1:Q", y2="q3:Q"),
        base.mark_tick(color="white", size=18).encode(y="median:Q"),
        data=inline(frame),
    ).properties(**size(view, 1))
    notes = [f"{r.layer}: " + messages.note_nonfinite_values(r.nonfinite) for r in frame.itertuples() if r.nonfinite]
    return frame, chart, notes + [messages.note_whiskers()]


# --- table ----------------------------------------------------------------------
def visit_table(data: Data, mark: Step, view: ViewSpec):
    if data.kind == "tensors":
        frame = stats_table({k: reduce.stats(t) for k, t in data.tensors.items()})
    else:
        frame = data.table
    check_columns(mark, frame)
    texts = {c: [_fmt(v) for v in frame[c]] for c in frame.columns}
    # each column as wide as its longest text (about 6.5 px a character at 11 px)
    widths = {c: 14 + 6.5 * max([len(str(c))] + [len(t) for t in texts[c]]) for c in frame.columns}
    starts, x = {}, 0.0
    for c in frame.columns:
        starts[c], x = x, x + widths[c]
    cells = [{"row": -1, "x": starts[c], "text": str(c), "head": True} for c in frame.columns]
    for c in frame.columns:
        cells += [{"row": i, "x": starts[c], "text": t, "head": False} for i, t in enumerate(texts[c])]
    scale_x = alt.Scale(domain=[0, x], range=[0, x])
    base = alt.Chart().encode(x=alt.X("x:Q", axis=None, scale=scale_x), y=alt.Y("row:O", axis=None), text="text:N")
    chart = (
        alt.layer(
            base.mark_text(align="left", baseline="middle", fontSize=11, fontWeight="bold").transform_filter(
                "datum.head"
            ),
            base.mark_text(align="left", baseline="middle", fontSize=11).transform_filter("!datum.head"),
            data=inline(pd.DataFrame(cells)),
        )
        .properties(width=view.width or round(x), height=view.height or 18 * (len(frame) + 1))
        .configure_view(stroke=None)
    )
    return frame, chart, []


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Inf" if value > 0 else "-Inf"
        return f"{value:.4g}"
    return str(value)


def _whole(frame: pd.DataFrame) -> alt.Scale:
    """A value axis that holds every whisker (the layers would otherwise size it from one field)."""
    lo, hi = frame["min"].min(), frame["max"].max()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return alt.Scale()
    pad = (hi - lo) * 0.05 or 1.0
    return alt.Scale(domain=[float(lo - pad), float(hi + pad)], nice=False)
