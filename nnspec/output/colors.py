"""One colour per layer type and per run across every chart of a dashboard.

Each chart scales its colours alone: a graph at depth 2 and a summary at depth
3 gave ``Linear`` two colours, and a ridgeline that sorted runs by name swapped
them against the loss. Marks declare which colour encodings are by layer type
or by run (``usermeta.nnspec.colors``, design §7); before the page is written
the dashboard gives each such encoding the same domain and range: runs in
``--run`` order, types in order of first appearance over the views.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Vega's tableau20 (vega-scale's schemes), as a range so every chart agrees on it
TABLEAU20 = (
    "#4c78a8 #9ecae9 #f58518 #ffbf79 #54a24b #88d27a #b79a20 #f2cf5b #439894 #83bcb6 "
    "#e45756 #ff9d98 #79706e #bab0ac #d67195 #fcbfd2 #b279a2 #d6a5c9 #9e765f #d8b5a5"
).split()
# tableau10 for runs: a few well-separated hues
TABLEAU10 = "#4c78a8 #f58518 #e45756 #72b7b2 #54a24b #eeca3b #b279a2 #ff9da6 #9d755d #bab0ac".split()
CHANNELS = ("color", "fill", "stroke")


def _declared(spec: dict) -> list[str]:
    meta = (spec.get("usermeta") or {}).get("nnspec") or {}
    return [c["field"] for c in meta.get("colors", ()) if isinstance(c, dict) and c.get("field") in ("type", "run")]


DATA = ("values", "datasets", "usermeta")  # rows and the page's declarations: never an encoding inside


def _walk(node) -> Iterable[dict]:
    """Every dict of a Vega-Lite spec's structure, not descending into its data (``DATA``)."""
    if isinstance(node, dict):
        yield node
        for k, v in node.items():
            if k not in DATA:
                yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _values(spec: dict, field: str) -> list:
    """The values of ``field`` in the chart's inline rows, in order of first appearance."""
    seen: dict = {}
    for node in _walk(spec):
        rows = node.get("values") if isinstance(node.get("values"), list) else None
        for row in rows or ():
            if isinstance(row, dict) and row.get(field) is not None:
                seen.setdefault(row[field], None)
    for rows in (spec.get("datasets") or {}).values():
        for row in rows:
            if isinstance(row, dict) and row.get(field) is not None:
                seen.setdefault(row[field], None)
    return list(seen)


def palettes(specs: list[dict | None], runs: Sequence[str] = ()) -> dict[str, dict]:
    """``{"type": {value: colour}, "run": {...}}`` over every declared chart."""
    order: dict[str, dict] = {"type": {}, "run": {r: None for r in runs}}
    for spec in specs:
        if not spec:
            continue
        for field in _declared(spec):
            for v in _values(spec, field):
                order[field].setdefault(v, None)
            if field == "type":
                for t in (spec.get("usermeta") or {}).get("nnspec", {}).get("types", ()):
                    order[field].setdefault(t, None)
    out = {}
    for field, values in order.items():
        colours = TABLEAU10 if field == "run" and len(values) <= len(TABLEAU10) else TABLEAU20
        out[field] = {str(v): colours[i % len(colours)] for i, v in enumerate(values)}
    return out


def unify(spec: dict | None, pal: dict[str, dict]) -> dict | None:
    """A copy of ``spec`` whose declared colour encodings use the dashboard's palette."""
    if not spec or not _declared(spec):
        return spec
    fields = set(_declared(spec))
    spec = _copy(spec)
    for node in _walk(spec):
        enc = node.get("encoding")
        if not isinstance(enc, dict):
            continue
        for ch in CHANNELS:
            c = enc.get(ch)
            if isinstance(c, dict) and c.get("field") in fields and pal.get(c["field"]):
                mapping = pal[c["field"]]
                scale = {k: v for k, v in (c.get("scale") or {}).items() if k not in ("scheme", "domain", "range")}
                c["scale"] = scale | {"domain": list(mapping), "range": list(mapping.values())}
    meta = spec["usermeta"]["nnspec"]
    first = _declared(spec)[0]
    meta["palette"] = dict(pal.get(first) or {})  # value -> colour (the graph explorer colours its boxes by it)
    return spec


def _copy(node):
    """A copy of the structure ``unify`` changes; the data (rows, datasets) is shared, not copied."""
    if isinstance(node, dict):
        return {k: _shared(k, v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


def _shared(key: str, value):
    if key in ("values", "datasets"):
        return value
    if key == "usermeta" and isinstance(value, dict):  # only its ``nnspec`` dict gains a key: the rest is shared
        return {k: dict(v) if isinstance(v, dict) else v for k, v in value.items()}
    return _copy(value)
