"""``images``: tensors as a grid of small images (conv filters, feature maps,
saliency), and attention maps as one heatmap per head."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from .. import messages, reduce
from ..errors import SpecError
from ..execute import Data, fit_blocks
from ..query_ast import Step
from ..spec import ViewSpec
from .common import check_columns, color_scale, facet, inline, tooltip

MIN_TILE_CELLS = 16


def _tiles(layer: str, t, mark: Step):
    """(K, H, W) and a label per tile: the leading indices ("5" or "5,2")."""
    if t.dim() < 2:
        raise SpecError(messages.needs_2d(mark.name, layer, t.shape), mark.span)
    lead = tuple(t.shape[:-2])
    labels = [",".join(map(str, idx)) for idx in _indices(lead)] or ["0"]
    return t.reshape(-1, t.shape[-2], t.shape[-1]), labels


def _indices(shape):
    if not shape:
        return []
    out = [()]
    for n in shape:
        out = [i + (j,) for i in out for j in range(n)]
    return out


def images_frame(data: Data, budget: int, cols: int | None) -> tuple[pd.DataFrame, list[str], int, int]:
    """``layer, tile, row, col, value`` (+ ``gx, gy``: the cell's place in the grid)."""
    frames, notes = [], []
    per_layer = max(MIN_TILE_CELLS, budget // max(1, len(data.tensors)))
    grid_w = grid_h = 0
    for layer, t in data.tensors.items():
        tiles, labels = _tiles(layer, t, Step("images", (), None))
        k, h, w = tiles.shape
        keep = min(k, max(1, per_layer // min(h * w, MIN_TILE_CELLS)))
        if keep < k:
            notes.append(f"{layer}: " + messages.note_first_tiles(keep, k))
        tiles, labels = tiles[:keep], labels[:keep]
        rows, cells = fit_blocks((h, w), max(1, per_layer // keep))
        if (rows, cells) != (h, w):
            notes.append(f"{layer}: " + messages.note_block_mean((h, w), (rows, cells)) + " per tile")
        c = cols or min(keep, max(1, round(math.sqrt(keep * 1.5))))
        # room above each tile for its label (~12 px), in cells of the final size
        px = _cell_px(c * (cells + 1), math.ceil(keep / c) * (rows + 2))
        gap = max(1, math.ceil(12 / px))
        for i in range(keep):
            tile = tiles[i]
            values = reduce.block_mean(tile, rows, cells)[0] if (rows, cells) != (h, w) else tile.double()
            ox, oy = (i % c) * (cells + 1), (i // c) * (rows + gap) + gap
            v = values.reshape(-1).tolist()
            frames.append(
                pd.DataFrame(
                    {
                        "layer": layer,
                        "tile": labels[i],
                        "row": [r for r in range(rows) for _ in range(cells)],
                        "col": [q for _ in range(rows) for q in range(cells)],
                        "value": v,
                        "gx": [ox + q for _ in range(rows) for q in range(cells)],
                        "gy": [oy + r for r in range(rows) for _ in range(cells)],
                    }
                )
            )
        grid_w, grid_h = max(grid_w, c * (cells + 1)), max(grid_h, math.ceil(keep / c) * (rows + gap) + gap)
    return pd.concat(frames, ignore_index=True), notes, grid_w, grid_h


def _cell_px(grid_w: int, grid_h: int) -> float:
    return max(2.0, min(24.0, 420 / max(grid_w, 1), 420 / max(grid_h, 1)))


def visit_images(data: Data, mark: Step, view: ViewSpec):
    if data.kind != "tensors":
        raise SpecError(messages.step_needs_tensors("images"), mark.span)
    frame, notes, grid_w, grid_h = images_frame(data, view.max_marks, mark.arg("cols"))
    check_columns(mark, frame)
    nonfinite = int((~frame["value"].map(math.isfinite)).sum())
    if nonfinite:
        notes.append(messages.note_nonfinite_cells(nonfinite))
    px = _cell_px(grid_w, grid_h)
    x = alt.X("gx:Q", axis=None, scale=alt.Scale(domain=[0, grid_w], nice=False))
    y = alt.Y("gy:Q", axis=None, scale=alt.Scale(domain=[0, grid_h], nice=False, reverse=True))
    color = alt.Color("value:Q", scale=color_scale(frame["value"], mark), title=None)
    base = (
        alt.Chart()
        .transform_calculate(gx2="datum.gx + 1", gy2="datum.gy + 1")
        .encode(
            x=x,
            x2="gx2:Q",
            y=y,
            y2="gy2:Q",
            tooltip=["layer:N", "tile:N", "row:Q", "col:Q", alt.Tooltip("value:Q", format=".4g")],
        )
    )
    cells = base.mark_rect().encode(color=color)
    if nonfinite:  # NaN/Inf (null in the JSON) drawn black, not left blank
        cells = alt.layer(
            cells.transform_filter("isValid(datum.value)"),
            base.mark_rect(color="black").transform_filter("!isValid(datum.value)"),
        )
    first = frame.groupby(["layer", "tile"], sort=False)[["gx", "gy"]].min().reset_index()
    tags = alt.Chart(inline(first)).mark_text(align="left", baseline="bottom", fontSize=9, dy=-1, color="#333")
    tags = tags.encode(x=x, y=y, text="tile:N")
    layers = alt.layer(cells.properties(data=inline(frame[["layer", "tile", "row", "col", "value", "gx", "gy"]])), tags)
    chart = layers.properties(width=round(grid_w * px), height=round(grid_h * px))
    if frame["layer"].nunique() > 1:
        chart = facet(chart, frame, mark)
    chart = chart.configure_view(stroke=None)
    return frame, chart, notes


def attention_frame(data: Data, budget: int) -> tuple[pd.DataFrame, list[str]]:
    """``layer, head, query, key, weight`` (+ token labels); the first sequence of a batch."""
    frames, notes = [], []
    tokens = data.context.tokens if data.context else ()
    per_layer = max(1, budget // max(1, len(data.tensors)))
    for layer, w in data.tensors.items():
        if w.dim() == 4:
            w = w[0]
            notes.append(f"{layer}: " + messages.note_first_sequence())
        if w.dim() == 2:
            w = w.unsqueeze(0)
        heads, lq, lk = w.shape
        rows, cols = fit_blocks((lq, lk), max(1, per_layer // heads))
        for h in range(heads):
            m = w[h].double()
            if (rows, cols) != (lq, lk):
                m = reduce.block_mean(w[h], rows, cols)[0]
            f = pd.DataFrame(
                {
                    "layer": layer,
                    "head": h,
                    "query": [r for r in range(rows) for _ in range(cols)],
                    "key": [c for _ in range(rows) for c in range(cols)],
                    "weight": m.reshape(-1).tolist(),
                }
            )
            if tokens and (rows, cols) == (lq, lk) and len(tokens) == lq == lk:
                f["query_label"] = [f"{r}:{tokens[r]}" for r in f["query"]]
                f["key_label"] = [f"{c}:{tokens[c]}" for c in f["key"]]
            frames.append(f)
        if (rows, cols) != (lq, lk):
            notes.append(f"{layer}: " + messages.note_block_mean((lq, lk), (rows, cols)) + " per head")
    return pd.concat(frames, ignore_index=True), notes


def visit_attention(data: Data, mark: Step, view: ViewSpec):
    frame, notes = attention_frame(data, view.max_marks)
    check_columns(mark, frame)
    labelled = "key_label" in frame.columns
    qx = alt.X("key_label:N", sort=alt.EncodingSortField("key"), title="key") if labelled else alt.X("key:O")
    qy = alt.Y("query_label:N", sort=alt.EncodingSortField("query"), title="query") if labelled else alt.Y("query:O")
    scale = alt.Scale(scheme=mark.arg("scheme") or "viridis", domain=[0, float(frame["weight"].max() or 1)])
    n = frame[["query", "key"]].max()
    step = max(3.0, min(18.0, 220 / max(int(n["key"]) + 1, 1)))
    base = alt.Chart(inline(frame)).mark_rect().encode(
        x=qx, y=qy, color=alt.Color("weight:Q", scale=scale, title="weight"),
        tooltip=tooltip(frame),
    ).properties(width=round(step * (int(n["key"]) + 1)), height=round(step * (int(n["query"]) + 1)))  # fmt: skip
    chart = base.facet(
        column=alt.Column("head:O", title="head"),
        row=alt.Row("layer:N", title=None) if frame["layer"].nunique() > 1 else alt.Undefined,
    )
    return frame, chart, notes + [messages.note_rows_sum()]
