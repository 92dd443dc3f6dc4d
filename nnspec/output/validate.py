"""Every chart nnspec draws is checked against the Vega-Lite schema; this makes
the check cost microseconds instead of milliseconds.

Altair validates a chart with the ``jsonschema`` package, which walks the
schema's ``anyOf`` branches in Python: about 5 ms of a 7 ms view. The same
check in ``jsonschema-rs`` (the schema compiled once per process, 0.04 s)
takes 0.02 ms, so a render keeps the check and loses the cost. Where the two
could disagree the stricter wins: a chart the fast check refuses is handed to
Altair's own validation, whose error names the wrong property; if Altair
accepts it, the fast check's error is raised instead. Without
``jsonschema-rs`` (a platform with no wheel) Altair's validation runs, as
before.

The fast check sees the finished chart (with the theme's config and the
datasets), so it checks more than Altair's, which runs before they are added.
"""

from __future__ import annotations

import functools

REF = "#/definitions/"


def vega_lite(chart) -> dict:
    """The chart's Vega-Lite as a dict, checked against the schema (raises if it is not valid)."""
    check = _checker()
    if check is None:
        return _lists(chart.to_dict())
    spec = _lists(chart.to_dict(validate=False))
    if check.is_valid(spec):
        return spec
    chart.to_dict()  # Altair's own validation: its message says which property is wrong
    raise ValueError(f"the chart does not match the Vega-Lite schema: {next(iter(check.iter_errors(spec)))}")


def _lists(spec: dict) -> dict:
    """Data sets as lists (marks hand Altair their rows as a tuple, ``marks.common.Rows``)."""
    sets = spec.get("datasets")
    if isinstance(sets, dict):
        spec["datasets"] = {k: list(v) if isinstance(v, tuple) else v for k, v in sets.items()}
    return spec


@functools.cache
def _checker():
    try:
        import jsonschema_rs
    except ImportError:
        return None
    import altair as alt

    return jsonschema_rs.Draft7Validator(plain_refs(alt.Chart._rootschema))


def plain_refs(schema: dict) -> dict:
    """The schema with its definitions renamed ``d0``, ``d1``, …: Vega-Lite's names
    (``MarkPropDef<(Gradient|string|null)>``) are not valid URI references, which
    ``jsonschema-rs`` requires of a ``$ref``."""
    names = {name: f"d{i}" for i, name in enumerate(schema.get("definitions", {}))}

    def walk(x):
        if isinstance(x, dict):
            return {k: REF + names[v[len(REF) :]] if k == "$ref" else walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    out = walk({k: v for k, v in schema.items() if k != "definitions"})
    out["definitions"] = {names[n]: walk(d) for n, d in schema.get("definitions", {}).items()}
    return out
