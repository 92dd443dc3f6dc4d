"""Vega-Lite ──vl-convert──▶ PNG, SVG or PDF, at the Vega-Lite version Altair emits.

A PNG is a pixel buffer: vl-convert aborts the whole process (SIGABRT) when
one is too large to allocate (a chart 100,000 px wide). So a PNG is measured
first (its SVG states the size) and refused past ``MAX_PNG_PIXELS`` with
``ImageTooLarge``: that view's file is not written, the others are.
"""

from __future__ import annotations

import re

from nnspec.errors import SpecError

PNG_SCALE = 2  # device pixels per CSS pixel of the exported PNG
MAX_PNG_PIXELS = 100_000_000  # 100 Mpx (~400 MB of RGBA): a 4000×4000 chart at scale 2 is 64 Mpx
_SVG_SIZE = re.compile(r'<svg\b[^>]*?\bwidth="([0-9.]+)"[^>]*?\bheight="([0-9.]+)"')


class ImageTooLarge(SpecError):
    """A chart too large to export as PNG: the view's file is refused, nothing aborts."""


def too_large(width: float, height: float, scale: int, limit: int) -> str:
    px = width * height * scale * scale
    return (
        f"this chart is {width:,.0f}×{height:,.0f} px; as a PNG at scale {scale} it would be "
        f"{px / 1e6:,.0f} Mpx, over the limit of {limit / 1e6:,.0f} Mpx: no PNG written for it"
    )


def too_large_hint() -> str:
    return "give the view a smaller width/height (at most 4000), fewer layers, or export svg/pdf"


def vl_version() -> str:
    import altair as alt
    import vl_convert as vlc

    want = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    have = vlc.get_vegalite_versions()
    return want if want in have else have[-1]


def svg_size(svg: str) -> tuple[float, float] | None:
    """The width and height an SVG of vl-convert's states (None when it states none)."""
    m = _SVG_SIZE.search(svg[:4096])
    return (float(m.group(1)), float(m.group(2))) if m else None


def check_png_size(spec: dict, limit: int = MAX_PNG_PIXELS, scale: int = PNG_SCALE) -> None:
    """Raise ``ImageTooLarge`` when the PNG of ``spec`` would hold more than ``limit`` pixels."""
    import vl_convert as vlc

    size = svg_size(vlc.vegalite_to_svg(spec, vl_version=vl_version()))
    if size is not None and size[0] * size[1] * scale * scale > limit:
        raise ImageTooLarge(too_large(size[0], size[1], scale, limit), None, too_large_hint())


def convert(spec: dict, fmt: str):
    import vl_convert as vlc

    if fmt == "png":
        check_png_size(spec)
        return vlc.vegalite_to_png(spec, vl_version=vl_version(), scale=PNG_SCALE)
    if fmt == "svg":
        return vlc.vegalite_to_svg(spec, vl_version=vl_version())
    return vlc.vegalite_to_pdf(spec, vl_version=vl_version())
