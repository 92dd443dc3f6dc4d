"""Helpers every mark shares: inline data, tooltips, sizes, facets, colour scales."""

from __future__ import annotations

import difflib
import math
from functools import cache

import altair as alt
import pandas as pd

from nnspec.errors import SpecError
from nnspec.marks import messages
from nnspec.query.ast import Step
from nnspec.spec import messages as spec_messages
from nnspec.spec.load import ViewSpec

DIVERGING = "blueorange"
SEQUENTIAL = "viridis"
FACET_COLUMNS = 3
MAX_SIZE = 4000  # px: the widest and tallest a chart (or one panel of it) is drawn, as the spec's width/height


TYPES = {"Q": "quantitative", "N": "nominal", "O": "ordinal", "T": "temporal"}


def field(name: str, type: str | None = None, **kw) -> dict:
    """A channel's keyword arguments for column ``name`` of type ``"Q"``, ``"N"``,
    ``"O"`` or ``"T"`` (none for ``x2``/``y2``), e.g. ``alt.X(**field("count", "Q"))``.

    Marks build channels as objects with an explicit ``field`` and ``type``, never
    as shorthand strings (``"count:Q"``): Altair turns a string into a channel by
    hashing its ~570 schema classes each time, most of a chart's cost, and the
    Vega-Lite is the same."""
    out = {"field": name, **kw}
    if type is not None:
        out["type"] = TYPES[type]
    return out


def tip(name: str, type: str, **kw) -> alt.Tooltip:
    """A tooltip channel for column ``name`` (``field``'s types)."""
    return alt.Tooltip(**field(name, type, **kw))


def inline(frame: pd.DataFrame) -> dict:
    """Inline rows for the chart, as a plain ``{"values": [...]}``: Altair then
    neither walks nor validates each row (seconds for 10,000), and our mark
    budget, not its 5,000-row guard, limits them. NaN and ±Inf become null
    (their flags and notes say which)."""
    rows = frame.to_dict("records")
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                row[k] = None
    return {"values": Rows(rows)}


class Rows(tuple):
    """A chart's rows as a tuple: Altair deep-copies lists and dicts (each layer, each
    ``properties``), walking every row, and passes other values through; the rows are
    never changed after the mark builds them, so sharing them is safe. ``to_dict``
    moves them to ``datasets`` as they are, where ``output.validate`` makes them a list."""

    __slots__ = ()


def tooltip(frame: pd.DataFrame) -> list:
    """Every column, typed: numbers to 4 significant digits."""
    out = []
    for c in frame.columns:
        kind = frame[c].dtype.kind
        if kind == "f":
            out.append(tip(c, "Q", format=".4g"))
        else:
            out.append(tip(c, "Q" if kind in "iu" else "N"))
    return out


def props(chart, **kw):
    """``chart.properties(**kw)`` without validating each property on its own: the
    view's Vega-Lite is made by one ``to_dict``, which validates the whole chart."""
    out = chart.copy(deep=False)
    for k, v in kw.items():
        setattr(out, k, v)
    return out


LAYER_PARAM = "nnspec_layer"  # the layer the page highlights ("" none): design §7
SMOOTH_PARAM = "nnspec_smoothing"  # the page's EMA weight (0: raw lines only)
DIM = 0.15  # opacity of marks that are not the picked layer, or not the legend's pick


def declare(chart, kind: str, **meta):
    """The chart with ``usermeta.nnspec`` (design §7): what it draws and offers the page."""
    old = chart.usermeta if isinstance(chart.usermeta, dict) else {}
    mine = {**old.get("nnspec", {}), "kind": kind, **{k: v for k, v in meta.items() if v is not None}}
    return props(chart, usermeta={**old, "nnspec": mine})


def meta_of(chart) -> dict:
    return chart.usermeta.get("nnspec", {}) if isinstance(chart.usermeta, dict) else {}


def dim_test(layer_field: str) -> str:
    """True for a mark whose layer is neither the picked one nor under it."""
    f = f"datum[{layer_field!r}]"
    return f"{LAYER_PARAM} != '' && {f} != {LAYER_PARAM} && indexof({f} + '', {LAYER_PARAM} + '.') != 0"


def opacity(layer_field: str | None = None, pick=None, value: float = 1.0):
    """An opacity encoding: dimmed when the page picks another layer, or the legend another entry."""
    conditions: list[dict] = []
    if layer_field:
        conditions.append({"test": dim_test(layer_field), "value": DIM})
    if pick is not None:
        conditions.append({"param": pick.name, "value": value, "empty": True})
        return alt.OpacityValue(condition=conditions, value=DIM)
    return alt.OpacityValue(condition=conditions, value=value) if conditions else alt.OpacityValue(value=value)


def legend_pick(field_name: str, name: str = "nnspec_pick"):
    """Clicking a legend entry isolates it (shift-click adds), double-click clears."""
    return alt.selection_point(name=name, fields=[field_name], bind="legend")


def log_meta(values, field_name: str, channel: str = "y") -> dict:
    """``usermeta.nnspec.log``: log when every drawn value is > 0, else symlog at the smallest nonzero |v|."""
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(float(v))]
    if finite and all(v > 0 for v in finite):
        return {"field": field_name, "channel": channel, "type": "log"}
    nonzero = [abs(v) for v in finite if v != 0]
    return {"field": field_name, "channel": channel, "type": "symlog", "constant": min(nonzero) if nonzero else 1.0}


def log_scale(meta: dict) -> alt.Scale:
    if meta["type"] == "log":
        return alt.Scale(type="log")
    return alt.Scale(type="symlog", constant=meta["constant"])


def log_axis(meta: dict | None, values, **kw) -> alt.Axis:
    """A value axis; on a symlog scale, ticks at 0 and signed powers of ten (Vega's own
    symlog ticks are linear in the value and bunch at one end)."""
    # no format of our own on linear and log axes: a format without a precision makes Vega
    # derive one from the tick step, and 0.0012 was labelled "0.001" beside 0.001
    if not meta or meta["type"] != "symlog":
        return alt.Axis(**kw)
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(float(v))]
    if not finite:
        return alt.Axis(**kw)
    kw["format"] = ".3~g"  # signed powers of ten, each its own label (1e-7, 0.01, 100)
    lo, hi = min(finite + [0.0]), max(finite + [0.0])
    top = max(abs(lo), abs(hi), meta["constant"])
    first, last = math.floor(math.log10(meta["constant"])), math.ceil(math.log10(top))
    every = max(1, math.ceil((last - first + 1) / 5))
    decades = [10.0**k for k in range(last, first - 1, -every)]
    ticks = [-d for d in decades if -d >= lo * 1.0001] + [0.0] + [d for d in reversed(decades) if d <= hi * 1.0001]
    return alt.Axis(values=ticks, **kw)


def _top_params(meta: dict) -> list:
    """The variable params the page sets (design §7), for what the chart declares."""
    wanted: list[dict] = []
    if meta.get("layer_field"):
        wanted.append({"name": LAYER_PARAM, "value": ""})
    if meta.get("smooth"):
        wanted.append({"name": SMOOTH_PARAM, "value": 0})
    return wanted


def finish(chart, view: ViewSpec, notes: list[str], kind: str = ""):
    title = alt.TitleParams(view.title, subtitle=notes or alt.Undefined, anchor="start")
    if "kind" not in meta_of(chart):  # a mark that declares nothing else still says what it is
        chart = declare(chart, kind or "chart")
    extra = _top_params(meta_of(chart))
    out = props(chart, title=title)
    if extra:
        have = list(chart.params) if isinstance(chart.params, list) else []
        out = props(out, params=have + [alt.VariableParameter(**p) for p in extra])
    return out


CHAR_PX = 6.5  # about one character of an 11 px axis label
HORIZONTAL_BARS = 16  # past this many bars, bars lie down: one readable label a row
BAND = 18  # px per bar or row of a long chart


def nominal_axis(labels: list, band: float) -> alt.Axis:
    """Labels flat when the longest fits its band; else slanted, cut at a readable length (the tooltip has all)."""
    longest = max((len(str(v)) for v in labels), default=1)
    if longest * CHAR_PX <= band:
        return alt.Axis(labelAngle=0, labelLimit=max(band, 40))
    return alt.Axis(labelAngle=-40, labelAlign="right", labelLimit=180, labelOverlap=False)


def category_width(view: ViewSpec, n: int, default: int) -> tuple[object, float]:
    """(width, band) of a chart with ``n`` categories along x: past ``HORIZONTAL_BARS`` one
    ``BAND`` each (up to MAX_SIZE), else the default width shared."""
    if view.width:
        return clamp(view.width), clamp(view.width) / max(n, 1)
    if n > HORIZONTAL_BARS:
        return (alt.Step(BAND) if BAND * n <= MAX_SIZE else MAX_SIZE), BAND
    return default, default / max(n, 1)


def clamp(px: float) -> int:
    """A size in px a mark computed (or a spec gave), within 1 … ``MAX_SIZE``."""
    return int(min(max(round(px), 1), MAX_SIZE))


def size(view: ViewSpec, n_panels: int, width: int = 360, height: int = 240) -> dict:
    if n_panels > 1:
        width, height = 220, 160
    return {"width": clamp(view.width or width), "height": clamp(view.height or height)}


@cache
def vega_schemes() -> tuple[str, ...]:
    """Every colour scheme name Vega-Lite accepts (Altair's schema), in its order."""
    out: list[str] = []
    for kind in ("Categorical", "SequentialSingleHue", "SequentialMultiHue", "Diverging", "Cyclical"):
        enum = getattr(alt, kind).resolve_references().get("enum", [])
        out += [str(e) for e in enum]
    return tuple(out)


def check_scheme_name(mark: Step) -> None:
    """``scheme=`` names one of Vega's schemes: a located error listing them, not a schema error while drawing."""
    scheme = mark.arg("scheme")
    if scheme is None:
        return
    known = vega_schemes()
    if scheme in known:
        return
    base = [k for k in known if not k.rsplit("-", 1)[-1].isdigit()]
    close = difflib.get_close_matches(str(scheme).lower(), base, n=1)
    hint = spec_messages.did_you_mean(close[0]) if close else None
    raise SpecError(messages.unknown_scheme(mark.name, str(scheme), base), mark.span, hint)


def check_columns(mark: Step, frame: pd.DataFrame) -> None:
    for key in ("x", "y", "color", "facet"):
        col = mark.arg(key)
        if col is not None and col not in frame.columns:
            raise SpecError(messages.unknown_column(mark.name, col, list(frame.columns)), mark.span)


_LINE_BREAKS = ("\u2028", "\u2029")


def in_order(values) -> list | str:
    """A custom sort for a channel or facet: ``values`` in order of first appearance.
    Vega-Lite writes a custom sort into a Vega expression with the values as string
    literals, where a raw U+2028/U+2029 breaks the page; a label holding one is sorted
    by value instead ("ascending"): the chart still draws, in another order."""
    order = list(dict.fromkeys(values))
    if any(isinstance(v, str) and any(c in v for c in _LINE_BREAKS) for v in order):
        return "ascending"
    return order


def facet(chart, frame: pd.DataFrame, mark: Step, independent=("x", "y")):
    """Facet by ``facet=`` (or by layer when there are several), else the chart."""
    by = mark.arg("facet") or ("layer" if "layer" in frame and frame["layer"].nunique() > 1 else None)
    if by is None:
        return chart
    faceted = chart.facet(
        facet=alt.Facet(**field(by, "N"), sort=in_order(frame[by]), title=None), columns=FACET_COLUMNS
    )
    return faceted.resolve_scale(**{k: "independent" for k in independent})


def color_scale(values: pd.Series, mark: Step) -> alt.Scale:
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


def color_domain(lo: float, hi: float, mark: Step) -> tuple[str, tuple[float, float], float | None]:
    """``color_scale``'s choice for data spanning lo..hi, with its domain spelled out
    (an image's colours are computed here, not by Vega): ``(scheme, domain, mid)``.
    Both signs: the diverging scheme over ±max|v|, centred at 0; else the
    sequential one over lo..hi; ``scheme=`` keeps lo..hi."""
    if mark.arg("scheme"):
        return str(mark.arg("scheme")), (lo, hi), None
    if lo < 0 < hi:
        m = max(-lo, hi)
        return DIVERGING, (-m, m), 0.0
    return SEQUENTIAL, (lo, hi), None
