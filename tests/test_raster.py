"""Matrices past the mark budget drawn as an image: every pixel against the value
it stands for, its colour against the colour Vega itself draws for that value,
the legend against the tensor's true range, blocks against NumPy."""

from __future__ import annotations

import base64
import re

import altair as alt
import numpy as np
import pytest
import torch
import vl_convert

import nnspec
from nnspec.marks import heatmap, raster
from tests.helpers import read_png as _read_png
from tests.helpers import spec, units, view


def _image(doc: dict) -> tuple[np.ndarray, np.ndarray, bytes]:
    (unit,) = [u for u in units(doc) if (u["mark"] if isinstance(u["mark"], str) else u["mark"]["type"]) == "image"]
    url = unit["data"]["values"][0]["url"]
    assert url.startswith("data:image/png;base64,")
    return _read_png(base64.b64decode(url.split(",", 1)[1]))


def _colour_scale(doc: dict) -> dict:
    (scale,) = [u["encoding"]["color"]["scale"] for u in units(doc) if "color" in u.get("encoding", {})]
    return scale


def _vega_colours(values, scale: dict) -> np.ndarray:
    """The fill Vega (vl-convert's engine) draws for each value under ``scale``, (n, 3)."""
    data = alt.Data(values=[{"i": i, "v": float(v)} for i, v in enumerate(values)])
    chart = alt.Chart(data).mark_rect().encode(x="i:O", color=alt.Color("v:Q", scale=alt.Scale(**scale)))
    svg = vl_convert.vegalite_to_svg(chart.to_dict())
    fills = re.findall(r'<path[^>]*fill="rgb\((\d+), (\d+), (\d+)\)"', svg)
    assert len(fills) == len(values)
    return np.array(fills, dtype=int)


def _render(model, query, max_marks=100, **kw):
    dash = nnspec.render(spec([{"query": query, "max_marks": max_marks}], loss=None), model=model, **kw)
    v = view(dash)
    assert v.error is None, v.error
    return v


def _linear(rows, cols, seed=0, scale=0.02):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(cols, rows))
    with torch.no_grad():
        model[0].weight.normal_(0, scale)
    return model


# -- colours: Vega's own -------------------------------------------------------------------
@pytest.mark.parametrize(
    "scale",
    [
        {"scheme": "blueorange", "domain": [-0.1, 0.1], "domainMid": 0},
        {"scheme": "viridis", "domain": [0.25, 3.0]},
        {"scheme": "greys", "domain": [-2.0, 7.0]},
    ],
    ids=["diverging", "viridis", "greys"],
)
def test_palette_levels_are_the_colours_vega_draws(scale):
    lo, hi = scale["domain"]
    mid = scale.get("domainMid")
    pal = raster.palette(scale["scheme"])
    # the value each level stands for, through the inverse of the (linear) scale
    f = np.arange(raster.LEVELS) / (raster.LEVELS - 1)
    if mid is None:
        values = lo + f * (hi - lo)
    else:
        values = np.where(f < 0.5, mid + (f - 0.5) / 0.5 * (mid - lo), mid + (f - 0.5) / 0.5 * (hi - mid))
    want = _vega_colours(values, {**scale, "zero": False, "nice": False})
    # level values round-trip through float64 arithmetic: allow ±1 where a channel sits at .5
    assert np.abs(pal[: raster.LEVELS].astype(int) - want).max() <= 1
    assert (pal[: raster.LEVELS].astype(int) == want).all(axis=1).mean() > 0.97


# -- a weight matrix past the mark budget ---------------------------------------------------
def test_weight_image_pixels_are_the_weights_and_legend_is_their_range():
    model = _linear(40, 60)
    v = _render(model, "weights of 0 | heatmap", max_marks=100)
    doc = v.vega_lite()
    w = model[0].weight.detach().double().numpy()
    assert any("40×60 drawn as an image, one pixel per value" in n for n in v.notes)
    assert len(v.data) <= 100  # the view's data stays within the mark budget

    # the legend: a diverging scale over ±max|w|, centred at 0 (the colour scale heatmaps use)
    scale = _colour_scale(doc)
    m = np.abs(w).max()
    assert scale["domain"] == pytest.approx([-m, m], rel=1e-12)
    assert scale["domainMid"] == 0 and scale["scheme"] == "blueorange"
    assert scale["zero"] is False and scale["nice"] is False

    index, pal, _ = _image(doc)
    assert index.shape == w.shape  # one pixel per value
    # each pixel is the nearest of the colour levels to its value under the legend's domain
    level = (w + m) / (2 * m) * (raster.LEVELS - 1)
    assert np.abs(index.astype(float) - level).max() <= 0.5 + 1e-9
    # its colour is the colour Vega draws for its level's value (test above), and so within
    # two units per channel of the colour Vega draws for the value itself
    want = _vega_colours(w.reshape(-1), {k: scale[k] for k in ("scheme", "domain", "domainMid", "zero", "nice")})
    got = pal[index.reshape(-1)].astype(int)
    assert np.abs(got - want).max() <= 2


def test_one_signed_tensor_gets_its_min_to_max():
    model = _linear(30, 50)
    v = _render(model, "weights of 0 | abs | heatmap", max_marks=100)
    doc = v.vega_lite()
    a = np.abs(model[0].weight.detach().double().numpy())
    scale = _colour_scale(doc)
    assert scale["scheme"] == "viridis" and "domainMid" not in scale
    assert scale["domain"] == pytest.approx([a.min(), a.max()], rel=1e-12)
    index, pal, _ = _image(doc)
    level = (a - a.min()) / (a.max() - a.min()) * (raster.LEVELS - 1)
    assert np.abs(index.astype(float) - level).max() <= 0.5 + 1e-9
    assert (index[a == a.max()] == raster.LEVELS - 1).all() and (index[a == a.min()] == 0).all()


def test_nonfinite_values_get_their_own_colour_and_a_note():
    model = _linear(20, 30)
    with torch.no_grad():
        model[0].weight[3, 4] = float("nan")
        model[0].weight[5, 6] = float("inf")
        model[0].weight[7, 8] = float("-inf")
    v = _render(model, "weights of 0 | heatmap", max_marks=100)
    index, pal, _ = _image(v.vega_lite())
    bad = {(3, 4), (5, 6), (7, 8)}
    assert {tuple(p) for p in np.argwhere(index == raster.NONFINITE)} == bad
    assert tuple(pal[raster.NONFINITE]) == (0, 0, 0)
    assert any("3 NaN/Inf values drawn black" in n for n in v.notes)
    w = model[0].weight.detach().double().numpy()
    m = np.abs(w[np.isfinite(w)]).max()
    assert _colour_scale(v.vega_lite())["domain"] == pytest.approx([-m, m], rel=1e-12)


def test_past_the_image_budget_blocks_keep_the_largest_magnitude(monkeypatch):
    monkeypatch.setattr(heatmap, "PIXEL_BUDGET", 150)
    model = _linear(41, 60)
    v = _render(model, "weights of 0 | heatmap", max_marks=100)
    w = model[0].weight.detach().double().numpy()
    kr, kc = raster.raster_blocks(w.shape, 150)
    assert (kr, kc) == (5, 5)
    rows, cols = -(-41 // kr), -(-60 // kc)
    assert any(f"41×60 drawn as {rows}×{cols} blocks of 5×5" in n and "largest magnitude" in n for n in v.notes)
    doc = v.vega_lite()
    index, _, _ = _image(doc)
    assert index.shape == (rows, cols)
    m = np.abs(w).max()
    assert _colour_scale(doc)["domain"] == pytest.approx([-m, m], rel=1e-12)  # the true range, not the blocks'
    for i in range(rows):
        for j in range(cols):
            b = w[i * kr : (i + 1) * kr, j * kc : (j + 1) * kc].reshape(-1)
            hi, lo = b.max(), b.min()
            absmax = hi if abs(hi) >= abs(lo) else lo
            assert abs(index[i, j] - (absmax + m) / (2 * m) * (raster.LEVELS - 1)) <= 0.5 + 1e-9
    # the image layer spans the blocks, clipped at the matrix's end on the axes
    (img,) = [u for u in units(doc) if u["mark"]["type"] == "image"]
    assert img["data"]["values"][0]["x2"] == cols * kc and img["encoding"]["x"]["scale"]["domain"] == [0, 60]


def test_raster_blocks_stay_within_the_budget():
    for shape, budget in [((768, 2304), 1 << 22), ((50257, 768), 1 << 22), ((4096, 4096), 1 << 20), ((1, 10**7), 1000)]:
        kr, kc = raster.raster_blocks(shape, budget)
        assert -(-shape[0] // kr) * -(-shape[1] // kc) <= budget
    assert raster.raster_blocks((768, 2304)) == (1, 1)  # GPT-2's c_attn: a pixel per value
    assert raster.raster_blocks((50257, 768)) == (4, 4)  # its token embedding: 4×4 blocks


def test_several_layers_share_one_colour_scale():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.Linear(20, 30))
    with torch.no_grad():
        model[1].weight.mul_(5)
    v = _render(model, "weights of 0, 1 | heatmap", max_marks=100)
    doc = v.vega_lite()
    scales = [u["encoding"]["color"]["scale"] for u in units(doc) if "color" in u.get("encoding", {})]
    m = max(float(model[i].weight.detach().abs().max()) for i in (0, 1))
    assert len(scales) == 2 and all(s["domain"] == pytest.approx([-m, m], rel=1e-7) for s in scales)
    assert doc["resolve"]["scale"]["color"] == "shared"


# -- images: a grid of tiles as one image ----------------------------------------------------
def test_big_image_grid_is_one_image_with_every_pixel():
    torch.manual_seed(0)
    x = torch.randn(3, 40, 50)
    model = torch.nn.Sequential(torch.nn.Identity())
    v = _render(model, "inputs of 0 | images(cols=2)", max_marks=1000, inputs=x)
    doc = v.vega_lite()
    assert any("3 tiles of 40×50 drawn as an image, one pixel per value" in n for n in v.notes)
    index, pal, trns = _image(doc)
    a = x.double().numpy()
    m = np.abs(a).max()
    assert _colour_scale(doc)["domain"] == pytest.approx([-m, m], rel=1e-12)
    texts = [u for u in units(doc) if u["mark"]["type"] == "text"]
    tags = texts[0]["data"]["values"]
    assert [t["tile"] for t in tags] == ["0", "1", "2"]
    for k, t in enumerate(tags):
        tile = index[t["gy"] : t["gy"] + 40, t["gx"] : t["gx"] + 50]
        assert np.abs(tile - (a[k] + m) / (2 * m) * (raster.LEVELS - 1)).max() <= 0.5 + 1e-9
    # the gutters are the transparent index
    assert trns[raster.BLANK] == 0 and set(trns[: raster.BLANK]) == {255}
    assert index[:, 50].tolist() == [raster.BLANK] * index.shape[0]


def test_small_matrices_stay_rects_with_tooltips():
    model = _linear(5, 6)
    doc = _render(model, "weights of 0 | heatmap", max_marks=100).vega_lite()
    marks = [u["mark"] if isinstance(u["mark"], str) else u["mark"]["type"] for u in units(doc)]
    assert "image" not in marks and "rect" in marks


# -- the demo: GPT-2 small's c_attn shape ----------------------------------------------------
def test_a_768_by_2304_weight_is_drawn_whole(tmp_path):
    model = _linear(2304, 768)
    dash = nnspec.render(
        spec([{"query": "weights of 0 | heatmap"}], loss=None), model=model, out=str(tmp_path), formats=("html",)
    )
    v = view(dash)
    w = model[0].weight.detach().double().numpy()
    assert any("2304×768 drawn as an image, one pixel per value" in n for n in v.notes)
    scale = _colour_scale(v.vega_lite())
    assert scale["domain"][1] == pytest.approx(np.abs(w).max(), rel=1e-12)
    assert scale["domain"][1] > 0.08  # the weights' own span, not block means' ±0.006
    index, _, _ = _image(v.vega_lite())
    assert index.shape == (2304, 768)
    assert (tmp_path / "dashboard.html").stat().st_size < 4_000_000
