"""``graph``: the architecture as a layered node-link diagram in Vega-Lite.

Positions come from the Sugiyama layout (nnspec/graph.py); edges are
polylines through the layout's bend points; nodes are boxes coloured by
layer type (or by parameter count, ``color=params``) with their label.
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from nnspec.errors import SpecError
from nnspec.execute.data import Data
from nnspec.marks import messages
from nnspec.marks.common import declare, field, inline, tip
from nnspec.query import messages as query_messages
from nnspec.query.ast import Step
from nnspec.spec.load import ViewSpec

BOX = {"TB": (150, 30, 60, 170), "LR": (150, 30, 190, 48)}  # box w, h; px per rank, px per slot
EDGE = "#8a93a5"
NARROW, WIDE = set("ijlrtfI.,:;|'!()[] "), set("mwMWOQGDHNU@%")  # a 10 px sans-serif's narrow and wide glyphs
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
    longest = max((_text_px(line) for label in nodes["label"] for line in str(label).split("\n")), default=0)
    box_w = int(min(max(box_w, longest + 14), WIDEST))
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
    # px per layout unit, to end each edge at its target's border with an arrowhead there
    sx = (view.width or max(width, 200)) / (xs.max() - xs.min() + 2 * pad_x)
    sy = (view.height or max(height, 120)) / (ys.max() - ys.min() + 1.2)
    rows, heads = _edge_rows(edges, (sx, sy), (box_w / 2, box_h / 2))
    lines = (
        alt.Chart(inline(pd.DataFrame(rows, columns=["edge", "seq", "x", "y"])))
        .mark_line(color=EDGE, strokeWidth=1.3)
        .encode(x=x, y=y, detail=alt.Detail(**field("edge", "N")), order=alt.Order(**field("seq", "Q")))
    )
    arrows = (
        alt.Chart(inline(pd.DataFrame(heads, columns=["x", "y", "angle"])))
        .mark_point(shape="triangle", size=45, filled=True, color=EDGE, opacity=1)
        .encode(x=x, y=y, angle=alt.Angle(**field("angle", "Q"), scale=None))
    )
    drawn = nodes.drop(columns=["kind"])
    drawn["label"] = ["\n".join(_fit(line, box_w - 10) for line in str(label).split("\n")) for label in drawn["label"]]
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
        alt.layer(lines, arrows, boxes, labels)
        .configure_view(stroke=None)
        .properties(width=view.width or int(max(width, 200)), height=view.height or int(max(height, 120)))
    )
    meta: dict = {"colors": [{"field": "type"}] if color_by == "type" else None, "explorer": data.explorer}
    if data.explorer:  # every module and every type the explorer may draw, expanded or not
        meta |= {"layers": [p for p in data.explorer["m"] if p], "types": _types(data.explorer)}
    else:
        meta["layers"] = sorted({p for p in nodes["path"] if p and "–" not in p})
    chart = declare(chart, "graph", **meta)
    nodes = nodes.copy()
    nodes.attrs["edges"] = edges[["source", "target"]].copy()  # DESIGN §4: nodes, and edges beside them
    return nodes, chart, []


def _types(explorer: dict) -> list:
    """The layer types of the explorer's nodes, in order of first appearance (the dashboard's palette covers them)."""
    seen: dict = {}
    for _, kind, name, scope, _, _ in explorer["n"]:
        seen[explorer["m"][scope]["t"] if kind == "m" else name] = None
    for path, module in explorer["m"].items():  # collapsed groups: GPT2Block, Sequential, …
        if path:
            seen.setdefault(module["t"], None)
    return list(seen)


def _min_gap(across: pd.Series, ranks: pd.Series) -> float:
    """The smallest distance between two nodes of one rank (1 when none share a rank)."""
    gap = 1.0
    for _, group in across.groupby(ranks):
        values = sorted(group)
        gap = min([gap] + [b - a for a, b in zip(values, values[1:]) if b > a])
    return max(gap, 0.05)


def _text_px(text: str) -> float:
    """The width of ``text`` in a 10 px sans-serif label, over-estimated a little so it always fits."""
    return sum(3.4 if c in NARROW else 8.8 if c in WIDE else 7.0 if c.isupper() else 6.0 for c in text)


def _fit(line: str, px: float) -> str:
    """A label line cut from the left to ``px`` wide, at a dot where it can: the module's own name stays."""
    if _text_px(line) <= px:
        return line
    tail = line
    while tail and _text_px("…" + tail) > px:
        tail = tail[1:]
    dot = tail.find(".")
    return "…" + (tail[dot + 1 :] if 0 <= dot < len(tail) - 4 else tail)


def _edge_rows(edges: pd.DataFrame, scale: tuple, half: tuple) -> tuple[list, list]:
    """Each edge's points, its last one moved back from the target's centre to its
    box's border (less the arrowhead), and an arrowhead per edge there: x, y and
    its angle (degrees clockwise from pointing up, as Vega turns a triangle)."""
    rows, heads = [], []
    for i, pts in enumerate(edges["points"]):
        pts = [(float(px), float(py)) for px, py in pts]
        (ax, ay), (bx, by) = pts[-2] if len(pts) > 1 else pts[-1], pts[-1]
        vx, vy = (bx - ax) * scale[0], (by - ay) * scale[1]  # screen px, y down (the y scale is reversed)
        length = math.hypot(vx, vy)
        if length > 1e-9:
            inside = min(half[0] / abs(vx) if vx else math.inf, half[1] / abs(vy) if vy else math.inf)
            back = min(inside * length + 4.5, length)  # px from the centre: the border and half an arrowhead
            tip = (bx - vx / length * back / scale[0], by - vy / length * back / scale[1])
            pts[-1] = (bx - vx / length * (back + 3) / scale[0], by - vy / length * (back + 3) / scale[1])
            heads.append({"x": tip[0], "y": tip[1], "angle": math.degrees(math.atan2(vx, -vy)) % 360})
        rows += [{"edge": i, "seq": j, "x": px, "y": py} for j, (px, py) in enumerate(pts)]
    return rows, heads
