"""``graph``: the architecture as a layered node-link diagram in Vega-Lite.

Positions come from the Sugiyama layout (nnspec/graph.py); edges are
polylines through the layout's bend points; nodes are boxes coloured by
layer type (or by parameter count, ``color=params``) with their label.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from nnspec.errors import SpecError
from nnspec.execute.data import Data
from nnspec.marks import messages
from nnspec.marks.common import field, inline, tip
from nnspec.query import messages as query_messages
from nnspec.query.ast import Step
from nnspec.spec.load import ViewSpec

BOX = {"TB": (150, 30, 60, 170), "LR": (150, 30, 190, 48)}  # box w, h; px per rank, px per slot
CHAR_PX = 5.6  # the width of a character of a 10 px label, about
WIDEST = 250  # the widest a box grows for its label


def visit_graph(data: Data, mark: Step, view: ViewSpec):
    if data.kind != "graph":
        raise SpecError(messages.needs_graph(), mark.span)
    nodes, edges = data.table, data.edges
    assert nodes is not None and edges is not None  # a graph's Data holds both
    options = data.options | dict(mark.args)
    color_by = options.get("color", "type")
    if color_by not in ("type", "params") and "stat" not in nodes:
        raise SpecError(query_messages.bad_argument("graph", "color", color_by, "type, params or a query"), mark.span)
    direction = options.get("direction", "TB")
    box_w, box_h, per_rank, per_slot = BOX[direction]
    # boxes widen to the longest label line, up to WIDEST; longer lines keep their end (the tooltip has all)
    longest = max((len(line) for label in nodes["label"] for line in str(label).split("\n")), default=0)
    box_w = int(min(max(box_w, longest * CHAR_PX + 14), WIDEST))
    wider = box_w - BOX[direction][0]
    per_slot, per_rank = (per_slot + wider, per_rank) if direction == "TB" else (per_slot, per_rank + wider)
    xs, ys = nodes["x"], nodes["y"]
    across, ranks = (xs, ys) if direction == "TB" else (ys, xs)
    # the layout may place two nodes of a rank half a unit apart: size a unit so boxes never touch
    room = (box_w if direction == "TB" else box_h) + 14
    slot = max(per_slot, room / _min_gap(across, ranks))
    across_px = (across.max() - across.min() + 1) * slot
    ranks_px = (ranks.max() - ranks.min() + 1) * per_rank
    width, height = (across_px, ranks_px) if direction == "TB" else (ranks_px, across_px)
    pad_x = 0.6 if direction == "TB" else 0.7
    x = alt.X(**field("x", "Q"), axis=None, scale=alt.Scale(domain=[xs.min() - pad_x, xs.max() + pad_x]))
    y = alt.Y(**field("y", "Q"), axis=None, scale=alt.Scale(domain=[ys.min() - 0.6, ys.max() + 0.6], reverse=True))
    rows = [
        {"edge": i, "seq": j, "x": float(px), "y": float(py)}
        for i, pts in enumerate(edges["points"])
        for j, (px, py) in enumerate(pts)
    ]
    lines = (
        alt.Chart(inline(pd.DataFrame(rows, columns=["edge", "seq", "x", "y"])))
        .mark_line(color="#8a93a5", strokeWidth=1.3)
        .encode(x=x, y=y, detail=alt.Detail(**field("edge", "N")), order=alt.Order(**field("seq", "Q")))
    )
    drawn = nodes.drop(columns=["kind"])
    fits = int((box_w - 10) / CHAR_PX)
    drawn["label"] = ["\n".join(_fit(line, fits) for line in str(label).split("\n")) for label in drawn["label"]]
    if color_by == "type":
        color = alt.Color(
            **field("type", "N"), scale=alt.Scale(scheme="tableau20"), legend=alt.Legend(title="layer type")
        )
    elif color_by == "params":
        color = alt.Color(
            **field("params", "Q"), scale=alt.Scale(scheme="viridis", type="symlog"), legend=alt.Legend(title="params")
        )
    else:  # a value per node from another query; nodes without one stay grey (below)
        color = alt.Color(**field("stat", "Q"), scale=alt.Scale(scheme="viridis"), legend=alt.Legend(title="value"))
    tips = [tip(c, t) for c, t in (("path", "N"), ("type", "N"), ("shape", "N"), ("params", "Q"), ("fold", "Q"))]
    if "stat" in nodes:
        tips.append(tip("stat", "Q", format=".4g", title="value"))
    opacity = 0.9 if color_by == "type" else 0.6  # dark viridis boxes would hide the labels
    boxes = alt.Chart(inline(drawn)).mark_rect(width=box_w, height=box_h, cornerRadius=4, opacity=opacity)
    boxes = boxes.encode(x=x, y=y, color=color, tooltip=tips)
    if "stat" in nodes:
        grey = alt.Chart(inline(drawn)).mark_rect(width=box_w, height=box_h, cornerRadius=4, color="#d5d9e0")
        boxes = alt.layer(grey.encode(x=x, y=y, tooltip=tips).transform_filter("!isValid(datum.stat)"), boxes)
    labels = alt.Chart(inline(drawn)).mark_text(fontSize=10, lineBreak="\n", color="#111")
    labels = labels.encode(x=x, y=y, text=alt.Text(**field("label", "N")), tooltip=tips)
    chart = (
        alt.layer(lines, boxes, labels)
        .configure_view(stroke=None)
        .properties(width=view.width or int(max(width, 200)), height=view.height or int(max(height, 120)))
    )
    nodes = nodes.copy()
    nodes.attrs["edges"] = edges[["source", "target"]].copy()  # DESIGN §4: nodes, and edges beside them
    return nodes, chart, []


def _min_gap(across: pd.Series, ranks: pd.Series) -> float:
    """The smallest distance between two nodes of one rank (1 when none share a rank)."""
    gap = 1.0
    for _, group in across.groupby(ranks):
        values = sorted(group)
        gap = min([gap] + [b - a for a, b in zip(values, values[1:]) if b > a])
    return max(gap, 0.05)


def _fit(line: str, chars: int) -> str:
    """A label line cut to ``chars`` from the left, at a dot where it can: the module's own name stays."""
    if len(line) <= chars:
        return line
    tail = line[-(chars - 1) :]
    dot = tail.find(".")
    return "…" + (tail[dot + 1 :] if 0 <= dot < len(tail) - 4 else tail)
