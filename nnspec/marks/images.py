"""``images``: tensors as a grid of small images (conv filters, feature maps,
saliency), and attention maps as one heatmap per head."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd
import torch

from nnspec.errors import SpecError
from nnspec.execute import messages as execute_messages
from nnspec.execute.data import Data
from nnspec.execute.transforms import fit_blocks
from nnspec.marks import messages
from nnspec.marks.common import (
    check_columns,
    color_scale,
    inline,
    tooltip,
)
from nnspec.numerics import reduce
from nnspec.query.ast import Step
from nnspec.spec.load import ViewSpec

MIN_TILE_CELLS = 16


def _tiles(layer: str, t, mark: Step):
    """(K, H, W) and a label per tile: the leading indices ("5" or "5,2"); a vector is one row."""
    if t.dim() < 2:
        t = t.reshape(1, -1)
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


def images_frame(data: Data, budget: int, cols: int | None) -> tuple[pd.DataFrame, list[str], dict]:
    """``layer, tile, row, col, value`` (+ ``gx, gy``: the cell's place in its layer's
    grid), and each layer's grid size in cells."""
    frames, notes, grids = [], [], {}
    per_layer = max(MIN_TILE_CELLS, budget // max(1, len(data.tensors)))
    for layer, t in data.tensors.items():
        tiles, labels = _tiles(layer, t, Step("images", (), None))
        k, h, w = tiles.shape
        keep = min(k, max(1, per_layer // min(h * w, MIN_TILE_CELLS)))
        if keep < k:
            notes.append(f"{layer}: " + messages.note_first_tiles(keep, k))
        tiles, labels = tiles[:keep], labels[:keep]
        rows, cells = fit_blocks((h, w), max(1, per_layer // keep))
        if (rows, cells) != (h, w):
            notes.append(f"{layer}: " + execute_messages.note_block_mean((h, w), (rows, cells)) + " per tile")
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
        grids[layer] = (c * (cells + 1), math.ceil(keep / c) * (rows + gap) + gap)
    return pd.concat(frames, ignore_index=True), notes, grids


def _cell_px(grid_w: int, grid_h: int) -> float:
    return max(2.0, min(24.0, 420 / max(grid_w, 1), 420 / max(grid_h, 1)))


def visit_images(data: Data, mark: Step, view: ViewSpec):
    if data.kind != "tensors":
        raise SpecError(execute_messages.step_needs_tensors("images"), mark.span)
    frame, notes, grids = images_frame(data, view.max_marks, mark.arg("cols"))
    check_columns(mark, frame)
    nonfinite = int((~frame["value"].map(math.isfinite)).sum())
    if nonfinite:
        notes.append(messages.note_nonfinite_cells(nonfinite))
    # one grid per layer, each with its own colour scale (a conv weight and a batch-norm
    # scale side by side would otherwise wash each other out)
    charts = [_grid(frame[frame["layer"] == layer], layer, size, mark, len(grids) > 1) for layer, size in grids.items()]
    chart = charts[0] if len(charts) == 1 else alt.vconcat(*charts).resolve_scale(color="independent")
    return frame, chart.configure_view(stroke=None), notes


def _grid(frame: pd.DataFrame, layer: str, size: tuple[int, int], mark: Step, titled: bool):
    grid_w, grid_h = size
    px = _cell_px(grid_w, grid_h)
    x = alt.X("gx:Q", axis=None, scale=alt.Scale(domain=[0, grid_w], nice=False))
    y = alt.Y("gy:Q", axis=None, scale=alt.Scale(domain=[0, grid_h], nice=False, reverse=True))
    color = alt.Color("value:Q", scale=color_scale(frame["value"], mark), title=None)
    tip = ["layer:N", "tile:N", "row:Q", "col:Q", alt.Tooltip("value:Q", format=".4g")]
    base = (
        alt.Chart()
        .transform_calculate(gx2="datum.gx + 1", gy2="datum.gy + 1")
        .encode(x=x, x2="gx2:Q", y=y, y2="gy2:Q", tooltip=tip)
    )
    cells = [base.mark_rect().encode(color=color)]
    if not frame["value"].map(math.isfinite).all():  # NaN/Inf (null in the JSON) drawn black, not left blank
        cells = [
            cells[0].transform_filter("isValid(datum.value)"),
            base.mark_rect(color="black").transform_filter("!isValid(datum.value)"),
        ]
    # each tile's label at its top-left cell
    tags = (
        alt.Chart()
        .transform_aggregate(gx="min(gx)", gy="min(gy)", groupby=["tile"])
        .mark_text(align="left", baseline="bottom", fontSize=9, dy=-1, color="#333")
        .encode(x=x, y=y, text="tile:N")
    )
    chart = alt.layer(*cells, tags, data=inline(frame[["layer", "tile", "row", "col", "value", "gx", "gy"]]))
    props = {"width": round(grid_w * px), "height": round(grid_h * px)}
    return chart.properties(**props, title=layer) if titled else chart.properties(**props)


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
            notes.append(f"{layer}: " + execute_messages.note_block_mean((lq, lk), (rows, cols)) + " per head")
        bad = int((~torch.isfinite(w)).sum())
        if bad:
            notes.append(f"{layer}: " + messages.note_nonfinite_values(bad))
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
