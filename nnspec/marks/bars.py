"""``histogram``, ``bar`` and ``line``."""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import pandas as pd

from nnspec.errors import SpecError
from nnspec.execute.data import Data
from nnspec.execute.transforms import transform_histogram
from nnspec.marks import messages
from nnspec.marks.common import (
    BAND,
    HORIZONTAL_BARS,
    MAX_SIZE,
    category_width,
    check_columns,
    declare,
    facet,
    field,
    in_order,
    inline,
    legend_pick,
    log_axis,
    log_meta,
    log_scale,
    nominal_axis,
    opacity,
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
    assert frame is not None  # a histogram is a table
    check_columns(mark, frame)
    log = log_meta(frame["count"].tolist(), "count") if mark.arg("log") else None
    y_scale = log_scale(log) if log else alt.Undefined
    color = alt.Color(**field(mark.arg("color"), "N")) if mark.arg("color") else alt.ColorValue(value="#4c78a8")
    chart = props(
        alt.Chart(inline(frame))
        .mark_bar(binSpacing=0)
        .encode(
            x=alt.X(**field("bin_start", "Q"), bin="binned", title="value"),
            x2=alt.X2(**field("bin_end")),
            # unstacked: a bar rises from the axis's foot, which a log scale (on the page's toggle too) needs
            y=alt.Y(
                **field("count", "Q"),
                scale=y_scale,
                title="count",
                axis=log_axis(log, frame["count"].tolist()),
                stack=None,
            ),
            color=color,
            opacity=opacity("layer"),
            tooltip=[
                tip("layer", "N"),
                tip("bin_start", "Q", format=".4g"),
                tip("bin_end", "Q", format=".4g"),
                tip("count", "Q"),
            ],
        ),
        **size(view, frame["layer"].nunique()),
    )
    meta = {"layers": list(dict.fromkeys(frame["layer"])), "layer_field": "layer", "log": log}
    return frame, declare(facet(chart, frame, mark), "histogram", **meta), []


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
    if data.kind in TABLE_AXES and data.table is not None:
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
    n = int(frame[x].nunique())
    dims = size(view, 1)
    lie = kind == "bar" and nominal and n > HORIZONTAL_BARS and not mark.arg("facet")
    log = log_meta(frame[y].tolist(), y, "x" if lie else "y") if mark.arg("log") else None
    y_title = data.label if (y == "value" and data.kind in ("scalar", "features")) else y
    by = "function" if data.kind == "function" else "layer"
    functions = list(dict.fromkeys(frame["function"])) if data.kind == "function" else []
    if len(functions) == 1 and y == "value":  # one curve: the axis names it
        y_title = f"{functions[0]}(x), {functions[0]}'(x)"
    value = log_axis(log, frame[y].tolist())
    value_enc = {**field(y, "Q"), "title": y_title, "scale": log_scale(log) if log else alt.Undefined, "axis": value}
    if kind == "bar" and (log or frame[x].is_unique):  # bars from the axis's foot: on a log scale too
        value_enc["stack"] = None
    if lie:  # one row a bar, as tall as it needs (up to MAX_SIZE: then the rows narrow)
        cat = alt.Y(**field(x, "N"), sort=None, title=x, axis=alt.Axis(labelLimit=240))
        enc: dict[str, Any] = {"y": cat, "x": alt.X(**value_enc)}
        if not view.height:
            dims["height"] = alt.Step(BAND) if BAND * n <= MAX_SIZE else MAX_SIZE
    else:
        band = 0.0
        if nominal:
            dims["width"], band = category_width(view, n, dims["width"])
        x_enc = (
            alt.X(**field(x, "N"), sort=None, title=x, axis=nominal_axis(list(frame[x].unique()), band))
            if nominal
            else alt.X(**field(x, "Q"), title=x, axis=alt.Axis(labelFlush=False, labelOverlap=True, labelSeparation=6))
        )
        enc = {"x": x_enc, "y": alt.Y(**value_enc)}
    enc["tooltip"] = tooltip(frame)
    # a function's curve is named by its legend, even alone
    named = by in frame and (data.kind == "function" or frame[by].nunique() > 1)
    color = mark.arg("color") or (by if named and x != by else None)
    pick = None
    if color:
        pick = legend_pick(color)
        enc["color"] = alt.Color(**field(color, "N"), sort=in_order(frame[color]))
    layer_field = "layer" if "layer" in frame else None
    if layer_field or pick is not None:
        enc["opacity"] = opacity(layer_field, pick)
    if data.kind == "function":  # the curve solid, its derivative dashed
        enc["strokeDash"] = alt.StrokeDash(**field("kind", "N"), sort=["f(x)", "f'(x)"], title=None)
        enc["detail"] = alt.Detail(**field("function", "N"))
    base = alt.Chart(inline(frame))
    line = base.mark_line(point=data.kind != "function" and len(frame) <= 200)
    chart = (base.mark_bar() if kind == "bar" else line).encode(**enc)
    if pick is not None:
        chart = chart.add_params(pick)
    chart = props(chart, **dims)
    if mark.arg("facet"):
        chart = facet(chart, frame, mark, independent=("y",))
    name = "layer" if "layer" in frame else x
    nonfinite = [f"{r[name]}: {y} is {r[y]}" for _, r in frame.iterrows() if not math.isfinite(float(r[y]))]
    meta = {
        "layers": list(dict.fromkeys(frame["layer"])) if layer_field else None,
        "layer_field": layer_field,
        "log": log,
        "colors": [{"field": color}] if color in ("run", "type") else None,
        "functions": functions or None,
    }
    return frame, declare(chart, kind, **meta), notes + nonfinite


def visit_bar(data: Data, mark: Step, view: ViewSpec):
    return _xy_chart(data, mark, view, "bar")


def visit_line(data: Data, mark: Step, view: ViewSpec):
    return _xy_chart(data, mark, view, "line")


def visit_scatter(data: Data, mark: Step, view: ViewSpec):
    """Points: principal components (``pca``) coloured by the target, or any table's columns."""
    if data.kind == "pca" and data.table is not None:
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
        # classes (pca's label) and any column of few values are categories, not a continuous scale
        numeric = frame[color].dtype.kind in "fiu" and not (color == "label" or frame[color].nunique() <= 10)
        order = alt.Undefined if numeric else in_order(frame[color])
        enc["color"] = alt.Color(**field(color, "Q" if numeric else "N"), title=color, sort=order)
    chart = props(alt.Chart(inline(frame)).mark_circle(size=40, opacity=0.8).encode(**enc), **size(view, 1))
    if "layer" in frame and frame["layer"].nunique() > 1:
        chart = facet(chart, frame, mark)
    layers = list(dict.fromkeys(frame["layer"])) if "layer" in frame else None
    return frame, declare(chart, "scatter", layers=layers), []
