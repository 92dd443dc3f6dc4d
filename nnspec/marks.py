"""Stage 5: Data ──mark──▶ (tidy frame, Altair chart, notes).

One ``visit_<mark>`` per mark; a query without a mark gets ``natural_mark``.
Every chart stays within the view's mark budget: larger tensors are
aggregated here (block means) and the subtitle says so.
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from . import messages, reduce
from .errors import InternalError, SpecError
from .execute import Data, fit_blocks, stats_table, transform_histogram
from .query_ast import Step
from .spec import ViewSpec

DIVERGING = "blueorange"
SEQUENTIAL = "viridis"
FACET_COLUMNS = 3


def _inline(frame: pd.DataFrame) -> dict:
    """Inline rows for the chart, as a plain ``{"values": [...]}``: Altair then
    neither walks nor validates each row (seconds for 10,000), and our mark
    budget, not its 5,000-row guard, limits them. NaN and ±Inf become null
    (their flags and notes say which)."""
    rows = frame.to_dict("records")
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                row[k] = None
    return {"values": rows}


def _tooltip(frame: pd.DataFrame) -> list:
    """Every column, typed: numbers to 4 significant digits."""
    out = []
    for c in frame.columns:
        kind = frame[c].dtype.kind
        if kind == "f":
            out.append(alt.Tooltip(f"{c}:Q", format=".4g"))
        else:
            out.append(alt.Tooltip(f"{c}:{'Q' if kind in 'iu' else 'N'}"))
    return out


def natural_mark(data: Data, budget: int) -> str:
    if data.kind == "histogram":
        return "histogram"
    if data.kind in ("stats", "scalar"):
        return "bar"
    dims = {t.dim() for t in data.tensors.values()}
    if dims == {2}:
        return "heatmap"
    if dims == {1} and sum(t.numel() for t in data.tensors.values()) <= budget:
        return "bar"
    return "histogram"


def draw(data: Data, mark: Step | None, view: ViewSpec):
    """The view's frame, chart and notes."""
    name = mark.name if mark else natural_mark(data, view.max_marks)
    mark = mark or Step(name, (), None)
    visit = globals().get(f"visit_{name}")
    if visit is None:
        raise InternalError(f"no visitor for mark '{name}'")
    frame, chart, notes = visit(data, mark, view)
    if len(frame) > view.max_marks:
        raise SpecError(
            f"'{name}' would draw {len(frame)} marks, over this view's budget of {view.max_marks}",
            mark.span,
        )
    return frame, _finish(chart, view, data.notes + notes), data.notes + notes


def _finish(chart, view: ViewSpec, notes: list[str]):
    title = alt.TitleParams(view.title, subtitle=notes or alt.Undefined, anchor="start")
    return chart.properties(title=title)


def _size(view: ViewSpec, n_panels: int, width: int = 360, height: int = 240) -> dict:
    if n_panels > 1:
        width, height = 220, 160
    return {"width": view.width or width, "height": view.height or height}


def _check_columns(mark: Step, frame: pd.DataFrame) -> None:
    for key in ("x", "y", "color", "facet"):
        col = mark.arg(key)
        if col is not None and col not in frame.columns:
            raise SpecError(messages.unknown_column(mark.name, col, list(frame.columns)), mark.span)


def _facet(chart, frame: pd.DataFrame, mark: Step, independent=("x", "y")):
    """Facet by ``facet=`` (or by layer when there are several), else the chart."""
    by = mark.arg("facet") or ("layer" if frame["layer"].nunique() > 1 else None)
    if by is None:
        return chart
    order = list(dict.fromkeys(frame[by]))
    faceted = chart.facet(facet=alt.Facet(f"{by}:N", sort=order, title=None), columns=FACET_COLUMNS)
    return faceted.resolve_scale(**{k: "independent" for k in independent})


def _color_scale(values: pd.Series, mark: Step) -> alt.Scale:
    finite = values[values.map(lambda v: isinstance(v, float) and math.isfinite(v))]
    lo = float(finite.min()) if len(finite) else 0.0
    hi = float(finite.max()) if len(finite) else 0.0
    kw = {"type": "symlog"} if mark.arg("log") else {}
    if mark.arg("scheme"):
        return alt.Scale(scheme=mark.arg("scheme"), **kw)
    if lo < 0 < hi:  # diverging data: a diverging scale centred at zero
        m = max(-lo, hi)
        return alt.Scale(scheme=DIVERGING, domain=[-m, m], domainMid=0, **kw)
    return alt.Scale(scheme=SEQUENTIAL, **kw)


# --- heatmap ------------------------------------------------------------------
def _as_2d(layer: str, t, mark: Step):
    if t.dim() == 1:
        return t.reshape(1, -1)
    if t.dim() == 0:
        return t.reshape(1, 1)
    if t.dim() != 2:
        raise SpecError(
            messages.needs_2d(mark.name, layer, t.shape),
            mark.span,
            messages.needs_2d_hint(t.shape),
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
            notes.append(f"{layer}: " + messages.note_block_mean(tuple(t.shape), (rows, cols)))
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
            notes.append(f"{layer}: {n_bad} cells hold NaN/Inf (drawn black)")
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
    _check_columns(mark, frame)
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
    color = alt.Color("value:Q", scale=_color_scale(frame["value"], mark), title=None)
    chart = base.mark_rect().encode(color=color).properties(data=_inline(drawn))
    if flagged:  # NaN/Inf cells are drawn black, not dropped
        chart = alt.layer(
            base.mark_rect().encode(color=color).transform_filter("datum.flag == ''"),
            base.mark_rect(color="black").transform_filter("datum.flag != ''"),
            data=_inline(drawn),
        )
    chart = chart.properties(**_heatmap_size(view, drawn))
    return frame, _facet(chart, frame, mark), notes


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


# --- histogram ----------------------------------------------------------------
def visit_histogram(data: Data, mark: Step, view: ViewSpec):
    if data.kind == "tensors":
        data = transform_histogram(data, Step("histogram", (), mark.span))
    if data.kind != "histogram":
        raise SpecError(
            messages.needs_table("histogram", ["layer", "bin_start", "bin_end", "count"]),
            mark.span,
        )
    frame = data.table
    _check_columns(mark, frame)
    y_scale = alt.Scale(type="symlog") if mark.arg("log") else alt.Undefined
    color = alt.Color(f"{mark.arg('color')}:N") if mark.arg("color") else alt.value("#4c78a8")
    chart = (
        alt.Chart(_inline(frame))
        .mark_bar(binSpacing=0)
        .encode(
            x=alt.X("bin_start:Q", bin="binned", title="value"),
            x2="bin_end:Q",
            y=alt.Y("count:Q", scale=y_scale, title="count"),
            color=color,
            tooltip=[
                "layer:N",
                alt.Tooltip("bin_start:Q", format=".4g"),
                alt.Tooltip("bin_end:Q", format=".4g"),
                "count:Q",
            ],
        )
        .properties(**_size(view, frame["layer"].nunique()))
    )
    return frame, _facet(chart, frame, mark), []


# --- bar and line ---------------------------------------------------------------
def _series_frame(data: Data, mark: Step, view: ViewSpec) -> tuple[pd.DataFrame, str, str, list[str]]:
    """A table to draw as bars/lines, and its default x and y."""
    if data.kind == "scalar":
        return data.table, "layer", "value", []
    if data.kind == "stats":
        return data.table, "layer", "absmean", []
    if data.kind == "histogram":
        return data.table, "bin_start", "count", []
    dims = {t.dim() for t in data.tensors.values()}
    if dims - {0, 1}:
        bad = next((k, t) for k, t in data.tensors.items() if t.dim() > 1)
        hint = "reduce it first, e.g. '| mean', '| norm' or '| mean(dim=0)'"
        raise SpecError(
            f"'{mark.name}' draws one value per layer or 1-D tensors; {bad[0]} has shape {tuple(bad[1].shape)}",
            mark.span,
            hint,
        )
    frames, notes = [], []
    per_layer = max(1, view.max_marks // len(data.tensors))
    for layer, t in data.tensors.items():
        t = t.reshape(-1).double()
        index = list(range(t.numel()))
        if t.numel() > per_layer:
            means, _ = reduce.block_mean(t.reshape(1, -1), 1, per_layer)
            edges = reduce._edges(t.numel(), per_layer, "cpu").tolist()
            index, t = edges[:-1], means.reshape(-1)
            notes.append(f"{layer}: {len(edges) - 1} block means of {edges[-1]} values")
        frames.append(pd.DataFrame({"layer": layer, "index": index, "value": t.tolist()}))
    return pd.concat(frames, ignore_index=True), "index", "value", notes


def _xy_chart(data: Data, mark: Step, view: ViewSpec, kind: str):
    frame, x_default, y_default, notes = _series_frame(data, mark, view)
    _check_columns(mark, frame)
    x, y = mark.arg("x", x_default), mark.arg("y", y_default)
    nominal = x == "layer" or frame[x].dtype == object or str(frame[x].dtype) in ("string", "str")
    angle = 0 if nominal and frame[x].nunique() <= 4 else -45
    x_enc = (
        alt.X(f"{x}:N", sort=None, title=x, axis=alt.Axis(labelAngle=angle)) if nominal else alt.X(f"{x}:Q", title=x)
    )
    y_title = data.label if (y == "value" and data.kind == "scalar") else y
    y_enc = alt.Y(
        f"{y}:Q",
        title=y_title,
        scale=alt.Scale(type="symlog") if mark.arg("log") else alt.Undefined,
    )
    enc = {
        "x": x_enc,
        "y": y_enc,
        "tooltip": _tooltip(frame),
    }
    color = mark.arg("color") or ("layer" if x != "layer" and frame["layer"].nunique() > 1 else None)
    if color:
        enc["color"] = alt.Color(f"{color}:N", sort=list(dict.fromkeys(frame[color])))
    base = alt.Chart(_inline(frame))
    chart = (base.mark_bar() if kind == "bar" else base.mark_line(point=True)).encode(**enc)
    chart = chart.properties(**_size(view, 1))
    if mark.arg("facet"):
        chart = _facet(chart, frame, mark, independent=("y",))
    nonfinite = [f"{r['layer']}: {y} is {r[y]}" for _, r in frame.iterrows() if not math.isfinite(float(r[y]))]
    return frame, chart, notes + nonfinite


def visit_bar(data: Data, mark: Step, view: ViewSpec):
    return _xy_chart(data, mark, view, "bar")


def visit_line(data: Data, mark: Step, view: ViewSpec):
    return _xy_chart(data, mark, view, "line")


# --- box ------------------------------------------------------------------------
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
        raise SpecError(messages.step_needs_tensors("box"), mark.span)
    frame = box_frame(data)
    _check_columns(mark, frame)
    x = alt.X("layer:N", sort=None)
    base = alt.Chart().encode(
        x=x,
        tooltip=_tooltip(frame),
    )
    chart = alt.layer(
        base.mark_rule().encode(y=alt.Y("min:Q", title="value"), y2="max:Q"),
        base.mark_bar(size=18).encode(y="q1:Q", y2="q3:Q"),
        base.mark_tick(color="white", size=18).encode(y="median:Q"),
        data=_inline(frame),
    ).properties(**_size(view, 1))
    notes = [f"{r.layer}: {r.nonfinite} NaN/Inf not drawn (counted)" for r in frame.itertuples() if r.nonfinite]
    return frame, chart, notes + ["whiskers at min and max"]


# --- table ----------------------------------------------------------------------
def visit_table(data: Data, mark: Step, view: ViewSpec):
    if data.kind == "tensors":
        frame = stats_table({k: reduce.stats(t) for k, t in data.tensors.items()})
    else:
        frame = data.table
    _check_columns(mark, frame)
    cells = []
    for i, row in enumerate(frame.itertuples(index=False)):
        for col, value in zip(frame.columns, row):
            cells.append({"row": i, "column": col, "text": _fmt(value)})
    long = pd.DataFrame(cells)
    width = view.width or max(360, 90 * len(frame.columns))
    chart = (
        alt.Chart(_inline(long))
        .mark_text(align="left", dx=-40, fontSize=11)
        .encode(
            x=alt.X(
                "column:N",
                sort=list(frame.columns),
                axis=alt.Axis(orient="top", title=None, labelAngle=0),
            ),
            y=alt.Y("row:O", axis=None),
            text="text:N",
        )
        .properties(width=width, height=view.height or 20 * len(frame) + 10)
    )
    return frame, chart, []


def _fmt(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Inf" if value > 0 else "-Inf"
        return f"{value:.4g}"
    return str(value)
