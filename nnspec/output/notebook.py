"""The dashboard in a notebook: an iframe holding the whole offline page (its
one inline Vega bundle), and a PNG of every view for GitHub and nbconvert,
which show images but run no script.

    text/html   <iframe srcdoc="…the dashboard page…">
    image/png   the views stacked, drawn by vl-convert (no browser)
    text/plain  a one-line summary
"""

from __future__ import annotations

import base64
import html

IFRAME_HEIGHT = 640


def mimebundle(dash) -> dict:
    page = dash.html()
    frame = (
        f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{IFRAME_HEIGHT}px;'
        'border:1px solid #dde1e8;border-radius:6px" sandbox="allow-scripts"></iframe>'
    )
    bundle = {"text/html": frame, "text/plain": _summary(dash)}
    png = stacked_png(dash)
    if png is not None:
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
    return bundle


def _summary(dash) -> str:
    failed = sum(v.error is not None for v in dash.views)
    text = f"nnspec dashboard '{dash.spec.title or dash.spec.name}': {len(dash.views)} views"
    text += f", {failed} failed" if failed else ""
    if dash.checks:
        text += f", checks {sum(c.passed for c in dash.checks)}/{len(dash.checks)} pass"
    return text


def stacked_png(dash, scale: float = 1.0) -> bytes | None:
    """Every drawn view in one Vega-Lite vconcat (each keeps its title), as a PNG."""
    import vl_convert as vlc

    from nnspec.output.convert import vl_version

    parts, datasets = [], {}
    for v in dash.views:
        spec = v.vega_lite()
        if spec is None:
            continue
        spec = dict(spec)
        spec.pop("$schema", None)
        spec.pop("config", None)  # a chart's own config cannot sit inside a concat; defaults stand in
        datasets.update(spec.pop("datasets", {}))
        parts.append(spec)
    if not parts:
        return None
    own = {k: "independent" for k in ("color", "fill", "stroke", "strokeDash", "opacity", "size")}
    top = {"vconcat": parts, "spacing": 28, "resolve": {"scale": own, "legend": own}}  # each view its own colours
    if datasets:
        top["datasets"] = datasets
    try:
        return vlc.vegalite_to_png(top, vl_version=vl_version(), scale=scale)
    except ValueError:
        return None  # the HTML still shows every view
