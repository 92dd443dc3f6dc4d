"""``histogram``, ``bar`` and ``line``."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from nnspec.errors import SpecError
from nnspec.execute.data import Data
from nnspec.execute.transforms import transform_histogram
from nnspec.marks import messages
from nnspec.marks.common import (
    MAX_SIZE,
    check_columns,
    facet,
    field,
    in_order,
    inline,
    props,
    size,
    tip,
    tooltip,
)
from nnspec.numerics import reduce
from nnspec.query.ast import Step
from nnspec.spec.load import ViewSpec


def visit_histogram(data: Data, mark: Step, view: ViewSpec):
    if data.kind == "tensors":
        data = transform_histogram(data, Step("histogram", (), mark.span))
    if data.kind != "histogram":
        raise SpecError(
            messages.needs_table("histogram", ["layer", "bin_start", "bin_end", "count"]),
            mark.span,
        )
    frame = data.table
    check_columns(mark, frame)
    y_scale = alt.Scale(type="symlog") if mark.arg("log") else alt.Undefined
    color = alt.Color(**field(mark.arg("color"), "N")) if mark.arg("color") else alt.ColorValue(value="#4c78a8")
    chart = props(
        alt.Chart(inline(frame))
        .mark_bar(binSpacing=0)
        .encode(
            x=alt.X(**field("bin_start", "Q"), bin="binned", title="value"),
            x2=alt.X2(**field("bin_end")),
            y=alt.Y(**field("count", "Q"), scale=y_scale, title="count"),
            color=color,
            tooltip=[
                tip("layer", "N"),
                tip("bin_start", "Q", format=".4g"),
                tip("bin_end", "Q", format=".4g"),
                tip("count", "Q"),
            ],
        ),
        **size(view, frame["layer"].nunique()),
    )
    return frame, facet(chart, frame, mark), []


# --- bar and line ---------------------------------------------------------------
# the default x and y of each kind of table drawn as bars or lines
TABLE_AXES = {
    "scalar": ("layer", "value"),
    "stats": ("layer", "absmean"),
    "histogram": ("bin_start", "count"),
    "features": ("feature", "value"),
    "function": ("x", "value"),
}


def _series_frame(data: Data, mark: Step, view: ViewSpec) -> tuple[pd.DataFrame, str, str, list[str]]:
    """A table to draw as bars/lines, and its default x and y."""
    if data.kind in TABLE_AXES:
        return (data.table, *TABLE_AXES[data.kind], [])
    if data.kind != "tensors":
        raise SpecError(messages.needs_table(mark.name, ["layer", "value"]), mark.span)
    dims = {t.dim() for t in data.tensors.values()}
    if dims - {0, 1}:
        bad = next((k, t) for k, t in data.tensors.items() if t.dim() > 1)
        raise SpecError(messages.needs_1d(mark.name, bad[0], bad[1].shape), mark.span, messages.needs_1d_hint())
    frames, notes = [], []
    per_layer = max(1, view.max_marks // len(data.tensors))
    for layer, t in data.tensors.items():
        t = t.reshape(-1).double()
        index = list(range(t.numel()))
        if t.numel() > per_layer:
            means, _ = reduce.block_mean(t.reshape(1, -1), 1, per_layer)
            edges = reduce._edges(t.numel(), per_layer, "cpu").tolist()
            index, t = edges[:-1], means.reshape(-1)
            notes.append(f"{layer}: " + messages.note_block_means_1d(len(edges) - 1, edges[-1]))
        frames.append(pd.DataFrame({"layer": layer, "index": index, "value": t.tolist()}))
    return pd.concat(frames, ignore_index=True), "index", "value", notes


def _xy_chart(data: Data, mark: Step, view: ViewSpec, kind: str):
    frame, x_default, y_default, notes = _series_frame(data, mark, view)
    check_columns(mark, frame)
    x, y = mark.arg("x", x_default), mark.arg("y", y_default)
    nominal = x in ("layer", "feature") or frame[x].dtype == object or str(frame[x].dtype) in ("string", "str")
    angle = 0 if nominal and frame[x].nunique() <= 4 else -45
    x_enc = (
        alt.X(**field(x, "N"), sort=None, title=x, axis=alt.Axis(labelAngle=angle))
        if nominal
        else alt.X(**field(x, "Q"), title=x)
    )
    y_title = data.label if (y == "value" and data.kind in ("scalar", "features")) else y
    y_enc = alt.Y(
        **field(y, "Q"),
        title=y_title,
        scale=alt.Scale(type="symlog") if mark.arg("log") else alt.Undefined,
    )
    enc = {
        "x": x_enc,
        "y": y_enc,
        "tooltip": tooltip(frame),
    }
    by = "function" if data.kind == "function" else "layer"
    # a function's curve is named by its legend, even alone (the title says `function *`)
    named = by in frame and (data.kind == "function" or frame[by].nunique() > 1)
    color = mark.arg("color") or (by if named and x != by else None)
    if color:
        enc["color"] = alt.Color(**field(color, "N"), sort=in_order(frame[color]))
    if data.kind == "function":  # the curve solid, its derivative dashed
        enc["strokeDash"] = alt.StrokeDash(**field("kind", "N"), sort=["f(x)", "f'(x)"], title=None)
        enc["detail"] = alt.Detail(**field("function", "N"))
    base = alt.Chart(inline(frame))
    line = base.mark_line(point=data.kind != "function" and len(frame) <= 200)
    chart = (base.mark_bar() if kind == "bar" else line).encode(**enc)
    dims = size(view, 1)
    if nominal and frame[x].nunique() > 16 and not view.width:
        # one readable band per layer, the chart grows (up to MAX_SIZE: then the bands narrow)
        dims["width"] = alt.Step(18) if 18 * frame[x].nunique() <= MAX_SIZE else MAX_SIZE
    chart = props(chart, **dims)
    if mark.arg("facet"):
        chart = facet(chart, frame, mark, independent=("y",))
    name = "layer" if "layer" in frame else x
    nonfinite = [f"{r[name]}: {y} is {r[y]}" for _, r in frame.iterrows() if not math.isfinite(float(r[y]))]
    return frame, chart, notes + nonfinite


def visit_bar(data: Data, mark: Step, view: ViewSpec):
    return _xy_chart(data, mark, view, "bar")


def visit_line(data: Data, mark: Step, view: ViewSpec):
    return _xy_chart(data, mark, view, "line")


def visit_scatter(data: Data, mark: Step, view: ViewSpec):
    """Points: principal components (``pca``) coloured by the target, or any table's columns."""
    if data.kind == "pca":
        frame, x_default, y_default = data.table, "pc1", "pc2" if "pc2" in data.table else "pc1"
    elif data.table is not None:
        frame, x_default, y_default = data.table, data.table.columns[1], data.table.columns[-1]
    else:
        raise SpecError(messages.needs_table("scatter", ["two numeric columns, e.g. from '| pca'"]), mark.span)
    assert frame is not None  # every branch above gives a table
    check_columns(mark, frame)
    x, y = mark.arg("x", x_default), mark.arg("y", y_default)
    enc = {"x": alt.X(**field(x, "Q")), "y": alt.Y(**field(y, "Q")), "tooltip": tooltip(frame)}
    color = mark.arg("color") or ("label" if "label" in frame else None)
    if color:
        numeric = frame[color].dtype.kind in "fiu"
        enc["color"] = alt.Color(**field(color, "Q" if numeric else "N"), title=color)
    chart = props(alt.Chart(inline(frame)).mark_circle(size=40, opacity=0.8).encode(**enc), **size(view, 1))
    if "layer" in frame and frame["layer"].nunique() > 1:
        chart = facet(chart, frame, mark)
    return frame, chart, []
