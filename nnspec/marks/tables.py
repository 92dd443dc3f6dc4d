"""``box`` (five numbers per layer) and ``table`` (any table as text)."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from nnspec.errors import SpecError
from nnspec.execute import messages as execute_messages
from nnspec.execute.data import Data, stats_table
from nnspec.marks import messages
from nnspec.marks.common import (
    category_width,
    check_columns,
    clamp,
    declare,
    field,
    inline,
    nominal_axis,
    opacity,
    props,
    size,
    tooltip,
)
from nnspec.numerics import reduce
from nnspec.query.ast import Step
from nnspec.spec.load import ViewSpec

QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)
SORTED_MAX = 1 << 22  # elements a layer's sort may hold in memory; past it, exact selection in chunks
_CHUNK = 1 << 22  # elements per chunk of the selection passes
_BINS = 1 << 16  # bins of one selection pass


def box_frame(data: Data) -> pd.DataFrame:
    """Five numbers per layer over all finite elements: whiskers at min and max.

    Exact at any size: up to ``SORTED_MAX`` elements by a sort, past it by
    selection (``_select``) in chunks, in memory that does not grow with the
    tensor (a 20k×20k weight: three passes, ~250 MB beyond the weight)."""
    import torch

    rows = []
    for layer, t in data.tensors.items():
        flat = t.detach().reshape(-1)
        if flat.numel() <= SORTED_MAX:
            flat = flat.double()
            finite = flat[torch.isfinite(flat)].sort().values
            n = finite.numel()
            q = [_quantile(finite, p) for p in QUANTILES] if n else [math.nan] * 5
        else:
            q, n = _quantiles_chunked(flat)
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


def _chunks(flat):
    """``flat`` in chunks of ``_CHUNK`` values, half precision as float32."""
    import torch

    for i in range(0, flat.numel(), _CHUNK):
        c = flat[i : i + _CHUNK]
        yield c if c.dtype in (torch.float32, torch.float64) else c.float()


def _quantiles_chunked(flat) -> tuple[list[float], int]:
    """``QUANTILES`` of the finite values of a 1-D tensor, exactly (numpy's linear
    interpolation between closest ranks), and how many values are finite."""
    import torch

    lo, hi, n = math.inf, -math.inf, 0
    for c in _chunks(flat):
        c = c[torch.isfinite(c)]
        if c.numel():
            mn, mx = torch.aminmax(c)
            lo, hi, n = min(lo, float(mn)), max(hi, float(mx)), n + c.numel()
    if n == 0:
        return [math.nan] * 5, 0
    ranks: set[int] = set()
    for p in QUANTILES[1:-1]:
        k = math.floor(p * (n - 1))
        ranks |= {k, min(k + 1, n - 1)}
    value = _select(flat, sorted(ranks), lo, hi)
    value[0], value[n - 1] = lo, hi
    out = []
    for p in QUANTILES:
        pos = p * (n - 1)
        k = math.floor(pos)
        a, b = value[k], value[min(k + 1, n - 1)] if pos > k else value[k]
        out.append(float(a + (b - a) * (pos - k)))
    return out, n


def _bins(c, lo: float, hi: float):
    """The values of chunk ``c`` in [lo, hi] (NaN and ±Inf fall outside) and their bins."""
    c = c[(c >= lo) & (c <= hi)]
    return c, ((c - lo) * (_BINS / (hi - lo))).floor().clamp_(0, _BINS - 1).long()


def _select(flat, ranks: list[int], lo: float, hi: float) -> dict[int, float]:
    """The values of the given ranks (0-based, among the finite values of ``flat``,
    which all lie in [lo, hi]): count the values per bin in chunks, keep the bins
    holding the ranks, sort a bin once it fits in memory, else narrow to it and
    count again. Binning is monotone in value, so a bin is a range of values."""
    import torch

    out: dict[int, float] = {}
    todo = [(ranks, lo, hi, 0)]  # ranks, their interval, how many finite values lie below it
    while todo:
        group, lo, hi, before = todo.pop()
        if lo == hi:
            out.update({k: lo for k in group})
            continue
        counts = torch.zeros(_BINS, dtype=torch.int64)
        for c in _chunks(flat):
            counts += torch.bincount(_bins(c, lo, hi)[1], minlength=_BINS)
        cum = counts.cumsum(0)
        where = {k: int(torch.searchsorted(cum, torch.tensor(k - before + 1))) for k in group}
        wanted = sorted(set(where.values()))
        small = [b for b in wanted if int(counts[b]) <= SORTED_MAX]
        # each small bin's values go into a buffer allocated up front: small tensors kept
        # between the chunks' large temporaries would pin the heap and grow it chunk by chunk
        parts = {b: torch.empty(int(counts[b]), dtype=next(_chunks(flat[:1])).dtype) for b in small}
        filled = dict.fromkeys(small, 0)
        extent = {b: [math.inf, -math.inf] for b in wanted if b not in parts}
        for c in _chunks(flat):
            c, idx = _bins(c, lo, hi)
            for b in wanted:
                vals = c[idx == b]
                if b in parts:
                    parts[b][filled[b] : filled[b] + vals.numel()] = vals
                    filled[b] += vals.numel()
                elif vals.numel():
                    mn, mx = torch.aminmax(vals)
                    extent[b] = [min(extent[b][0], float(mn)), max(extent[b][1], float(mx))]
        for b in wanted:
            first = before + (int(cum[b - 1]) if b else 0)
            mine = [k for k in group if where[k] == b]
            if b in parts:
                values = parts[b].sort().values
                out.update({k: float(values[k - first]) for k in mine})
            else:
                todo.append((mine, extent[b][0], extent[b][1], first))
    return out


def _quantile(sorted_t, p: float) -> float:
    """Linear interpolation between closest ranks, as numpy's default."""
    pos = p * (sorted_t.numel() - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, sorted_t.numel() - 1)
    return float(sorted_t[lo] + (sorted_t[hi] - sorted_t[lo]) * (pos - lo))


def visit_box(data: Data, mark: Step, view: ViewSpec):
    if data.kind != "tensors":
        raise SpecError(execute_messages.step_needs_tensors("box"), mark.span)
    frame = box_frame(data)
    check_columns(mark, frame)
    dims = size(view, 1)
    dims["width"], band = category_width(view, len(frame), dims["width"])
    x = alt.X(**field("layer", "N"), sort=None, axis=nominal_axis(list(frame["layer"]), band))
    box_w = max(4.0, min(18.0, band * 0.6))  # a box narrower than its band: neighbours never touch
    base = alt.Chart().encode(
        x=x,
        tooltip=tooltip(frame),
    )
    base = base.encode(opacity=opacity("layer"))
    chart = props(
        alt.layer(
            base.mark_rule().encode(
                y=alt.Y(**field("min", "Q"), title="value", scale=_whole(frame)), y2=alt.Y2(**field("max"))
            ),
            base.mark_bar(size=box_w).encode(y=alt.Y(**field("q1", "Q")), y2=alt.Y2(**field("q3"))),
            base.mark_tick(color="white", size=box_w).encode(y=alt.Y(**field("median", "Q"))),
            data=inline(frame),
        ),
        **dims,
    )
    notes = [f"{r.layer}: " + messages.note_nonfinite_values(r.nonfinite) for r in frame.itertuples() if r.nonfinite]
    chart = declare(chart, "box", layers=list(frame["layer"]), layer_field="layer")
    return frame, chart, notes + [messages.note_whiskers()]


# --- table ----------------------------------------------------------------------
def visit_table(data: Data, mark: Step, view: ViewSpec):
    if data.kind == "tensors":
        frame = stats_table({k: reduce.stats(t) for k, t in data.tensors.items()})
    else:
        frame = data.table
    check_columns(mark, frame)
    texts = {c: [_fmt(v) for v in frame[c]] for c in frame.columns}
    # each column as wide as its longest text (about 6.5 px a character at 11 px)
    widths = {c: 14 + 6.5 * max([len(str(c))] + [len(t) for t in texts[c]]) for c in frame.columns}
    starts, x = {}, 0.0
    for c in frame.columns:
        starts[c], x = x, x + widths[c]
    cells = [{"row": -1, "x": starts[c], "text": str(c), "head": True} for c in frame.columns]
    for c in frame.columns:
        cells += [{"row": i, "x": starts[c], "text": t, "head": False} for i, t in enumerate(texts[c])]
    scale_x = alt.Scale(domain=[0, x], range=[0, x])
    base = alt.Chart().encode(
        x=alt.X(**field("x", "Q"), axis=None, scale=scale_x),
        y=alt.Y(**field("row", "O"), axis=None),
        text=alt.Text(**field("text", "N")),
    )
    chart = (
        alt.layer(
            base.mark_text(align="left", baseline="middle", fontSize=11, fontWeight="bold").transform_filter(
                "datum.head"
            ),
            base.mark_text(align="left", baseline="middle", fontSize=11).transform_filter("!datum.head"),
            data=inline(pd.DataFrame(cells)),
        )
        .properties(width=clamp(view.width or x), height=clamp(view.height or 18 * (len(frame) + 1)))
        .configure_view(stroke=None)
    )
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    meta = {
        "table": {"columns": [str(c) for c in frame.columns], "rows": rows},
        "layers": list(dict.fromkeys(frame["layer"])) if "layer" in frame else None,
        "layer_field": "layer" if "layer" in frame else None,
        "over_run": True if "run" in frame else None,
    }
    return frame, declare(chart, "table", **meta), []


def _cell(value):
    """A table cell as JSON: numbers stay numbers (the page sorts them), NaN/Inf and others as text."""
    if isinstance(value, bool) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _fmt(value)
    return str(value)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Inf" if value > 0 else "-Inf"
        return f"{value:.4g}"
    return str(value)


def _whole(frame: pd.DataFrame) -> alt.Scale:
    """A value axis that holds every whisker (the layers would otherwise size it from one field)."""
    lo, hi = frame["min"].min(), frame["max"].max()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return alt.Scale()
    pad = (hi - lo) * 0.05 or 1.0
    return alt.Scale(domain=[float(lo - pad), float(hi + pad)], nice=False)
