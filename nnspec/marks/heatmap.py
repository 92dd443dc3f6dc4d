"""``heatmap``: 2-D tensors as cells; past the mark budget, as one image per layer
(``raster``: a pixel per value, blocks of largest magnitude past the image budget)."""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd
import torch

from nnspec.errors import SpecError
from nnspec.execute import messages as execute_messages
from nnspec.execute.data import Data
from nnspec.execute.transforms import fit_blocks
from nnspec.marks import messages
from nnspec.marks.common import (
    FACET_COLUMNS,
    check_columns,
    clamp,
    color_domain,
    color_scale,
    declare,
    facet,
    field,
    inline,
    opacity,
    props,
    tip,
)
from nnspec.marks.raster import (
    PIXEL_BUDGET,
    SCHEMES,
    block_edges,
    display_size,
    nonfinite_colour,
    raster,
    raster_blocks,
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


AGG = "absmax"  # what one value of a block stands for, past a budget (execute_messages.BLOCK_AGG_TEXT)


def heatmap_frame(data: Data, budget: int) -> tuple[pd.DataFrame, list[str]]:
    """``layer, row, col, value`` (+ ``row_end, col_end, flag``): past the budget,
    near-equal blocks, each the value of largest magnitude in it (``AGG``)."""
    per_layer = max(1, budget // max(1, len(data.tensors)))
    frames, notes = [], []
    for layer, t in data.tensors.items():
        rows, cols = fit_blocks(t.shape, per_layer)
        if (rows, cols) == tuple(t.shape):
            values = t.double()
            bad = None
            r_edges, c_edges = list(range(rows + 1)), list(range(cols + 1))
        else:
            re_, ce_ = reduce.block_edges(t.shape[0], rows), reduce.block_edges(t.shape[1], cols)
            values, bad = reduce.block_reduce(t, re_, ce_, AGG)
            r_edges, c_edges = re_.tolist(), ce_.tolist()
            notes.append(f"{layer}: " + execute_messages.note_blocks(tuple(t.shape), (rows, cols), AGG))
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


AXIS_NAMES = {"in": "input unit", "out": "output unit", "token": "token", "dim": "dimension"}


FLOWING = ("activations", "inputs", "output_grads", "input_grads")  # a batch's tensors: (sample, feature)


def _reshaped(view: ViewSpec | None) -> str:
    """How the query changed the captured tensor's axes: "" (as captured), "one" (one
    integer index, no transforms: a sequence's ``[0]``), "other"."""
    if view is None:
        return "other"
    from nnspec.query.parser import parse  # the marks read the index the capture applied

    try:
        q = parse(view.query)
    except Exception:
        return "other"
    items = list(q.index.items) if q.index is not None else []
    if q.transforms:
        return "other"
    if not items:
        return ""
    return "one" if len(items) == 1 and isinstance(items[0], int) else "other"


def axis_titles(data: Data, view: ViewSpec | None = None) -> tuple[str, str]:
    """(rows, columns) titles: what the axes of a 2-D parameter are, when its backend says
    and every layer of the view agrees (a Keras kernel: input unit × output unit); a
    batch's activations as captured are sample × feature, one item of a batch of
    sequences (``[0]``) position × feature."""
    layouts = {data.layouts.get(k, ()) for k, t in data.tensors.items() if t.dim() == 2}
    if len(layouts) == 1 and len(data.layouts) == len(data.tensors):
        (layout,) = layouts
        if len(layout) == 2 and all(a in AXIS_NAMES for a in layout):
            return AXIS_NAMES[layout[0]], AXIS_NAMES[layout[1]]
    how = _reshaped(view) if data.source in FLOWING else "other"
    if how == "":
        return "sample", "feature"
    if how == "one":
        return "position", "feature"
    return "row", "column"


def visit_heatmap(data: Data, mark: Step, view: ViewSpec):
    if data.kind != "tensors":
        raise SpecError(messages.needs_table("heatmap", ["tensors (not a table)"]), mark.span)
    y_title, x_title = axis_titles(data, view)
    names = list(data.tensors)
    data = Data(
        "tensors",
        tensors={k: _as_2d(k, t, mark) for k, t in data.tensors.items()},
        notes=data.notes,
    )
    per_layer = max(1, view.max_marks // max(1, len(data.tensors)))
    if any(t.numel() > per_layer for t in data.tensors.values()):
        frame, chart, notes = _image_heatmap(data, mark, view, (y_title, x_title))
        return frame, declare(chart, "heatmap", layers=names, image=True), notes
    frame, notes = heatmap_frame(data, view.max_marks)
    check_columns(mark, frame)
    flagged = bool((frame["flag"] != "").any())
    # the chart carries only what it draws; block starts label the bands
    drawn = frame[["layer", "row", "col", "value"] + (["flag"] if flagged else [])].copy()
    drawn["value"] = [_short(v) for v in drawn["value"]]
    axis = alt.Axis(labelOverlap=True, labelAngle=0)
    base = alt.Chart().encode(
        x=alt.X(**field("col", "O"), title=x_title, axis=axis),
        y=alt.Y(**field("row", "O"), title=y_title, axis=axis),
        tooltip=[tip("layer", "N"), tip("row", "O", title=y_title), tip("col", "O", title=x_title)]
        + [tip("value", "Q", format=".4g")]
        + ([tip("flag", "N")] if flagged else []),
        opacity=opacity("layer"),
    )
    scale = color_scale(frame["value"], mark)
    color = alt.Color(**field("value", "Q"), scale=scale, title=None)
    layers = [base.mark_rect().encode(color=color)]
    if flagged:  # NaN/Inf cells are drawn black, not dropped
        layers = [
            layers[0].transform_filter("datum.flag == ''"),
            base.mark_rect(color="black").transform_filter("datum.flag != ''"),
        ]
    dims = _heatmap_size(view, drawn)
    label = _cell_label(drawn["value"], dims["cell"]) if len(drawn) <= LABELLED_CELLS else None
    if label is not None:  # few cells, each wide enough: print its value on it
        fmt, font = label
        drawn["ink"] = _ink(drawn["value"], scale)
        ink = alt.ColorValue(**alt.condition("datum.ink == 'white'", alt.value("white"), alt.value("black")))
        text = base.mark_text(fontSize=font).encode(text=alt.Text(**field("value", "Q"), format=fmt), color=ink)
        layers.append(text)
    chart = alt.layer(*layers, data=inline(drawn)) if len(layers) > 1 else props(layers[0], data=inline(drawn))
    chart = props(chart, width=dims["width"], height=dims["height"])
    return frame, declare(facet(chart, frame, mark), "heatmap", layers=layers_of(frame), layer_field="layer"), notes


def layers_of(frame: pd.DataFrame) -> list:
    return list(dict.fromkeys(frame["layer"]))


def _cell_label(values: pd.Series, cell: float) -> tuple[str, float] | None:
    """(format, font size) for printing each value inside its cell, or None when no
    readable text fits (a cell narrower than its value at 7 px)."""
    for fmt, spec in ((".3~g", "{:.3g}"), (".2~g", "{:.2g}")):
        longest = max((len(spec.format(v)) for v in values if isinstance(v, float) and math.isfinite(v)), default=1)
        font = min(10.0, cell * 0.6, (cell - 3) / (0.62 * longest))
        if font >= 7:
            return fmt, round(font, 1)
    return None


LABELLED_CELLS = 64
LABELLED_CELL_PX = 34.0  # a cell that prints "-0.123" at 9 px


def finite_range(tensors) -> tuple[float, float]:
    """The finite min and max over all the tensors (0, 0 when none is finite)."""
    lo, hi = math.inf, -math.inf
    for t in tensors:
        f = t.detach().reshape(-1)
        if not bool(torch.isfinite(f.sum())):
            f = f[torch.isfinite(f)]
        if f.numel():
            mn, mx = torch.aminmax(f.float() if f.dtype not in (torch.float32, torch.float64) else f)
            lo, hi = min(lo, float(mn)), max(hi, float(mx))
    return (lo, hi) if lo <= hi else (0.0, 0.0)


def check_scheme(scheme: str, mark: Step) -> None:
    if scheme.lower() not in SCHEMES:
        raise SpecError(messages.scheme_not_continuous(scheme, list(SCHEMES)), mark.span)


def _image_heatmap(data: Data, mark: Step, view: ViewSpec, titles: tuple[str, str] = ("row", "column")):
    """Each layer one image at its true values: a pixel per value up to the image
    budget (``PIXEL_BUDGET`` per view), blocks of largest magnitude past it; one
    colour scale, the tensors' true range. The view's data: the blocks of
    ``heatmap_frame`` within the mark budget (an image has no rows to keep)."""
    frame, _ = heatmap_frame(data, view.max_marks)
    check_columns(mark, frame)
    lo, hi = finite_range(data.tensors.values())
    scheme, domain, mid = color_domain(lo, hi, mark)
    check_scheme(scheme, mark)
    log = bool(mark.arg("log"))
    colour = nonfinite_colour(scheme)[0]
    many = len(data.tensors) > 1
    per_layer = max(1, PIXEL_BUDGET // len(data.tensors))
    panels, notes = [], []
    for layer, t in data.tensors.items():
        r, c = (int(n) for n in t.shape)
        kr, kc = raster_blocks((r, c), per_layer)
        if (kr, kc) == (1, 1):
            values = t.detach().double().cpu().numpy()
            notes.append(f"{layer}: " + messages.note_image((r, c)))
        else:
            re_, ce_ = torch.tensor(block_edges(r, kr)), torch.tensor(block_edges(c, kc))
            blocks, bad = reduce.block_reduce(t, re_, ce_, AGG)
            values = np.where(bad.numpy() > 0, np.nan, blocks.cpu().numpy())
            what = execute_messages.BLOCK_AGG_TEXT[AGG]
            notes.append(f"{layer}: " + messages.note_image_blocks((r, c), values.shape, (kr, kc), what))
        n_bad = int((~torch.isfinite(t)).sum())
        if n_bad:
            notes.append(f"{layer}: " + messages.note_nonfinite_pixels(n_bad, colour))
        box = (360, 270) if many else (720, 480)
        w, h = display_size(values.shape[0], values.shape[1], box)
        chart = raster(
            values,
            domain,
            scheme,
            clamp(view.width or w),
            clamp(view.height or h),
            mid=mid,
            log=log,
            pixel=(kr, kc),
            extent=(r, c),
            x_title=titles[1],
            y_title=titles[0],
        )
        panels.append(chart.properties(title=layer) if many else chart)
    if not many:
        return frame, panels[0], notes
    chart = alt.concat(*panels, columns=FACET_COLUMNS).resolve_scale(color="shared", x="independent", y="independent")
    return frame, chart, notes


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
    if len(drawn) <= LABELLED_CELLS:  # cells that print their value: wide enough for it
        step = max(step, LABELLED_CELL_PX)
    width, height = clamp(view.width or cols * step), clamp(view.height or rows * step)
    return {"width": width, "height": height, "cell": min(width / cols, height / rows)}


def _short(v: float) -> float:
    """9 significant digits: every float32 round-trips, and the JSON stays small."""
    return float(f"{v:.9g}") if math.isfinite(v) else v
