"""Charts over training steps: ``line`` (a value, or stats as bands) and
``ridgeline`` (a histogram per recorded step, TensorBoard's distributions).

Several runs: ``color=run`` and one panel per layer. The first step at which
a run saw a NaN or Inf is marked on every chart of that run: a red dashed
rule on lines, a red outline on that step's ridge.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from nnspec.errors import SpecError
from nnspec.execute.data import Data
from nnspec.marks import messages
from nnspec.marks.common import (
    FACET_COLUMNS,
    check_columns,
    clamp,
    field,
    in_order,
    inline,
    props,
    size,
    tip,
    tooltip,
)
from nnspec.query.ast import Step
from nnspec.spec.load import ViewSpec

SERIES_KINDS = ("series", "stats_series", "histogram_series")
RED = "#c0392b"
MAX_RIDGES = 24
RIDGE_HEIGHT = 16
RIDGE_OVERLAP = 1.6


def _with_nonfinite(frame: pd.DataFrame, data: Data) -> pd.DataFrame:
    """Each row knows its run's first NaN/Inf step (null if none), so one
    dataset serves the chart, its marks and any facet."""
    first = data.options.get("nonfinite", {})
    return frame.assign(nonfinite_at=frame["run"].map(lambda r: first.get(r)).astype("Int64").astype(object))


def _colour(frame: pd.DataFrame, data: Data, mark: Step):
    if mark.arg("color"):
        return mark.arg("color")
    if data.options.get("runs"):
        return "run"
    return "layer" if frame["layer"].nunique() > 1 and data.kind != "stats_series" else None


def _panels(chart, frame: pd.DataFrame, data: Data, mark: Step):
    """One panel per layer when colour says the run, or bands would overlap (or facet= asks)."""
    apart = data.options.get("runs") or data.kind == "stats_series"
    by = mark.arg("facet") or ("layer" if apart and frame["layer"].nunique() > 1 else None)
    if by is None:
        return chart
    order = in_order(frame[by])
    return chart.facet(facet=alt.Facet(**field(by, "N"), sort=order, title=None), columns=FACET_COLUMNS).resolve_scale(
        y="independent"
    )


def visit_steps_line(data: Data, mark: Step, view: ViewSpec):
    frame = data.table
    check_columns(mark, frame)
    stats = data.kind == "stats_series"
    y = mark.arg("y", "mean" if stats else "value")
    if y not in frame:
        raise SpecError(messages.unknown_column(mark.name, y, list(frame.columns)), mark.span)
    colour = _colour(frame, data, mark)
    chart_frame = _with_nonfinite(frame, data)
    base = alt.Chart(inline(chart_frame))
    x = alt.X(**field("step", "Q"), title="step")
    enc = {"x": x}
    if colour:
        enc["color"] = alt.Color(**field(colour, "N"), sort=in_order(frame[colour]))
    if data.options.get("runs") and colour != "run":  # each run its own line: dashes and point shapes tell them apart
        order = list(dict.fromkeys(frame["run"]))
        enc["strokeDash"] = alt.StrokeDash(
            **field("run", "N"), sort=order, legend=None
        )  # the shape legend names the runs
        enc["shape"] = alt.Shape(**field("run", "N"), sort=order)
    if colour != "layer" and frame["layer"].nunique() > 1 and not data.options.get("runs") and not stats:
        enc["detail"] = alt.Detail(**field("layer", "N"))  # color= picked another column: still one line per layer
    y_title = data.label if y == "value" else (f"{y} of {data.label}" if stats else y)
    log = _log_scale(frame, y) if mark.arg("log") else alt.Undefined
    layers = []
    if stats and mark.arg("y") is None:  # min..max and mean±std bands under the mean
        layers.append(
            base.mark_area(opacity=0.12).encode(
                y=alt.Y(**field("min", "Q"), scale=log), y2=alt.Y2(**field("max")), **enc
            )
        )
        spread = base.transform_calculate(lo="datum.mean - datum.std", hi="datum.mean + datum.std")
        layers.append(
            spread.mark_area(opacity=0.25).encode(y=alt.Y(**field("lo", "Q")), y2=alt.Y2(**field("hi")), **enc)
        )
        y_title = "mean; bands ±std, min..max"
    line = base.mark_line(point=len(frame) <= 200).encode(
        y=alt.Y(**field(y, "Q"), title=y_title, scale=log, axis=alt.Axis(format="~g")), tooltip=tooltip(frame), **enc
    )
    layers.append(line)
    if data.options.get("nonfinite"):
        rule = base.transform_filter("datum.nonfinite_at != null").transform_aggregate(
            step="min(nonfinite_at)", groupby=["run"]
        )
        tips = [tip("run", "N"), tip("step", "Q", title="first NaN/Inf at step")]
        layers.append(
            rule.mark_rule(color=RED, strokeDash=[4, 3], strokeWidth=2).encode(
                x=alt.X(**field("step", "Q")), tooltip=tips
            )
        )
    panels = frame["layer"].nunique() if (data.options.get("runs") or stats) else 1
    chart = props(alt.layer(*layers), **size(view, panels))
    return chart_frame, _panels(chart, frame, data, mark), []


def _log_scale(frame: pd.DataFrame, y: str) -> alt.Scale:
    """log=true: a log scale when every value is > 0 (norms, ratios), else symlog (zeros, signs)."""
    values = pd.to_numeric(frame[y], errors="coerce")
    finite = values[values.map(lambda v: v == v and abs(v) != float("inf"))]
    return alt.Scale(type="log") if len(finite) and (finite > 0).all() else alt.Scale(type="symlog")


def visit_ridgeline(data: Data, mark: Step, view: ViewSpec):
    """A histogram per recorded step, stacked top (first) to bottom (last), overlapping."""
    if data.kind != "histogram_series":
        raise SpecError(messages.ridgeline_needs_histograms(), mark.span, messages.ridgeline_hint())
    frame = data.table
    check_columns(mark, frame)
    steps = sorted(frame["step"].unique())
    groups = frame.groupby(["layer", "run"]).ngroups
    bins = int(frame.groupby(["layer", "run", "step"]).size().max())
    fit = max(2, min(MAX_RIDGES, view.max_marks // max(1, groups * (bins + 1))))
    notes = []
    if len(steps) > fit:
        keep = sorted({steps[round(i * (len(steps) - 1) / (fit - 1))] for i in range(fit)})
        notes.append(messages.note_ridges(len(keep), len(steps)))
        frame = frame[frame["step"].isin(keep)]
    # a closing point at each histogram's right edge, so step-after areas draw every bin whole
    last = frame.groupby(["layer", "run", "step"], sort=False).tail(1)
    closing = last.assign(bin_start=last["bin_end"])
    drawn = pd.concat([frame, closing], ignore_index=True).sort_values(["layer", "run", "step", "bin_start"])
    drawn = _with_nonfinite(drawn.rename(columns={"bin_start": "value"}), data)
    # heights relative to the layer's largest bin over the drawn steps: ridges of one layer compare
    drawn["height"] = drawn["count"] / drawn.groupby("layer")["count"].transform("max").clip(lower=1)
    several = bool(data.options.get("runs"))
    charts = [_ridges(drawn[drawn["layer"] == layer], layer, several, mark, view) for layer in drawn["layer"].unique()]
    chart = charts[0] if len(charts) == 1 else alt.hconcat(*charts, spacing=24)
    return drawn, chart.configure_view(stroke=None), notes


def _ridges(frame: pd.DataFrame, layer: str, several: bool, mark: Step, view: ViewSpec):
    first = alt.datum.step == alt.datum.nonfinite_at
    scale = alt.Scale(
        range=[RIDGE_HEIGHT, -RIDGE_HEIGHT * RIDGE_OVERLAP], type="symlog" if mark.arg("log") else "linear"
    )
    enc = {
        "x": alt.X(**field("value", "Q"), title=layer),
        "y": alt.Y(**field("height", "Q"), axis=None, scale=scale, stack=None),
        "stroke": alt.StrokeValue(**alt.condition(first, alt.value(RED), alt.value("white"))),
        "strokeWidth": alt.StrokeWidthValue(**alt.condition(first, alt.value(2), alt.value(0.6))),
        "detail": alt.Detail(**field("run", "N")),
        "tooltip": [
            tip("step", "Q"),
            tip("layer", "N"),
            tip("run", "N"),
            tip("value", "Q", title="bin start", format=".4g"),
            tip("bin_end", "Q", format=".4g"),
            tip("count", "Q"),
        ],
    }
    if several:
        enc["fill"] = alt.Fill(**field("run", "N"), sort=in_order(frame["run"]))
    else:
        enc["fill"] = alt.Fill(**field("step", "Q"), scale=alt.Scale(scheme="blues", reverse=True), legend=None)
    area = (
        alt.Chart(inline(frame))
        .mark_area(interpolate="step-after", fillOpacity=0.6 if several else 0.85)
        .encode(**enc)
        .properties(width=clamp(view.width or 300), height=RIDGE_HEIGHT)
    )
    header = alt.Header(labelAngle=0, labelAlign="left", labelFontSize=9)
    # flush bounds: a ridge reaching into the row above does not push the rows apart
    return area.facet(row=alt.Row(**field("step", "O"), title="step", header=header), spacing=0, bounds="flush")
