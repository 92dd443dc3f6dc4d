"""Stage 5: Data ──mark──▶ (tidy frame, Altair chart, notes).

One ``visit_<mark>`` per mark (``heatmap``, ``bars``, ``tables``); a query
without a mark gets ``natural_mark``. Every chart stays within the view's mark
budget: larger tensors are aggregated first and the subtitle says so.
"""

from __future__ import annotations

from collections.abc import Callable

from altair.utils.schemapi import debug_mode

from nnspec.errors import InternalError, SpecError
from nnspec.execute.data import Data
from nnspec.marks import messages
from nnspec.marks.attention import visit_attention
from nnspec.marks.bars import (
    visit_bar,
    visit_histogram,
    visit_line,
    visit_scatter,
)
from nnspec.marks.common import check_scheme_name, finish
from nnspec.marks.graph import visit_graph
from nnspec.marks.heatmap import visit_heatmap
from nnspec.marks.images import visit_images
from nnspec.marks.steps import SERIES_KINDS, visit_ridgeline, visit_steps_line
from nnspec.marks.tables import visit_box, visit_table
from nnspec.query.ast import Step
from nnspec.query.parser import query_span
from nnspec.spec.load import ViewSpec

Visitor = Callable[[Data, Step, ViewSpec], tuple]
# one visitor per mark of the query language (nnspec.query.catalog.MARKS), by
# name; tests/test_catalog.py keeps the two equal. ``draw`` sends a few data
# kinds elsewhere: attention to visit_attention, series over steps to
# visit_steps_line, histograms over steps to visit_ridgeline.
VISITORS: dict[str, Visitor] = {
    "heatmap": visit_heatmap,
    "histogram": visit_histogram,
    "bar": visit_bar,
    "line": visit_line,
    "box": visit_box,
    "table": visit_table,
    "graph": visit_graph,
    "images": visit_images,
    "scatter": visit_scatter,
    "ridgeline": visit_ridgeline,
}
NATURAL = {
    "histogram": "histogram",
    "stats": "bar",
    "scalar": "bar",
    "features": "bar",
    "graph": "graph",
    "summary": "table",
    "function": "line",
    "pca": "scatter",
    "series": "line",
    "stats_series": "line",
    "histogram_series": "ridgeline",
}


def natural_mark(data: Data, budget: int) -> str:
    if data.kind in NATURAL:
        return NATURAL[data.kind]
    if data.source == "attention":
        return "heatmap"
    if data.source == "saliency":
        return "images"
    dims = {t.dim() for t in data.tensors.values()}
    if dims == {2}:
        return "heatmap"
    if dims == {1} and sum(t.numel() for t in data.tensors.values()) <= budget:
        return "bar"
    return "histogram"


def draw(data: Data, mark: Step | None, view: ViewSpec):
    """The view's frame, chart and notes."""
    name = mark.name if mark else natural_mark(data, view.max_marks)
    # a query without a mark: errors of the mark it gets point at the query
    mark = mark or Step(name, (), query_span(view.query_span, view.query_quoted, view.query))
    visit = visit_attention if (name == "heatmap" and data.source == "attention") else VISITORS.get(name)
    if data.kind == "histogram_series" and name == "histogram":  # "… over steps | histogram(bins=30)"
        visit = visit_ridgeline
    elif data.kind in SERIES_KINDS and name not in ("ridgeline", "table"):
        if name != "line":
            raise SpecError(messages.series_marks(name), mark.span)
        visit = visit_steps_line
    if visit is None:
        raise InternalError(f"no visitor for mark '{name}'")
    check_scheme_name(mark)
    # Altair validates some objects as they are made (a mark, a title), each on its own:
    # not here, where the view's one to_dict validates the whole chart
    with debug_mode(False):
        frame, chart, notes = visit(data, mark, view)
        if len(frame) > view.max_marks:
            raise SpecError(messages.over_budget(name, len(frame), view.max_marks), mark.span)
        return frame, finish(chart, view, data.notes + notes, name), data.notes + notes
