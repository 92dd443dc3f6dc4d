"""The dashboard page: one card per view and one inline copy of the Vega
JavaScript, so it opens with no network."""

from __future__ import annotations

import html
import json

from nnspec.output.bundle import javascript_bundle

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{padding:20px 28px 8px}h1{margin:0 0 6px;font-size:22px}header p{margin:0;color:#4a5263;max-width:70em}
main{display:flex;flex-wrap:wrap;gap:16px;padding:16px 28px 28px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:14px 16px;max-width:100%;overflow:auto}
.card h2{font-size:15px;margin:0 0 6px}.card pre{background:#f1f3f6;border-radius:4px;padding:6px 8px;margin:0 0 8px;font-size:12px;white-space:pre-wrap}
.card .desc{color:#4a5263;font-size:13px;margin:0 0 8px}.card ul{margin:6px 0 0;padding-left:18px;color:#5a6272;font-size:12px}
.card.failed{border-color:#d9534f}.error{color:#a12622;white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px}
footer{padding:0 28px 20px;color:#8a90a0;font-size:12px}
.group{display:grid;gap:16px;flex-basis:100%}
.checks{flex-basis:100%}.checks li{font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap;list-style:none;margin:2px 0}
.checks .pass{color:#1e7b34}.checks .fail{color:#a12622}
"""

SCRIPT = """
document.querySelectorAll('[data-spec]').forEach(function (el) {
  var spec = JSON.parse(document.getElementById(el.dataset.spec).textContent);
  vegaEmbed(el, spec, {actions: false, renderer: 'svg'})
    .then(function () { el.dataset.rendered = 'yes'; })
    .catch(function (err) { el.dataset.rendered = 'failed'; el.textContent = 'chart failed: ' + err; console.error(err); });
});
"""


_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _script_json(obj) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' (so no '</script>',
    no '<!--' that would keep the element open), no line separators. The same
    JSON value: these characters only occur inside strings, where the escape means them."""
    text = json.dumps(obj, sort_keys=True)
    return text.translate(_SCRIPT_ESCAPES)


def page(title: str, description: str, cards: list[dict], vl_version: str, footer: str = "", checks=()) -> str:
    """``cards``: dicts with title, query, description, notes, spec (Vega-Lite dict) or error;
    ``checks``: dicts with text, passed, line (the expect: entries' results)."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{CSS}</style>",
        f"<script>{javascript_bundle(vl_version)}</script>",
        "</head><body>",
        f"<header><h1>{esc(title)}</h1>" + (f"<p>{esc(description)}</p>" if description else "") + "</header>",
        "<main>",
    ]
    if checks:
        failed = sum(not c["passed"] for c in checks)
        head = f"Checks: {len(checks) - failed} of {len(checks)} pass"
        parts.append(f'<section class="card checks{" failed" if failed else ""}" id="checks"><h2>{esc(head)}</h2><ul>')
        for c in checks:
            parts.append(f'<li class="{"pass" if c["passed"] else "fail"}">{esc(c["line"])}</li>')
        parts.append("</ul></section>")
    open_group = None
    for i, card in enumerate(cards):
        group = card.get("group") if card.get("columns") else None
        if group != open_group:  # the copies of a repeated view, `columns` to a row
            if open_group is not None:
                parts.append("</div>")
            if group is not None:
                parts.append(
                    f'<div class="group" style="grid-template-columns:repeat({int(card["columns"])}, max-content)">'
                )
            open_group = group
        failed = card.get("error") is not None
        parts.append(f'<section class="card{" failed" if failed else ""}" id="view-{i}">')
        parts.append(f"<h2>{esc(card['title'])}</h2>")
        if card.get("description"):
            parts.append(f'<p class="desc">{esc(card["description"])}</p>')
        parts.append(f"<pre><code>{esc(card['query'])}</code></pre>")
        if failed:
            parts.append(f'<div class="error">{esc(card["error"])}</div>')
        else:
            parts.append(f'<div class="chart" data-spec="spec-{i}"></div>')
            parts.append(f'<script type="application/json" id="spec-{i}">{_script_json(card["spec"])}</script>')
        if card.get("notes"):
            parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in card["notes"]) + "</ul>")
        parts.append("</section>")
    if open_group is not None:
        parts.append("</div>")
    parts.append("</main>")
    if footer:
        parts.append(f"<footer>{esc(footer)}</footer>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)
