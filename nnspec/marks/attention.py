"""Attention maps, the views BertViz users know, as heatmaps of (query, key) weights:

    attention of L [0, 3]                    one head (batch 0, head 3) of one layer
    attention of L                           every head of a layer, wrapped into rows of at most 4
                                             (6 past 16 heads)
    attention of *                           the overview: layers × heads, small panels
    … | heatmap(layout=heads|overview)       either layout whatever the number of layers

Token labels (``3:cat``) go on an axis whose length is the number of tokens.
Past the mark budget each head's map becomes a grid of blocks holding the
block's **maximum** weight, and a note says so: a mean would blur a sharp
pattern (the diagonal, a previous-token head, an attention sink) into the
uniform background, while the maximum keeps it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import altair as alt
import pandas as pd
import torch

from nnspec.execute.data import Data
from nnspec.execute.transforms import fit_blocks
from nnspec.marks import messages, raster
from nnspec.marks.common import check_columns, clamp, declare, field, in_order, inline, props, tooltip
from nnspec.numerics import reduce
from nnspec.query.ast import Step
from nnspec.spec.load import ViewSpec

AXES = ("batch", "head", "query", "key")
LAYOUTS = ("heads", "overview")
MAX_COLUMNS = 4  # heads per row of a layer's grid; 6 past 16 heads
MAX_COLUMNS_MANY = 6


# -- notes (the other marks keep theirs in marks/messages.py) ------------------------------
def note_block_max(shape, out_shape, budget: int) -> str:
    return (
        f"{shape[0]}×{shape[1]} → {out_shape[0]}×{out_shape[1]} per head: each cell is the largest weight "
        f"of its block (mark budget {budget}" + note_block_max_tail()
    )


def note_block_max_tail() -> str:
    return "; index a range, e.g. [0, 3, 0:64, 0:64], to see every cell)"


def note_image(lq: int, lk: int) -> str:
    return (
        f"{lq}×{lk} per head, past the mark budget: drawn as an image, every weight one pixel (no tooltips); "
        "the view's data holds block maxima"
    )


# -- the data ------------------------------------------------------------------------------
@dataclass
class _Map:
    """One layer's weights to draw: (H, L, S), the original position of each index, and
    whether the query and key axes were sliced by the query's index."""

    layer: str
    w: torch.Tensor
    heads: list[int]
    queries: list[int]
    keys: list[int]
    sliced: tuple[bool, bool] = (False, False)


def _positions(view: ViewSpec | None) -> list | None:
    """What the query's index kept of (batch, head, query, key): per axis an int (indexed
    away) or (start, step, sliced) (kept); None without an index one can read."""
    if view is None:
        return None
    from nnspec.query.parser import parse  # the marks read the index the capture applied

    try:
        index = parse(view.query).index
    except Exception:
        return None
    items = list(index.items) if index is not None else []
    if len(items) > len(AXES):
        return None
    out: list = []
    for i in range(len(AXES)):
        item = items[i] if i < len(items) else (None, None, None)
        if isinstance(item, tuple):
            start, stop, step = item
            sliced = (start, stop, step) != (None, None, None)
            step = step or 1
            start = start if start is not None else (0 if step > 0 else None)
            # a negative start or step counts from the end, whose length the marks do not know
            out.append((start, step, sliced) if start is not None and start >= 0 and step > 0 else (0, 1, sliced))
        else:
            out.append(int(item))
    return out


def _maps(data: Data, view: ViewSpec | None) -> tuple[list[_Map], bool]:
    """Each layer's (H, L, S) weights of the first sequence shown, and whether a batch of
    several was cut to its first."""
    kept = _positions(view)
    maps, cut = [], False
    for layer, w in data.tensors.items():
        axes = kept
        if axes is None or sum(isinstance(a, tuple) for a in axes) != w.dim():  # read it as (…, L, S)
            if w.dim() > 4:
                w = w.reshape(-1, *w.shape[-3:])
            axes = [0] * (4 - w.dim()) + [(0, 1, False)] * w.dim()
        for i, a in enumerate(axes):
            if not isinstance(a, tuple):
                w = w.unsqueeze(i)  # an indexed-away axis back, of size 1
        cut = cut or w.shape[0] > 1
        w = w[0]
        pos = [
            [a] if not isinstance(a, tuple) else [a[0] + a[1] * i for i in range(n)] for a, n in zip(axes[1:], w.shape)
        ]
        sliced = tuple(isinstance(a, tuple) and a[2] for a in axes[2:])
        maps.append(_Map(layer, w, pos[0], pos[1], pos[2], (sliced[0], sliced[1])))
    return maps, cut


def _block_max(t: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, list[int], list[int]]:
    """The largest value of each of rows×cols near-equal blocks, and the blocks' edges."""
    r_edges, c_edges = reduce._edges(t.shape[0], rows, "cpu"), reduce._edges(t.shape[1], cols, "cpu")
    t = t.double()
    with warnings.catch_warnings():  # index_reduce_ is marked beta; amax over blocks is all it does here
        warnings.simplefilter("ignore", UserWarning)
        return _block_max_of(t, rows, cols, r_edges, c_edges)


def _block_max_of(t, rows, cols, r_edges, c_edges):
    by_row = t.new_full((rows, t.shape[1]), -math.inf)
    by_row.index_reduce_(0, reduce._block_ids(r_edges, t.shape[0]), t, "amax", include_self=False)
    out = by_row.new_full((rows, cols), -math.inf)
    out.index_reduce_(1, reduce._block_ids(c_edges, t.shape[1]), by_row, "amax", include_self=False)
    return out, r_edges.tolist(), c_edges.tolist()


def attention_frame(data: Data, budget: int, view: ViewSpec | None = None) -> tuple[pd.DataFrame, list[str]]:
    """``layer, head, query, key, weight`` (+ ``query_label, key_label`` with tokens; past the
    budget ``query_end, key_end``, the block's end, exclusive); the first sequence shown."""
    maps, cut = _maps(data, view)
    tokens = tuple(data.context.tokens) if data.context else ()
    panels = sum(len(m.heads) for m in maps)
    per_head = max(1, budget // max(1, panels))
    frames: list[pd.DataFrame] = []
    notes: dict[str, list[str]] = {}
    for m in maps:
        heads, lq, lk = m.w.shape
        rows, cols = fit_blocks((lq, lk), per_head)
        blocked = (rows, cols) != (lq, lk)
        for h in range(heads):
            if blocked:
                values, r_edges, c_edges = _block_max(m.w[h], rows, cols)
                q0 = [m.queries[r_edges[r]] for r in range(rows)]
                q1 = [m.queries[r_edges[r + 1] - 1] + 1 for r in range(rows)]
                k0 = [m.keys[c_edges[c]] for c in range(cols)]
                k1 = [m.keys[c_edges[c + 1] - 1] + 1 for c in range(cols)]
            else:
                values, q0, k0 = m.w[h].double(), m.queries, m.keys
            f = pd.DataFrame(
                {
                    "layer": m.layer,
                    "head": m.heads[h],
                    "query": [q0[r] for r in range(rows) for _ in range(cols)],
                    "key": [k0[c] for _ in range(rows) for c in range(cols)],
                    "weight": values.reshape(-1).tolist(),
                }
            )
            if blocked:
                f["query_end"] = [q1[r] for r in range(rows) for _ in range(cols)]
                f["key_end"] = [k1[c] for _ in range(rows) for c in range(cols)]
            elif tokens:
                if _labelled(m.queries, m.sliced[0], tokens):
                    f["query_label"] = [f"{q}:{tokens[q]}" for q in f["query"]]
                if _labelled(m.keys, m.sliced[1], tokens):
                    f["key_label"] = [f"{k}:{tokens[k]}" for k in f["key"]]
            frames.append(f)
        if blocked:
            notes.setdefault(note_block_max((lq, lk), (rows, cols), budget), []).append(m.layer)
        if cut:
            notes.setdefault(messages.note_first_sequence(), []).append(m.layer)
        bad = int((~torch.isfinite(m.w)).sum())
        if bad:
            notes.setdefault(messages.note_nonfinite_values(bad), []).append(m.layer)
    frame = pd.concat(frames, ignore_index=True)
    for col in ("query_label", "key_label"):  # a label column only where every layer has one
        if col in frame.columns and frame[col].isna().any():
            frame = frame.drop(columns=col)
    return frame, _grouped(notes, len(maps))


def _labelled(positions: list[int], sliced: bool, tokens: tuple) -> bool:
    """Whether the tokens label an axis: one position per token, or a slice of those."""
    if sliced:
        return all(0 <= p < len(tokens) for p in positions)
    return len(positions) == len(tokens)


def _grouped(notes: dict, layers: int) -> list[str]:
    """A note for every layer once, without a prefix; others prefixed by their layer."""
    out = []
    for text, where in notes.items():
        if layers > 1 and len(where) == layers:
            out.append(text)
        else:
            out.extend(f"{layer}: {text}" for layer in where)
    return out


# -- the charts ----------------------------------------------------------------------------
def _columns(heads: int) -> int:
    """Heads per row: at most 4 (6 past 16 heads), the rows balanced (6 heads: 3 + 3)."""
    most = MAX_COLUMNS if heads <= 16 else MAX_COLUMNS_MANY
    rows = math.ceil(heads / most)
    return math.ceil(heads / rows)


def _cells(frame: pd.DataFrame, mark: Step, px: float, axes: bool, domain: list[float]) -> alt.Chart:
    """One panel's heatmap, keys across and queries down, ``px`` per cell; ``axes`` False
    leaves the axes out (the tooltip says where a cell is)."""
    n_q, n_k = frame["query"].nunique(), frame["key"].nunique()

    def channel(name: str):
        label = f"{name}_label"
        ax = (
            alt.Axis(labelFontSize=max(6.0, min(11.0, px - 1)), labelOverlap="greedy", labelLimit=90, title=name)
            if axes
            else None
        )
        if label in frame.columns:
            return {"field": label, "type": "nominal", "sort": alt.EncodingSortField(name), "axis": ax}
        return {"field": name, "type": "ordinal", "axis": ax}

    scheme: Any = mark.arg("scheme") or "viridis"  # a Vega scheme name, checked by the parser
    scale = (
        alt.Scale(scheme=scheme, domain=domain, type="symlog")
        if mark.arg("log")
        else alt.Scale(scheme=scheme, domain=domain)
    )
    chart = (
        alt.Chart(inline(frame))
        .mark_rect()
        .encode(
            x=alt.X(**channel("key")),
            y=alt.Y(**channel("query")),
            color=alt.Color(**field("weight", "Q"), scale=scale, title="weight"),
            tooltip=tooltip(frame),
        )
    )
    return props(chart, width=clamp(px * n_k), height=clamp(px * n_q))


def _px(n: int, side: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, side / max(n, 1)))


def _head_label() -> alt.Header:
    return alt.Header(labelExpr="'head ' + datum.value", labelFontSize=11, title=None)


def _heads_grid(frame: pd.DataFrame, mark: Step, domain: list[float], titled: bool):
    """One layer's heads wrapped into rows; one head alone is one larger heatmap."""
    n = max(frame["query"].nunique(), frame["key"].nunique())
    heads = list(dict.fromkeys(frame["head"]))
    layer = str(frame["layer"].iloc[0])
    if len(heads) == 1:
        return _cells(frame, mark, _px(n, 420, 2, 24), True, domain).properties(title=f"{layer}, head {heads[0]}")
    px = _px(n, 220, 1.5, 18)
    chart = _cells(frame, mark, px, px >= 5, domain).facet(
        facet=alt.Facet(**field("head", "O"), header=_head_label(), sort=heads), columns=_columns(len(heads))
    )
    return chart.properties(title=layer) if titled else chart


def _overview(frame: pd.DataFrame, mark: Step, domain: list[float]):
    """Layers as rows, heads as columns: small panels without axes (the tooltip says)."""
    n = max(frame["query"].nunique(), frame["key"].nunique())
    layers = list(dict.fromkeys(frame["layer"]))
    px = _px(n, 84 if len(layers) > 1 else 160, 0.5, 8)
    row = alt.Row(
        **field("layer", "N"), sort=in_order(layers), header=alt.Header(labelAngle=0, labelAlign="left", title=None)
    )
    return _cells(frame, mark, px, False, domain).facet(
        row=row, column=alt.Column(**field("head", "O"), header=_head_label()), spacing=4
    )


# -- past the mark budget: one image per head ------------------------------------------------
def _rasters(maps: list[_Map], mark: Step, layout: str, domain: list[float]):
    """Each head's map as an image, every weight one pixel, in the layout's grid; None
    (the block maxima are drawn instead) where the images would pass the pixel budget or
    could not say where a cell is (an axis sliced from other than 0 in steps of 1)."""
    if any(m.queries != list(range(len(m.queries))) or m.keys != list(range(len(m.keys))) for m in maps):
        return None, []
    panels = sum(len(m.heads) for m in maps)
    if sum(m.w.numel() for m in maps) > raster.PIXEL_BUDGET:
        return None, []
    side = 84 if layout == "overview" and len(maps) > 1 else (420 if panels == 1 else 220)
    scheme = (mark.arg("scheme") or "viridis").lower()
    if scheme not in raster.SCHEMES:
        return None, []
    rows: list[tuple[str, list]] = []
    notes: dict[str, list[str]] = {}
    for m in maps:
        heads, lq, lk = m.w.shape
        width, height = (side, max(20, round(side * lq / lk))) if lk >= lq else (max(20, round(side * lk / lq)), side)
        images = [
            raster.raster(
                m.w[h].double().numpy(),
                (domain[0], domain[1]),
                scheme,
                width,
                height,
                log=bool(mark.arg("log")),
                x_title="key",
                y_title="query",
                axes=layout != "overview" or len(maps) == 1,
            ).properties(title=f"head {m.heads[h]}")
            for h in range(heads)
        ]
        notes.setdefault(note_image(lq, lk), []).append(m.layer)
        rows.append((m.layer, images))
    chart: Any
    if layout == "overview":
        chart = alt.vconcat(*(alt.hconcat(*images, title=layer) for layer, images in rows), spacing=6)
    elif len(rows) == 1:
        chart = alt.concat(*rows[0][1], columns=_columns(len(rows[0][1])))
    else:
        chart = alt.vconcat(
            *(alt.concat(*images, columns=_columns(len(images)), title=layer) for layer, images in rows)
        )
    return chart, _grouped(notes, len(maps))


def visit_attention(data: Data, mark: Step, view: ViewSpec):
    frame, notes = attention_frame(data, view.max_marks, view)
    check_columns(mark, frame)
    layers = list(dict.fromkeys(frame["layer"]))
    layout = mark.arg("layout") or ("heads" if len(layers) == 1 else "overview")
    finite = frame["weight"][frame["weight"].map(math.isfinite)]
    domain = [0.0, float(finite.max()) if len(finite) and finite.max() > 0 else 1.0]
    if "query_end" in frame.columns:  # past the mark budget: images, the data keeps block maxima
        chart, image_notes = _rasters(_maps(data, view)[0], mark, layout, domain)
        if chart is not None:
            notes = [n for n in notes if not n.endswith(note_block_max_tail())] + image_notes
            return frame, declare(chart, "heatmap", layers=layers), notes + [messages.note_rows_sum()]
    if layout == "overview":
        chart = _overview(frame, mark, domain)
    elif len(layers) == 1:
        chart = _heads_grid(frame, mark, domain, False)
    else:
        chart = alt.vconcat(*(_heads_grid(frame[frame["layer"] == layer], mark, domain, True) for layer in layers))
    if "query_end" not in frame.columns:
        notes = notes + [messages.note_rows_sum()]
    return frame, declare(chart, "heatmap", layers=layers), notes
