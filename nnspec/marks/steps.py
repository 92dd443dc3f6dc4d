"""Charts over training steps: ``line`` (a value, or stats as bands) and
``ridgeline`` (a histogram per recorded step, TensorBoard's distributions).

Several runs: ``color=run`` and one panel per layer. The first step at which
a run saw a NaN or Inf is marked on every chart of that run: a red dashed
rule on lines, a red outline on that step's ridge.
"""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import pandas as pd

from nnspec.errors import SpecError
from nnspec.execute.data import Data
from nnspec.marks import messages
from nnspec.marks.common import (
    FACET_COLUMNS,
    SMOOTH_PARAM,
    check_columns,
    clamp,
    declare,
    field,
    in_order,
    inline,
    legend_pick,
    log_axis,
    log_meta,
    log_scale,
    opacity,
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
STEP_TICKS_MAX = 20  # a span of steps up to this gets a tick at each step


def step_axis(steps: pd.Series) -> alt.Axis:
    """An x axis of whole steps: Vega's own ticks split a span of a few steps in halves
    (0, 0.5, 1, …; its ``tickMinStep`` is ignored), so a short span names each step, and
    a longer one, whose nice ticks are whole already, is labelled without decimals."""
    found = [int(v) for v in steps.dropna().unique()]
    if found and max(found) - min(found) <= STEP_TICKS_MAX:
        return alt.Axis(values=list(range(min(found), max(found) + 1)), format=",d")
    return alt.Axis(format=",d")


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


RAW_OPACITY = alt.ExprRef(expr=f"{SMOOTH_PARAM} > 0 ? 0.3 : 1")  # the raw line fades under the smoothed one
SMOOTH_OPACITY = alt.ExprRef(expr=f"{SMOOTH_PARAM} > 0 ? 1 : 0")


def visit_steps_line(data: Data, mark: Step, view: ViewSpec):
    frame = data.table
    assert frame is not None  # a series is a table
    check_columns(mark, frame)
    stats = data.kind == "stats_series"
    y = mark.arg("y", "mean" if stats else "value")
    if y not in frame:
        raise SpecError(messages.unknown_column(mark.name, y, list(frame.columns)), mark.span)
    colour = _colour(frame, data, mark)
    runs = bool(data.options.get("runs"))
    # rows carry the value and its smoothing (the page writes an EMA into "smoothed"; here it is the value)
    chart_frame = _with_nonfinite(frame, data).assign(smoothed=frame[y])
    base = alt.Chart(inline(chart_frame))
    x = alt.X(**field("step", "Q"), title="step", axis=step_axis(frame["step"]))
    enc: dict[str, Any] = {"x": x}
    pick = None
    if colour:
        legend = alt.Legend(symbolOpacity=1, symbolType="stroke", symbolStrokeWidth=3)  # not the bands' faint fill
        enc["color"] = alt.Color(**field(colour, "N"), sort=in_order(frame[colour]), legend=legend)
        pick = legend_pick(colour)
    if runs and colour != "run":  # each run its own line: dashes tell them apart, and their legend names the runs
        order = in_order(frame["run"])
        enc["strokeDash"] = alt.StrokeDash(**field("run", "N"), sort=order, title="run")
    if colour != "layer" and frame["layer"].nunique() > 1 and not runs and not stats:
        enc["detail"] = alt.Detail(**field("layer", "N"))  # color= picked another column: still one line per layer
    y_title = data.label if y == "value" else (f"{y} of {data.label}" if stats else y)
    log = log_meta(frame[y].tolist(), y) if mark.arg("log") else None
    scale = log_scale(log) if log else alt.Undefined
    layers = []
    if stats and mark.arg("y") is None:  # min..max and mean±std bands under the mean
        layers.append(
            base.mark_area(opacity=0.12).encode(
                y=alt.Y(**field("min", "Q"), scale=scale), y2=alt.Y2(**field("max")), **enc
            )
        )
        spread = base.transform_calculate(lo="datum.mean - datum.std", hi="datum.mean + datum.std")
        layers.append(
            spread.mark_area(opacity=0.25).encode(y=alt.Y(**field("lo", "Q")), y2=alt.Y2(**field("hi")), **enc)
        )
        y_title = "mean; bands ±std, min..max"
    y_enc = alt.Y(**field(y, "Q"), title=y_title, scale=scale, axis=log_axis(log, frame[y].tolist()))
    fade = opacity("layer", pick)
    raw = base.mark_line(point=len(frame) <= 200, strokeOpacity=RAW_OPACITY).encode(
        y=y_enc, tooltip=tooltip(frame), opacity=fade, **enc
    )
    layers.append(raw.add_params(pick) if pick is not None else raw)
    # the smoothed line: the same field (a log toggle on it changes both), its values from "smoothed"
    smooth = base.transform_calculate(**{y: "datum.smoothed"}).mark_line(strokeOpacity=SMOOTH_OPACITY)
    layers.append(smooth.encode(y=y_enc, opacity=fade, **enc))
    if data.options.get("nonfinite"):
        rule = base.transform_filter("datum.nonfinite_at != null").transform_aggregate(
            step="min(nonfinite_at)", groupby=["run"]
        )
        tips = [tip("run", "N"), tip("step", "Q", title="first NaN/Inf at step")]
        layers.append(
            rule.mark_rule(color=RED, strokeDash=[4, 3], strokeWidth=2).encode(
                x=alt.X(**field("step", "Q"), axis=step_axis(frame["step"])), tooltip=tips
            )
        )
    panels = frame["layer"].nunique() if (runs or stats) else 1
    chart = props(alt.layer(*layers), **size(view, panels))
    by = [c for c in ("run", "layer") if c in frame and frame[c].nunique() > 1] or ["layer"]
    meta = {
        "layers": list(dict.fromkeys(frame["layer"])),
        "layer_field": "layer",
        "log": log,
        "smooth": {"x": "step", "y": y, "by": by, "as": "smoothed"},
        "colors": [{"field": "run"}] if runs else None,
        "runs": list(dict.fromkeys(frame["run"])),
        "over_run": True,
    }
    return chart_frame, declare(_panels(chart, frame, data, mark), "line", **meta), []


def visit_ridgeline(data: Data, mark: Step, view: ViewSpec):
    """A histogram per recorded step, stacked top (first) to bottom (last), overlapping."""
    if data.kind != "histogram_series":
        raise SpecError(messages.ridgeline_needs_histograms(), mark.span, messages.ridgeline_hint())
    frame = data.table
    assert frame is not None  # histograms over steps are a table
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
    run_order = list(dict.fromkeys(frame["run"]))  # the --run order, everywhere (colours must not swap)
    # a closing point at each histogram's right edge, so step-after areas draw every bin whole
    last = frame.groupby(["layer", "run", "step"], sort=False).tail(1)
    closing = last.assign(bin_start=last["bin_end"])
    drawn = pd.concat([frame, closing], ignore_index=True)
    drawn["_run"] = drawn["run"].map({r: i for i, r in enumerate(run_order)})
    drawn = drawn.sort_values(["layer", "_run", "step", "bin_start"], kind="stable").drop(columns="_run")
    drawn = _with_nonfinite(drawn.rename(columns={"bin_start": "value"}), data)
    # heights relative to the layer's largest bin over the drawn steps: ridges of one layer compare
    drawn["height"] = drawn["count"] / drawn.groupby("layer")["count"].transform("max").clip(lower=1)
    several = bool(data.options.get("runs"))
    drawn_steps = sorted(int(v) for v in drawn["step"].unique())
    layers = list(dict.fromkeys(drawn["layer"]))
    log, isolate = bool(mark.arg("log")), len(layers) == 1  # legend params must not repeat across panels
    charts = [
        _ridges(drawn[drawn["layer"] == layer], layer, several, run_order, view, log, isolate) for layer in layers
    ]
    chart = charts[0] if len(charts) == 1 else alt.hconcat(*charts, spacing=24)
    chart = chart.configure_view(stroke=None)
    have = list(chart.params) if isinstance(chart.params, list) else []  # the legend's, hoisted by Altair
    chart = props(chart, params=have + [step_slider(drawn_steps)])
    meta = {
        "layers": layers,
        "colors": [{"field": "run"}] if several else None,
        "runs": run_order,
        "steps": drawn_steps,
        "over_run": True,
    }
    return drawn, declare(chart, "ridgeline", **meta), notes


STEP_PARAM = "nnspec_step"


def step_slider(steps: list[int]) -> alt.VariableParameter:
    """A range input picking a recorded step (the last by default); the ridge at the
    largest drawn step at or below it is drawn strong, the others faint."""
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    stride = math.gcd(*gaps) if gaps else 1
    bind = alt.BindRange(input="range", min=steps[0], max=steps[-1], step=max(1, stride), name="step ")
    return alt.VariableParameter(name=STEP_PARAM, value=steps[-1], bind=bind)


def _ridges(frame: pd.DataFrame, layer: str, several: bool, run_order: list, view: ViewSpec, log: bool, isolate: bool):
    first = alt.datum.step == alt.datum.nonfinite_at
    picked = f"datum.step <= {STEP_PARAM} && {STEP_PARAM} < datum.next_step"
    frame = frame.assign(next_step=frame["step"].map(_next_steps(frame["step"])))
    scale = alt.Scale(range=[RIDGE_HEIGHT, -RIDGE_HEIGHT * RIDGE_OVERLAP], type="symlog" if log else "linear")
    enc = {
        "x": alt.X(**field("value", "Q"), title=layer),
        "y": alt.Y(**field("height", "Q"), axis=None, scale=scale, stack=None),
        "stroke": alt.StrokeValue(**alt.condition(first, alt.value(RED), alt.value("white"))),
        "strokeWidth": alt.StrokeWidthValue(**alt.condition(first, alt.value(2), alt.value(0.6))),
        "fillOpacity": alt.FillOpacityValue(condition={"test": picked, "value": 0.95}, value=0.35 if several else 0.5),
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
        enc["fill"] = alt.Fill(**field("run", "N"), sort=in_order(run_order))
    else:
        enc["fill"] = alt.Fill(**field("step", "Q"), scale=alt.Scale(scheme="blues", reverse=True), legend=None)
    pick = legend_pick("run") if several and isolate else None
    if pick is not None:  # one layer: clicking a run in the legend isolates its ridges
        enc["opacity"] = opacity(None, pick)
    area = (
        alt.Chart(inline(frame))
        .mark_area(interpolate="step-after")
        .encode(**enc)
        .properties(width=clamp(view.width or 300), height=RIDGE_HEIGHT)
    )
    if pick is not None:
        area = area.add_params(pick)
    header = alt.Header(labelAngle=0, labelAlign="left", labelFontSize=9)
    # flush bounds: a ridge reaching into the row above does not push the rows apart
    return area.facet(row=alt.Row(**field("step", "O"), title="step", header=header), spacing=0, bounds="flush")


def _next_steps(steps: pd.Series) -> dict:
    """Each drawn step -> the next drawn one (past the last: a step no slider reaches)."""
    order = sorted(int(v) for v in steps.unique())
    return {a: b for a, b in zip(order, order[1:] + [order[-1] + 1])}
