"""The dashboard page: one card per view, a sidebar, and inline copies of the Vega
JavaScript and of the page's own assets (``assets/page.css``, ``page.js``, the
graph explorer ``graph.js`` when present), so it opens with no network.

What the page does with each chart is declared by the marks in the chart's
``usermeta.nnspec`` (docs/design.md §7); this module only lays the cards out."""

from __future__ import annotations

import html
import json

from nnspec.errors import InternalError
from nnspec.output.assets import asset
from nnspec.output.bundle import javascript_bundle

_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _script_json(obj) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' (so no '</script>',
    no '<!--' that would keep the element open), no line separators. The same
    JSON value: these characters only occur inside strings, where the escape means them."""
    text = json.dumps(obj, sort_keys=True)
    return text.translate(_SCRIPT_ESCAPES)


def _script(name: str, optional: bool = False) -> str:
    """An asset's JavaScript, checked to be safe inline (it is ours, but a slip would break every page)."""
    try:
        js = asset(name)
    except FileNotFoundError:
        if optional:
            return ""
        raise
    if "</script" in js.lower() or "<!--" in js:
        raise InternalError(f"nnspec/output/assets/{name} cannot be inlined: it contains '</script' or '<!--'")
    return f"<script>{js}</script>"


def _offers(spec: dict | None) -> dict:
    """The chart's ``usermeta.nnspec`` declarations (empty when absent or malformed)."""
    meta = (spec or {}).get("usermeta")
    meta = meta.get("nnspec") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def _runs_table(runs: list[dict]) -> dict:
    """Per run its hyperparameters as {columns, rows}: columns in order of first appearance ("run" first)."""
    columns: list[str] = []
    for r in runs:
        columns += [k for k in r if k not in columns]
    return {"columns": columns, "rows": [[r.get(c) for c in columns] for r in runs]}


def page(
    title: str,
    description: str,
    cards: list[dict],
    vl_version: str,
    footer: str = "",
    checks=(),
    runs: list[dict] | None = None,
) -> str:
    """``cards``: dicts with title, query, description, notes, spec (Vega-Lite dict) or error, and
    group/columns for a repeated view's copies; ``checks``: dicts with text, passed, line (the expect:
    entries' results); ``runs``: per drawn run its hyperparameters, the first key "run"."""
    esc = html.escape
    side, body = [], []
    if runs:
        side.append('<li><a href="#runs">Runs</a></li>')
        body.append('<section class="panel runs" id="runs"><h2>Runs</h2><div class="nn-table" data-table="runs-table">')
        body.append(f'</div><script type="application/json" id="runs-table">{_script_json(_runs_table(runs))}</script>')
        body.append("</section>")
    if checks:
        failed = sum(not c["passed"] for c in checks)
        head = f"Checks: {len(checks) - failed} of {len(checks)} pass"
        side.append(f'<li{" class=failed" if failed else ""}><a href="#checks">{esc(head)}</a></li>')
        body.append(f'<section class="card checks{" failed" if failed else ""}" id="checks"><h2>{esc(head)}</h2><ul>')
        for c in checks:
            body.append(f'<li class="{"pass" if c["passed"] else "fail"}">{esc(c["line"])}</li>')
        body.append("</ul></section>")
    open_group = None
    for i, card in enumerate(cards):
        group = card.get("group") if card.get("columns") else None
        if group != open_group:  # the copies of a repeated view, `columns` to a row while they fit
            if open_group is not None:
                body.append("</div>")
            if group is not None:
                body.append(
                    f'<div class="group" style="grid-template-columns:repeat({int(card["columns"])}, max-content)">'
                )
            open_group = group
        failed = card.get("error") is not None
        offers = {} if failed else _offers(card.get("spec"))
        layers = [str(x) for x in offers.get("layers") or () if isinstance(x, str)]
        untitled = card["title"] == card["query"]  # the query is the title: show it once
        search = "\n".join(dict.fromkeys([card["title"], card["query"], *layers]))
        entry = f'<a href="#view-{i}">{esc(card["title"])}</a>'
        side.append(f'<li data-card="view-{i}"{" class=failed" if failed else ""}>{entry}</li>')
        body.append(f'<section class="card{" failed" if failed else ""}" id="view-{i}" data-search="{esc(search)}">')
        heading = f"<code>{esc(card['query'])}</code>" if untitled else esc(card["title"])
        body.append(f'<div class="card-head"><h2>{heading}</h2><div class="tools"></div></div>')
        if card.get("description"):
            body.append(f'<p class="desc">{esc(card["description"])}</p>')
        if not untitled:
            body.append(f"<pre><code>{esc(card['query'])}</code></pre>")
        if failed:
            body.append(f'<div class="error">{esc(card["error"])}</div>')
        else:
            body.append(f'<div class="chart" data-spec="spec-{i}"></div>')
            body.append(f'<script type="application/json" id="spec-{i}">{_script_json(card["spec"])}</script>')
        if card.get("notes"):
            body.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in card["notes"]) + "</ul>")
        body.append("</section>")
    if open_group is not None:
        body.append("</div>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{asset('page.css')}</style>",
        f"<script>{javascript_bundle(vl_version)}</script>",
        "</head><body>",
        '<nav class="nn-side" aria-label="Views">',
        '<input type="search" id="nn-filter" placeholder="Filter by title or layer" aria-label="Filter views">',
        '<div class="count" id="nn-count"></div><ol>',
        *side,
        "</ol></nav>",
        '<div class="nn-content">',
        f"<header><div><h1>{esc(title)}</h1>" + (f"<p>{esc(description)}</p>" if description else "") + "</div>",
        '<button class="nn-btn" id="nn-side-toggle" title="Show or hide the list of views">Views</button>',
        '<button class="nn-btn" id="nn-theme" title="Light or dark">Dark</button></header>',
        "<main>",
        *body,
        "</main>",
    ]
    if footer:
        parts.append(f"<footer>{esc(footer)}</footer>")
    parts += ["</div>", _script("graph.js", optional=True), _script("page.js"), "</body></html>"]
    return "\n".join(p for p in parts if p)
