"""The dashboard in a notebook, as outputs that a saved notebook still shows when it
is reopened untrusted and offline: no script, no iframe, no network.

``Dashboard._ipython_display_`` publishes one output for the dashboard, then one per view:

    header       text/markdown: title, description, counts, the expect: checks (and text/plain)
    each view    application/vnd.vegalite.v5+json: the view's Vega-Lite, its data inline
                 image/png: the view drawn by vl-convert at scale 1 (no browser)
                 text/plain: the view's title
    failed view  text/plain: its title and its error

Why these mimetypes. JupyterLab draws an output of an untrusted notebook with the
first *safe* renderer, in rank order, whose mimetype the output holds
(``preferredMimeType(data, 'ensure')`` in @jupyterlab/outputarea). ``text/html``
ranks first (50) and is safe only because it is sanitized: the iframe the
dashboard used to be was stripped, a blank output, and the PNG beside it (rank
90) was never reached. The Vega renderer (@jupyterlab/vega5-extension, rank 57,
``safe: true``) takes ``application/vnd.vega.v5+json`` and
``application/vnd.vegalite.v3/v4/v5+json``: no v6 mimetype in JupyterLab 4.x (up to
4.7's alphas); it bundles Vega 5 and Vega-Lite 5. VS Code's Jupyter renderers take
the same four (they bundle Vega-Lite 6.4). Altair 6's own ``mimetype`` renderer
sends ``application/vnd.vegalite.v6.json``, which neither draws.

Why a v6.4 spec under the v5 mimetype. nnspec's charts use nothing Vega-Lite 6
added: the gallery's specs validate against Vega-Lite 5's JSON schema, and
vl-convert draws each with Vega-Lite 5.8 (the oldest it has; JupyterLab's is
5.6.1) and 6.4 into the same SVG (tests/test_notebook.py checks quickstart's).
The spec goes without its ``$schema`` (a v6 URL, and the mimetype states the
version; vega-embed takes the mode from the renderer, and warns of no mismatch).

``view.chart`` is the Altair chart nnspec built, its type unchanged; displayed
while Altair's renderer is its default (``html``, which loads Vega from a CDN),
it shows as the same bundle as its view, so it draws offline. A renderer the
user enabled (``alt.renderers.enable(...)``) is left to work; a chart derived
from it (``chart.properties(...)``, ``chart | other``) is a new Altair chart and
displays as Altair does.
"""

from __future__ import annotations

import base64
import html
import struct
import zlib

VEGALITE_MIME = "application/vnd.vegalite.v5+json"
PNG_SCALE = 1  # the notebook's PNG at its CSS size: a quarter of the exported file's pixels


# -- the outputs -------------------------------------------------------------------------------


def outputs(dash) -> list[dict]:
    """The bundles ``_ipython_display_`` publishes: the header, then one per view."""
    return [header(dash)] + [view_bundle(v) for v in dash.views]


def header(dash) -> dict:
    title = dash.spec.title or dash.spec.name
    lines = [f"### {_md(title)}"]
    if dash.spec.description:
        lines += ["", _md(dash.spec.description.strip())]
    lines += ["", _md(_counts(dash))]
    if dash.checks:
        lines += ["", "```text", *(c.line() for c in dash.checks), "```"]
    return {"text/markdown": "\n".join(lines) + "\n", "text/plain": summary(dash)}


def view_bundle(view) -> dict:
    """One view as its own output: its Vega-Lite and its PNG, or its error as text."""
    if view.error is not None or view.chart is None:
        return {"text/plain": f"{view.title}: failed\n{view.error or ''}".rstrip()}
    bundle = spec_bundle(view.vega_lite(), view.title)
    if view.notes:
        bundle["text/plain"] += "\n" + "\n".join(view.notes)
    return bundle


def spec_bundle(spec: dict, title: str) -> dict:
    """``{VEGALITE_MIME: spec, "image/png": …, "text/plain": title}``; no PNG when vl-convert
    cannot draw it or it would be too large (the Vega-Lite still shows where it can)."""
    bundle: dict = {VEGALITE_MIME: {k: v for k, v in spec.items() if k != "$schema"}, "text/plain": title}
    png = view_png(spec)
    if png is not None:
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
    return bundle


def view_png(spec: dict, scale: int = PNG_SCALE) -> bytes | None:
    import vl_convert as vlc

    from nnspec.errors import NnspecError
    from nnspec.output.convert import check_svg_size, vl_version
    from nnspec.output.fonts import prime_fonts

    prime_fonts()
    try:
        svg = vlc.vegalite_to_svg(spec, vl_version=vl_version())
        check_svg_size(svg, scale=scale)
        return recompress(vlc.svg_to_png(svg, scale=scale))
    except (ValueError, NnspecError):  # cannot draw it, or too large a PNG
        return None


def recompress(png: bytes, level: int = 6) -> bytes:
    """``png`` with its pixel data deflated at ``level``: the same pixels, the same rows and
    filters. vl-convert deflates fast and loosely: the PNGs of cnn.yaml's 14 views, 1.85 MB,
    are 0.47 MB recompressed, in 0.3 s (level 9: 0.44 MB in 2 s)."""
    pos, data = 8, []
    head: list[tuple[bytes, bytes]] = []
    tail: list[tuple[bytes, bytes]] = []
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + n]
        if kind == b"IDAT":
            data.append(body)
        else:
            (tail if data else head).append((kind, body))
        pos += 12 + n
    if not data:
        return png
    chunks = [*head, (b"IDAT", zlib.compress(zlib.decompress(b"".join(data)), level)), *tail]
    out = [png[:8]]
    for kind, body in chunks:
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
    return b"".join(out)


def summary(dash) -> str:
    return f"nnspec dashboard '{dash.spec.title or dash.spec.name}': {_counts(dash)}"


def _counts(dash) -> str:
    failed = sum(v.error is not None for v in dash.views)
    text = f"{len(dash.views)} view{'s' if len(dash.views) != 1 else ''}"
    text += f", {failed} failed" if failed else ""
    if dash.checks:
        text += f", checks {sum(c.passed for c in dash.checks)}/{len(dash.checks)} pass"
    return text


def _md(text: str) -> str:
    """Text shown as itself in Markdown: no HTML, no emphasis."""
    return "".join("\\" + ch if ch in "\\`*_[]#" else ch for ch in html.escape(text, quote=False))


# -- one bundle, for a frontend that asks for one ------------------------------------------------


def mimebundle(dash) -> dict:
    """``_repr_mimebundle_``: where a frontend takes one bundle (IPython calls
    ``_ipython_display_`` instead), the views stacked in one PNG and the summary."""
    bundle = {"text/plain": summary(dash)}
    png = stacked_png(dash)
    if png is not None:
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
    return bundle


def stacked_png(dash, scale: float = 1.0) -> bytes | None:
    """Every drawn view in one Vega-Lite vconcat (each keeps its title), as a PNG."""
    import vl_convert as vlc

    from nnspec.output.convert import vl_version
    from nnspec.output.fonts import prime_fonts

    prime_fonts()
    parts, datasets, variables = [], {}, {}
    for v in dash.views:
        spec = v.vega_lite()
        if spec is None:
            continue
        spec = dict(spec)
        spec.pop("$schema", None)
        spec.pop("config", None)  # a chart's own config cannot sit inside a concat; defaults stand in
        datasets.update(spec.pop("datasets", {}))
        # a variable (nnspec_layer, which the page sets) is a signal of the whole concat: on top, once
        params = spec.pop("params", [])
        variables.update({p["name"]: p for p in params if "select" not in p and p["name"] not in variables})
        if [p for p in params if "select" in p]:
            spec["params"] = [p for p in params if "select" in p]
        parts.append(spec)
    if not parts:
        return None
    own = {k: "independent" for k in ("color", "fill", "stroke", "strokeDash", "opacity", "size")}
    top = {"vconcat": parts, "spacing": 28, "resolve": {"scale": own, "legend": own}}  # each view its own colours
    if datasets:
        top["datasets"] = datasets
    if variables:
        top["params"] = list(variables.values())
    try:
        return recompress(vlc.vegalite_to_png(top, vl_version=vl_version(), scale=scale))
    except ValueError:
        return None


# -- view.chart ----------------------------------------------------------------------------------


def offline(chart) -> None:
    """Make this one Altair chart display as ``spec_bundle`` (see the module's docstring).
    The display sits in the instance's ``__dict__`` (Altair's ``__setattr__`` would put it
    in the spec); a deep copy or a pickle takes it along, bound to the new chart; Altair's
    own copies (``properties``, ``encode``) leave it behind."""
    object.__setattr__(chart, "_repr_mimebundle_", OfflineDisplay(chart))


class OfflineDisplay:
    """A chart's ``_repr_mimebundle_``, bound to it (picklable, unlike a bound method)."""

    __slots__ = ("chart",)

    def __init__(self, chart) -> None:
        self.chart = chart

    def __reduce__(self):
        return (OfflineDisplay, (self.chart,))

    def __call__(self, include=None, exclude=None):
        import altair as alt

        from nnspec.output.validate import vega_lite

        chart = self.chart
        if alt.renderers.active != "default":  # the user chose a renderer: theirs
            return type(chart)._repr_mimebundle_(chart, include, exclude)
        spec = vega_lite(chart)
        title = spec.get("title")
        text = title.get("text") if isinstance(title, dict) else title
        return spec_bundle(spec, " ".join(text) if isinstance(text, list) else str(text or "Vega-Lite chart"))
