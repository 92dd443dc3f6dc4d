"""``images``: tensors as a grid of small images (conv filters, feature maps,
saliency). Attention maps are drawn by ``nnspec.marks.attention``."""

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
    check_columns,
    clamp,
    color_domain,
    color_scale,
    declare,
    field,
    inline,
    opacity,
    tip,
)
from nnspec.marks.heatmap import AGG, check_scheme, finite_range
from nnspec.marks.raster import PIXEL_BUDGET, block_edges, nonfinite_colour, raster, raster_blocks
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
            notes.append(f"{layer}: " + execute_messages.note_blocks((h, w), (rows, cells), AGG) + " (each tile)")
        c = cols or min(keep, max(1, round(math.sqrt(keep * 1.5))))
        # room above each tile for its label (~12 px), in cells of the final size
        px = _cell_px(c * (cells + 1), math.ceil(keep / c) * (rows + 2))
        gap = max(1, math.ceil(12 / px))
        for i in range(keep):
            tile = tiles[i]
            if (rows, cells) != (h, w):
                values = reduce.block_reduce(tile, reduce.block_edges(h, rows), reduce.block_edges(w, cells), AGG)[0]
            else:
                values = tile.double()
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
    if sum(t.numel() for t in data.tensors.values()) > view.max_marks:
        return _image_grids(data, mark, view)
    frame, notes, grids = images_frame(data, view.max_marks, mark.arg("cols"))
    check_columns(mark, frame)
    nonfinite = int((~frame["value"].map(math.isfinite)).sum())
    if nonfinite:
        notes.append(messages.note_nonfinite_cells(nonfinite))
    # one grid per layer, each with its own colour scale (a conv weight and a batch-norm
    # scale side by side would otherwise wash each other out)
    charts = [_grid(frame[frame["layer"] == layer], layer, size, mark, len(grids) > 1) for layer, size in grids.items()]
    chart = charts[0] if len(charts) == 1 else alt.vconcat(*charts).resolve_scale(color="independent")
    chart = declare(chart.configure_view(stroke=None), "images", layers=list(grids), layer_field="layer")
    return frame, chart, notes


MAX_IMAGE_TILES = 1024  # tiles of one layer drawn as an image (each label is a mark)


def _image_grids(data: Data, mark: Step, view: ViewSpec):
    """Past the mark budget: each layer's grid of tiles as one image (``raster``), a
    pixel per value up to the image budget, blocks of largest magnitude past it;
    each layer its own colour scale over its true range. The view's data: what
    ``images_frame`` keeps within the mark budget."""
    frame, _, _ = images_frame(data, view.max_marks, mark.arg("cols"))
    check_columns(mark, frame)
    notes: list[str] = []
    charts = []
    per_layer = max(1, PIXEL_BUDGET // len(data.tensors))
    for layer, t in data.tensors.items():
        tiles, labels = _tiles(layer, t, mark)
        k, h, w = tiles.shape
        if t.dim() == 4 and not mark.arg("cols"):  # a conv weight: every filter, output channel × input channel
            kr, kc = raster_blocks((h, w), max(1, per_layer // k))
            what = execute_messages.BLOCK_AGG_TEXT[AGG]
            notes.append(f"{layer}: " + messages.note_filter_matrix(tuple(t.shape), (kr, kc), what))
            lo, hi = finite_range([tiles])
            scheme, domain, mid = color_domain(lo, hi, mark)
            check_scheme(scheme, mark)
            title = layer if len(data.tensors) > 1 else None
            charts.append(filter_matrix(t, (kr, kc), (scheme, domain, mid), mark, title))
            continue
        keep = min(k, MAX_IMAGE_TILES)
        if keep < k:
            notes.append(f"{layer}: " + messages.note_first_tiles(keep, k))
        tiles, labels = tiles[:keep], labels[:keep]
        kr, kc = raster_blocks((h, w), max(1, per_layer // keep))
        what = execute_messages.BLOCK_AGG_TEXT[AGG]
        notes.append(f"{layer}: " + messages.note_image_tiles(keep, (h, w), (kr, kc), what))
        lo, hi = finite_range([tiles])
        scheme, domain, mid = color_domain(lo, hi, mark)
        check_scheme(scheme, mark)
        n_bad = int((~torch.isfinite(tiles)).sum())
        if n_bad:
            notes.append(f"{layer}: " + messages.note_nonfinite_pixels(n_bad, nonfinite_colour(scheme)[0]))
        charts.append(
            _image_grid(tiles, labels, (kr, kc), (scheme, domain, mid), mark, layer if len(data.tensors) > 1 else None)
        )
    chart = charts[0] if len(charts) == 1 else alt.vconcat(*charts).resolve_scale(color="independent")
    chart = declare(chart.configure_view(stroke=None), "images", layers=list(data.tensors), image=True)
    return frame, chart, notes


def filter_matrix(t, block, colour, mark: Step, title: str | None):
    """A 4-D weight (O, I, h, w) as one image: tile (o, i) at grid row o, column i, a
    transparent pixel between tiles; the axes count output and input channels."""
    o_n, i_n, h, w = (int(n) for n in t.shape)
    kr, kc = block
    bh, bw = -(-h // kr), -(-w // kc)
    tiles = t.detach().reshape(o_n * i_n, h, w)
    if (kr, kc) != (1, 1):
        r_e, c_e = torch.tensor(block_edges(h, kr)), torch.tensor(block_edges(w, kc))
        parts = [reduce.block_reduce(tile, r_e, c_e, AGG) for tile in tiles]
        values = np.stack([np.where(bad.numpy() > 0, np.nan, v.cpu().numpy()) for v, bad in parts])
    else:
        values = tiles.double().cpu().numpy()
    grid_h, grid_w = o_n * (bh + 1) - 1, i_n * (bw + 1) - 1
    canvas = np.full((o_n, bh + 1, i_n, bw + 1), np.nan)
    canvas[:, :bh, :, :bw] = values.reshape(o_n, i_n, bh, bw).transpose(0, 2, 1, 3)
    blank = np.ones(canvas.shape, dtype=bool)
    blank[:, :bh, :, :bw] = False
    canvas = canvas.reshape(o_n * (bh + 1), i_n * (bw + 1))[:grid_h, :grid_w]
    blank = blank.reshape(canvas.shape[0] + 1, canvas.shape[1] + 1)[:grid_h, :grid_w]
    px = min(720 / grid_w, 600 / grid_h)
    px = min(24.0, float(math.floor(px))) if px >= 1 else px
    size = (max(40, clamp(grid_w * px)), max(40, clamp(grid_h * px)))
    scheme, domain, mid = colour
    chart = raster(canvas, domain, scheme, *size, mid=mid, log=bool(mark.arg("log")), blank=blank, axes=False)
    image, legend = chart.layer
    image = image.encode(
        x=alt.X(**field("x", "Q"), title="input channel", axis=_channel_axis(i_n, bw, size[0]), scale=_span(grid_w)),
        y=alt.Y(
            **field("y", "Q"), title="output channel", axis=_channel_axis(o_n, bh, size[1]), scale=_span(grid_h, True)
        ),
    )
    out = alt.layer(image, legend).properties(width=size[0], height=size[1])
    return out.properties(title=title) if title else out


def _span(n: int, reverse: bool = False) -> alt.Scale:
    return alt.Scale(domain=[0, n], nice=False, zero=False, reverse=reverse)


def _channel_axis(n: int, tile: int, px: float) -> alt.Axis:
    """Ticks at tile centres, labelled with the channel, about one every 40 px."""
    every = next(
        k for k in (1, 2, 4, 5, 8, 10, 16, 20, 32, 50, 64, 100, 128, 256, 512, 1024) if k * px / n >= 28 or k >= n
    )
    values = [i * (tile + 1) + tile / 2 for i in range(0, n, every)]
    return alt.Axis(values=values, labelExpr=f"floor(datum.value / {tile + 1})", labelAngle=0, grid=False)


def _image_grid(tiles, labels, block, colour, mark: Step, title: str | None):
    """One layer's tiles side by side on a canvas (a pixel gutter between tiles, room
    for each label above), gutters transparent; labels as text marks."""
    keep, h, w = tiles.shape
    kr, kc = block
    bh, bw = -(-h // kr), -(-w // kc)
    c = mark.arg("cols") or min(keep, max(1, round(math.sqrt(keep * 1.5))))
    n_rows = -(-keep // c)
    grid_w = c * (bw + 1) - 1
    px = min(720 / grid_w, 600 / (n_rows * (bh + 2)))
    px = min(24.0, float(math.floor(px))) if px >= 1 else px
    gap = max(1, math.ceil(12 / px))  # label room, in canvas pixels
    grid_h = n_rows * (bh + gap)
    canvas = np.full((grid_h, grid_w), np.nan)
    blank = np.ones((grid_h, grid_w), dtype=bool)
    tags = []
    for i in range(keep):
        tile = tiles[i]
        if (kr, kc) != (1, 1):
            values, bad = reduce.block_reduce(
                tile, torch.tensor(block_edges(h, kr)), torch.tensor(block_edges(w, kc)), AGG
            )
            v = np.where(bad.numpy() > 0, np.nan, values.cpu().numpy())
        else:
            v = tile.detach().double().cpu().numpy()
        ox, oy = (i % c) * (bw + 1), (i // c) * (bh + gap) + gap
        canvas[oy : oy + bh, ox : ox + bw] = v
        blank[oy : oy + bh, ox : ox + bw] = False
        tags.append({"tile": labels[i], "gx": ox, "gy": oy})
    scheme, domain, mid = colour
    size = (max(40, clamp(grid_w * px)), max(40, clamp(grid_h * px)))
    image = raster(canvas, domain, scheme, *size, mid=mid, log=bool(mark.arg("log")), blank=blank, axes=False)
    x = alt.X(**field("gx", "Q"), axis=None, scale=alt.Scale(domain=[0, grid_w], nice=False, zero=False))
    y = alt.Y(**field("gy", "Q"), axis=None, scale=alt.Scale(domain=[0, grid_h], nice=False, zero=False, reverse=True))
    fit = labels_fit(labels, (bw + 1) * size[0] / grid_w)
    text = alt.Chart(alt.Data(values=tags if fit else [t for t in tags if t["gx"] == 0]))
    text = text.mark_text(**_tag_style(fit)).encode(x=x, y=y, text=alt.Text(**field("tile", "N")))
    chart = alt.layer(image, text).properties(width=size[0], height=size[1])
    return chart.properties(title=title) if title else chart


TAG_CHAR_PX = 5.5  # a character of a 9 px label


def labels_fit(labels: list, pitch_px: float) -> bool:
    """Every tile's label fits above its tile (labels wider than the tile would run together)."""
    return max((len(str(v)) for v in labels), default=0) * TAG_CHAR_PX <= pitch_px


def _tag_style(fit: bool) -> dict:
    if fit:
        return {"align": "left", "baseline": "bottom", "fontSize": 9, "dy": -1, "color": "#333"}
    return {"align": "right", "baseline": "top", "fontSize": 9, "dx": -3, "color": "#333"}


def _grid(frame: pd.DataFrame, layer: str, size: tuple[int, int], mark: Step, titled: bool):
    grid_w, grid_h = size
    px = _cell_px(grid_w, grid_h)
    x = alt.X(**field("gx", "Q"), axis=None, scale=alt.Scale(domain=[0, grid_w], nice=False))
    y = alt.Y(**field("gy", "Q"), axis=None, scale=alt.Scale(domain=[0, grid_h], nice=False, reverse=True))
    color = alt.Color(**field("value", "Q"), scale=color_scale(frame["value"], mark), title=None)
    tips = [tip("layer", "N"), tip("tile", "N"), tip("row", "Q"), tip("col", "Q"), tip("value", "Q", format=".4g")]
    base = (
        alt.Chart()
        .transform_calculate(gx2="datum.gx + 1", gy2="datum.gy + 1")
        .encode(x=x, x2=alt.X2(**field("gx2")), y=y, y2=alt.Y2(**field("gy2")), tooltip=tips)
        .encode(opacity=opacity("layer"))
    )
    cells = [base.mark_rect().encode(color=color)]
    if not frame["value"].map(math.isfinite).all():  # NaN/Inf (null in the JSON) drawn black, not left blank
        cells = [
            cells[0].transform_filter("isValid(datum.value)"),
            base.mark_rect(color="black").transform_filter("!isValid(datum.value)"),
        ]
    # each tile's label at its top-left cell; tiles too narrow for it: the first tile of each row, left of the row
    fit = labels_fit(list(frame["tile"].unique()), (int(frame["col"].max()) + 2) * px)
    tags = alt.Chart().transform_aggregate(gx="min(gx)", gy="min(gy)", groupby=["tile"])
    if not fit:
        tags = tags.transform_filter("datum.gx == 0")
    tags = tags.mark_text(**_tag_style(fit)).encode(x=x, y=y, text=alt.Text(**field("tile", "N")))
    chart = alt.layer(*cells, tags, data=inline(frame[["layer", "tile", "row", "col", "value", "gx", "gy"]]))
    props = {"width": clamp(grid_w * px), "height": clamp(grid_h * px)}
    return chart.properties(**props, title=layer) if titled else chart.properties(**props)
