"""A PNG export is the chart vl-convert draws: the bytes ``vegalite_to_png`` gives for the
view's Vega-Lite at ``PNG_SCALE``, whether this process or a worker drew it, though its SVG
is drawn without ARIA attributes (``convert.PNG_CONFIG``); the SVG export keeps them."""

from __future__ import annotations

import io
import os
import re
import struct

import pytest
import torch
import vl_convert as vlc

import nnspec
from nnspec.output import convert, write
from nnspec.output.fonts import prime_fonts
from tests.fixtures.models import TinyMLP
from tests.helpers import spec

QUERIES = [
    "weights of fc1 | heatmap",
    "weights of fc2 | histogram(bins=7)",
    "weights of * | box",
    "weights of * | norm | bar",
    "weights of * | std | line",
]


def _dash():
    torch.manual_seed(0)
    views = [{"title": f"view {i}", "query": q} for i, q in enumerate(QUERIES)]
    dash = nnspec.render(spec(views, loss=None), model=TinyMLP())
    assert all(v.chart is not None for v in dash.views)
    return dash


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


@pytest.mark.parametrize("workers", [0, 1])
def test_a_png_is_the_bytes_vl_convert_draws_for_the_chart(tmp_path, monkeypatch, workers):
    monkeypatch.setattr(write, "pool_size", lambda n: workers)
    dash = _dash()
    written = write.write_outputs(dash, str(tmp_path), ("png", "svg"))
    prime_fonts()
    for i, v in enumerate(dash.views):
        png = open(os.path.join(tmp_path, f"dashboard.{v.slug}.png"), "rb").read()
        svg = open(os.path.join(tmp_path, f"dashboard.{v.slug}.svg"), encoding="utf-8").read()
        want = vlc.vegalite_to_png(v.vega_lite(), vl_version=convert.vl_version(), scale=convert.PNG_SCALE)
        assert png == want, QUERIES[i]  # the same encoder: the same bytes are the same pixels
        w, h = convert.svg_size(svg)
        assert _png_size(png) == (round(w * convert.PNG_SCALE), round(h * convert.PNG_SCALE))
    assert len(written) == 2 * len(QUERIES)


def test_the_svg_export_keeps_its_aria_and_the_pngs_svg_has_none():
    dash = _dash()
    hist = dash.views[1].vega_lite()
    svg = convert.convert(hist, "svg")
    labels = re.findall(r'<path aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="bar"', svg)
    assert len(labels) == 7 and all("count: " in t for t in labels)  # one described bar per bin
    drawn = vlc.vegalite_to_svg(hist, vl_version=convert.vl_version(), config=convert.PNG_CONFIG)
    assert 'aria-roledescription="bar"' not in drawn and drawn.count("aria-label") < svg.count("aria-label") - 7
    assert convert.svg_size(drawn) == convert.svg_size(svg)
    bars = re.compile(r'<path d="M[^"]*" fill="#4c78a8"')  # the same bars, only undescribed
    assert len(bars.findall(drawn)) == 7


def test_the_png_shows_the_chart():
    """Decoded: the histogram's bars in their colour, on white, at twice the SVG's size."""
    image = pytest.importorskip("PIL.Image")
    np = pytest.importorskip("numpy")
    hist = _dash().views[1].vega_lite()
    png = convert.convert(hist, "png")
    pixels = np.asarray(image.open(io.BytesIO(png)).convert("RGBA"))
    w, h = convert.svg_size(convert.convert(hist, "svg"))
    assert pixels.shape == (round(h * convert.PNG_SCALE), round(w * convert.PNG_SCALE), 4)
    bar = (pixels[..., :3] == (0x4C, 0x78, 0xA8)).all(axis=-1)
    white = (pixels[..., :3] == 255).all(axis=-1)
    assert bar.mean() > 0.05 and white.mean() > 0.3  # bars drawn, mostly on white
    reference = np.asarray(image.open(io.BytesIO(vlc.vegalite_to_png(hist, scale=convert.PNG_SCALE))).convert("RGBA"))
    assert (pixels == reference).all()
