"""Vega-Lite ──vl-convert──▶ PNG, SVG or PDF, at the Vega-Lite version Altair emits."""

from __future__ import annotations


def vl_version() -> str:
    import altair as alt
    import vl_convert as vlc

    want = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    have = vlc.get_vegalite_versions()
    return want if want in have else have[-1]


def convert(spec: dict, fmt: str):
    import vl_convert as vlc

    if fmt == "png":
        return vlc.vegalite_to_png(spec, vl_version=vl_version(), scale=2)
    if fmt == "svg":
        return vlc.vegalite_to_svg(spec, vl_version=vl_version())
    return vlc.vegalite_to_pdf(spec, vl_version=vl_version())
