"""Matrices as one raster image: Vega-Lite's ``image`` mark showing an inline PNG.

A matrix past the mark budget is not averaged into a few thousand rects: every
value becomes one pixel of a PNG (written here with zlib and struct), and the
image is scaled to its display size without smoothing. Its colours are Vega's:
the continuous schemes below are vega-scale's palettes (``palettes.js``, Vega
6), interpolated as Vega does (d3's ``piecewise(interpolateRgb)`` between
evenly spaced stops, each channel rounded half up), through the same sequential
or diverging scale mapping as a ``linear``/``symlog`` colour scale. An
invisible layer carries that colour scale, so Vega draws the legend, and a
pixel's colour reads back to its value through it.

The PNG is palette-indexed: ``LEVELS`` evenly spaced colour levels over the
legend's domain (a value takes the nearest one: at most 1/506 of the domain
away), one index for NaN/±Inf (``nonfinite_colour``) and one transparent index
for cells left blank (the gutters of an image grid). One byte per pixel keeps a
768×2304 weight at ~1.5 MB of PNG, half of what 24-bit colour costs.

An image has no tooltips (Vega's image mark is one mark): rows and columns are
read from the axes, values from the legend; ``view.data`` keeps numbers.

``raster`` is the one entry point marks use (heatmap, images, attention); keep
its signature stable.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from typing import Any, cast

import altair as alt
import numpy as np

from nnspec.marks.common import field, props

PIXEL_BUDGET = 1 << 22  # pixels per view (4 Mpx); past it, blocks (``raster_blocks``)
LEVELS = 254  # colour levels; index 254: NaN/±Inf; index 255: blank (transparent)
NONFINITE = LEVELS
BLANK = LEVELS + 1

# vega-scale's continuous schemes (packages/vega-scale/src/palettes.js), names lowercased as Vega looks them up
SCHEMES: dict[str, str] = {
    "blues": "cfe1f2bed8eca8cee58fc1de74b2d75ba3cf4592c63181bd206fb2125ca40a4a90",
    "greens": "d3eecdc0e6baabdda594d3917bc77d60ba6c46ab5e329a512089430e7735036429",
    "greys": "e2e2e2d4d4d4c4c4c4b1b1b19d9d9d8888887575756262624d4d4d3535351e1e1e",
    "oranges": "fdd8b3fdc998fdb87bfda55efc9244f87f2cf06b18e4580bd14904b93d029f3303",
    "purples": "e2e1efd4d4e8c4c5e0b4b3d6a3a0cc928ec3827cb97566ae684ea25c3696501f8c",
    "reds": "fdc9b4fcb49afc9e80fc8767fa7051f6573fec3f2fdc2a25c81b1db21218970b13",
    "bluegreen": "d5efedc1e8e0a7ddd18bd2be70c6a958ba9144ad77319c5d2089460e7736036429",
    "bluepurple": "ccddecbad0e4a8c2dd9ab0d4919cc98d85be8b6db28a55a6873c99822287730f71",
    "greenblue": "d3eecec5e8c3b1e1bb9bd8bb82cec269c2ca51b2cd3c9fc7288abd1675b10b60a1",
    "orangered": "fddcaffdcf9bfdc18afdad77fb9562f67d53ee6545e24932d32d1ebf130da70403",
    "purpleblue": "dbdaebc8cee4b1c3de97b7d87bacd15b9fc93a90c01e7fb70b70ab056199045281",
    "purplebluegreen": "dbd8eac8cee4b0c3de93b7d872acd1549fc83892bb1c88a3097f8702736b016353",
    "purplered": "dcc9e2d3b3d7ce9eccd186c0da6bb2e14da0e23189d91e6fc61159ab07498f023a",
    "redpurple": "fccfccfcbec0faa9b8f98faff571a5ec539ddb3695c41b8aa908808d0179700174",
    "yellowgreen": "e4f4acd1eca0b9e2949ed68880c97c62bb6e47aa5e3297502083440e723b036034",
    "yelloworangebrown": "feeaa1fedd84fecc63feb746fca031f68921eb7215db5e0bc54c05ab3d038f3204",
    "yelloworangered": "fee087fed16ffebd59fea849fd903efc7335f9522bee3423de1b20ca0b22af0225",
    "blueorange": "134b852f78b35da2cb9dcae1d2e5eff2f0ebfce0bafbbf74e8932fc5690d994a07",
    "brownbluegreen": "704108a0651ac79548e3c78af3e6c6eef1eac9e9e48ed1c74da79e187a72025147",
    "purplegreen": "5b1667834792a67fb6c9aed3e6d6e8eff0efd9efd5aedda971bb75368e490e5e29",
    "purpleorange": "4114696647968f83b7b9b4d6dadbebf3eeeafce0bafbbf74e8932fc5690d994a07",
    "redblue": "8c0d25bf363adf745ef4ae91fbdbc9f2efeed2e5ef9dcae15da2cb2f78b3134b85",
    "redgrey": "8c0d25bf363adf745ef4ae91fcdccbfaf4f1e2e2e2c0c0c0969696646464343434",
    "yellowgreenblue": "eff9bddbf1b4bde5b594d5b969c5be45b4c22c9ec02182b82163aa23479c1c3185",
    "redyellowblue": "a50026d4322cf16e43fcac64fedd90faf8c1dcf1ecabd6e875abd04a74b4313695",
    "redyellowgreen": "a50026d4322cf16e43fcac63fedd8df9f7aed7ee8ea4d86e64bc6122964f006837",
    "pinkyellowgreen": "8e0152c0267edd72adf0b3d6faddedf5f3efe1f2cab6de8780bb474f9125276419",
    "spectral": "9e0142d13c4bf0704afcac63fedd8dfbf8b0e0f3a1a9dda269bda94288b55e4fa2",
    "viridis": (
        "440154470e61481a6c482575472f7d443a834144873d4e8a39568c35608d31688e2d708e2a788e27818e23888e21918d"
        "1f988b1fa08822a8842ab07f35b77943bf7154c56866cc5d7ad1518fd744a5db36bcdf27d2e21be9e51afde725"
    ),
    "magma": (
        "0000040404130b0924150e3720114b2c11603b0f704a107957157e651a80721f817f24828c29819a2e80a8327db6377a"
        "c43c75d1426fde4968e95462f1605df76f5cfa7f5efc8f65fe9f6dfeaf78febf84fece91fddea0fcedaffcfdbf"
    ),
    "inferno": (
        "0000040403130c0826170c3b240c4f330a5f420a68500d6c5d126e6b176e781c6d86216b932667a12b62ae305cbb3755"
        "c73e4cd24644dd513ae65c30ed6925f3771af8850ffb9506fca50afcb519fac62df6d645f2e661f3f484fcffa4"
    ),
    "plasma": (
        "0d088723069033059742039d5002a25d01a66a00a87801a88405a7900da49c179ea72198b12a90ba3488c33d80cb4779"
        "d35171da5a69e16462e76e5bed7953f2834cf68f44fa9a3dfca636fdb32ffec029fcce25f9dc24f5ea27f0f921"
    ),
    "cividis": (
        "00205100235800265d002961012b65042e670831690d346b11366c16396d1c3c6e213f6e26426e2c456e31476e374a6e"
        "3c4d6e42506e47536d4c566d51586e555b6e5a5e6e5e616e62646f66676f6a6a706e6d717270717573727976737c7974"
        "7f7c75827f758682768985778c8877908b78938e789691789a94789e9778a19b78a59e77a9a177aea575b2a874b6ab73"
        "bbaf71c0b26fc5b66dc9b96acebd68d3c065d8c462ddc85fe2cb5ce7cf58ebd355f0d652f3da4ff7de4cfae249fce647"
    ),
    "rainbow": (
        "6e40aa883eb1a43db3bf3cafd83fa4ee4395fe4b83ff576eff6659ff7847ff8c38f3a130e2b72fcfcc36bee044aff05b"
        "8ff4576ff65b52f6673af27828ea8d1ddfa319d0b81cbecb23abd82f96e03d82e14c6edb5a5dd0664dbf6e40aa"
    ),
    "sinebow": (
        "ff4040fc582af47218e78d0bd5a703bfbf00a7d5038de70b72f41858fc2a40ff402afc5818f4720be78d03d5a700bfbf"
        "03a7d50b8de71872f42a58fc4040ff582afc7218f48d0be7a703d5bf00bfd503a7e70b8df41872fc2a58ff4040"
    ),
    "turbo": (
        "23171b32204a3e2a71453493493eae4b49c54a53d7485ee44569ee4074f53c7ff8378af93295f72e9ff42ba9ef28b3e9"
        "26bce125c5d925cdcf27d5c629dcbc2de3b232e9a738ee9d3ff39347f68950f9805afc7765fd6e70fe667cfd5e88fc57"
        "95fb51a1f84badf545b9f140c5ec3cd0e637dae034e4d931ecd12ef4c92bfac029ffb626ffad24ffa223ff9821ff8d1f"
        "ff821dff771cfd6c1af76118f05616e84b14df4111d5380fcb2f0dc0260ab61f07ac1805a313029b0f00950c00910b00"
    ),
    "browns": "eedbbdecca96e9b97ae4a865dc9856d18954c7784cc0673fb85536ad44339f3632",
    "tealblues": "bce4d89dd3d181c3cb65b3c245a2b9368fae347da0306a932c5985",
    "teals": "bbdfdfa2d4d58ac9c975bcbb61b0af4da5a43799982b8b8c1e7f7f127273006667",
    "warmgreys": "dcd4d0cec5c1c0b8b4b3aaa7a59c9998908c8b827f7e7673726866665c5a59504e",
    "goldgreen": "f4d166d5ca60b6c35c98bb597cb25760a6564b9c533f8f4f33834a257740146c36",
    "goldorange": "f4d166f8be5cf8aa4cf5983bf3852aef701be2621fd65322c54923b142239e3a26",
    "goldred": "f4d166f6be59f9aa51fc964ef6834bee734ae56249db5247cf4244c43141b71d3e",
    "lightgreyred": "efe9e6e1dad7d5cbc8c8bdb9bbaea9cd967ddc7b43e15f19df4011dc000b",
    "lightgreyteal": "e4eaead6dcddc8ced2b7c2c7a6b4bc64b0bf22a6c32295c11f85be1876bc",
    "lightmulti": "e0f1f2c4e9d0b0de9fd0e181f6e072f6c053f3993ef77440ef4a3c",
    "lightorange": "f2e7daf7d5baf9c499fab184fa9c73f68967ef7860e8645bde515bd43d5b",
    "lighttealblue": "e3e9e0c0dccf9aceca7abfc859afc0389fb9328dad2f7ca0276b95255988",
    "darkblue": "3232322d46681a5c930074af008cbf05a7ce25c0dd38daed50f3faffffff",
    "darkgold": "3c3c3c584b37725e348c7631ae8b2bcfa424ecc31ef9de30fff184ffffff",
    "darkgreen": "3a3a3a215748006f4d048942489e4276b340a6c63dd2d836ffeb2cffffaa",
    "darkmulti": "3737371f5287197d8c29a86995ce3fffe800ffffff",
    "darkred": "3434347036339e3c38cc4037e75d1eec8620eeab29f0ce32ffeb2c",
}


def stops(scheme: str) -> np.ndarray:
    """The scheme's colour stops, (n, 3) float64."""
    hexes = SCHEMES[scheme.lower()]
    return np.array([[int(hexes[i + k : i + k + 2], 16) for k in (0, 2, 4)] for i in range(0, len(hexes), 6)], float)


def scheme_rgb(scheme: str, fraction: np.ndarray) -> np.ndarray:
    """The colour Vega draws at ``fraction`` (0..1) of a continuous scheme, uint8 (..., 3):
    d3's piecewise RGB interpolation, channels rounded half up as d3-color does."""
    s = stops(scheme)
    n = len(s) - 1
    tn = np.asarray(fraction, dtype=np.float64) * n
    i = np.clip(np.floor(tn), 0, n - 1).astype(np.int64)
    local = (tn - i)[..., None]
    rgb = s[i] + local * (s[i + 1] - s[i])
    return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)


def _symlog(x):
    return np.sign(x) * np.log1p(np.abs(x))


def scale_fraction(values: np.ndarray, domain: tuple[float, float], mid: float | None = None, log: bool = False):
    """Where Vega's colour scale puts each value, as a fraction 0..1 of the scheme:
    d3's sequential scale over [lo, hi], or its diverging one over [lo, mid, hi]
    (``log``: after the symlog transform, constant 1). float64, as JavaScript."""
    lo, hi = float(domain[0]), float(domain[1])
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(all="ignore"):
        if log:
            v, lo, hi = _symlog(v), float(_symlog(lo)), float(_symlog(hi))
            mid = None if mid is None else float(_symlog(mid))
        if mid is None:
            k = 0.0 if hi == lo else 1.0 / (hi - lo)
            return np.full(v.shape, 0.5) if k == 0 else (v - lo) * k
        k10 = 0.0 if lo == mid else 0.5 / (mid - lo)
        k21 = 0.0 if mid == hi else 0.5 / (hi - mid)
        return 0.5 + (v - mid) * np.where(v < mid, k10, k21)


def nonfinite_colour(scheme: str) -> tuple[str, tuple[int, int, int]]:
    """The colour of NaN/±Inf pixels: black (as heatmap cells), magenta where the
    scheme itself runs to near-black."""
    darkest = stops(scheme).sum(axis=1).min()
    return ("black", (0, 0, 0)) if darkest > 3 * 40 else ("magenta", (255, 0, 255))


def levels(values: np.ndarray, domain, mid=None, log=False) -> np.ndarray:
    """Palette indexes (uint8): the nearest of ``LEVELS`` colour levels, ``NONFINITE`` for NaN/±Inf."""
    frac = scale_fraction(values, domain, mid, log)
    ok = np.isfinite(np.asarray(values, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        k = np.floor(np.clip(np.where(ok, frac, 0.0), 0.0, 1.0) * (LEVELS - 1) + 0.5)
    return np.where(ok, k, NONFINITE).astype(np.uint8)


def palette(scheme: str) -> np.ndarray:
    """(256, 3) uint8: the scheme at each level, then the non-finite colour, then white (blank)."""
    rgb = scheme_rgb(scheme, np.arange(LEVELS) / (LEVELS - 1))
    return np.vstack([rgb, [nonfinite_colour(scheme)[1], (255, 255, 255)]]).astype(np.uint8)


def encode_png(index: np.ndarray, colours: np.ndarray, transparent: int | None = BLANK) -> bytes:
    """An 8-bit palette PNG of ``index`` (h, w) uint8 with ``colours`` (≤ 256, 3);
    ``transparent``: the index drawn see-through (a tRNS chunk)."""
    h, w = index.shape
    # filter type 0 (none) on each scanline: noise-like weights compress no better with the others
    raw = np.hstack([np.zeros((h, 1), np.uint8), np.ascontiguousarray(index, dtype=np.uint8)]).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))]
    parts.append(chunk(b"PLTE", np.ascontiguousarray(colours, dtype=np.uint8).tobytes()))
    if transparent is not None and transparent < len(colours):
        parts.append(chunk(b"tRNS", bytes([255] * transparent + [0])))
    parts += [chunk(b"IDAT", zlib.compress(raw, 6)), chunk(b"IEND", b"")]
    return b"".join(parts)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def raster_blocks(shape: tuple[int, int], budget: int = PIXEL_BUDGET) -> tuple[int, int]:
    """Block height and width (1, 1: every value its own pixel) so that the blocks
    of a ``shape`` matrix make at most ``budget`` pixels: the smallest k with k×k
    blocks (k capped by each side, then the other side's blocks grow)."""
    r, c = int(shape[0]), int(shape[1])
    if r * c <= budget:
        return 1, 1
    k = max(2, math.isqrt(max(1, (r * c) // budget)))
    while True:
        kr, kc = min(k, r), min(k, c)
        if kr == r:  # one row of blocks: the columns take the rest
            kc = max(kc, math.ceil(c / budget))
        if kc == c:
            kr = max(kr, math.ceil(r / budget))
        if math.ceil(r / kr) * math.ceil(c / kc) <= budget:
            return kr, kc
        k += 1


def block_edges(n: int, k: int) -> list[int]:
    """Starts of blocks of ``k`` along ``n`` (the last may be shorter), and ``n``."""
    return list(range(0, n, k)) + [n]


def display_size(rows: int, cols: int, box: tuple[int, int] = (720, 480), min_side: int = 40) -> tuple[int, int]:
    """(width, height) in px: a square pixel per value, scaled up by a whole factor
    (at most 48) or down to fit ``box``; a thin strip gets ``min_side`` px."""
    s = min(box[0] / cols, box[1] / rows)
    s = min(48.0, math.floor(s)) if s >= 1 else s
    return max(min_side, round(cols * s)), max(min_side, round(rows * s))


def raster(
    matrix: np.ndarray,
    domain: tuple[float, float],
    scheme: str,
    width: int,
    height: int,
    *,
    mid: float | None = None,
    log: bool = False,
    x_title: str | None = "column",
    y_title: str | None = "row",
    pixel: tuple[int, int] = (1, 1),
    extent: tuple[int, int] | None = None,
    blank: np.ndarray | None = None,
    axes: bool = True,
) -> alt.LayerChart:
    """``matrix`` (rows × cols, values; NaN/±Inf allowed) as one image of width × height px.

    ``domain`` (and ``mid`` for a diverging scale centred there, ``log`` for symlog)
    is the colour scale of the legend, ``scheme`` a continuous Vega scheme
    (``SCHEMES``). The axes count the matrix's columns and rows: a pixel
    spans ``pixel`` = (rows, cols) of them (a block image: the block's size),
    the axes end at ``extent`` = (rows, cols) (by default where the pixels
    end; a last, shorter block is clipped there). ``blank``: a boolean mask of
    pixels left transparent. The image is ``layer[0]``; ``layer[1]``, an
    invisible mark, carries the colour scale and so the legend.
    """
    rows, cols = matrix.shape
    idx = levels(matrix, domain, mid, log)
    if blank is not None:
        idx = np.where(blank, BLANK, idx).astype(np.uint8)
    url = data_url(encode_png(idx, palette(scheme)))
    cover_y, cover_x = rows * pixel[0], cols * pixel[1]
    span_y, span_x = extent or (cover_y, cover_x)
    ax = alt.Axis(format="d", labelOverlap=True, labelAngle=0) if axes else None
    x = alt.X(**field("x", "Q"), title=x_title, axis=ax, scale=alt.Scale(domain=[0, span_x], nice=False, zero=False))
    y = alt.Y(
        **field("y", "Q"),
        title=y_title,
        axis=ax,
        scale=alt.Scale(domain=[0, span_y], nice=False, zero=False, reverse=True),
    )
    image = (
        alt.Chart(alt.Data(values=[{"url": url, "x": 0, "x2": cover_x, "y": 0, "y2": cover_y}]))
        .mark_image(aspect=False, smooth=False, aria=False, clip=(cover_x, cover_y) != (span_x, span_y))
        .encode(x=x, x2=alt.X2(**field("x2")), y=y, y2=alt.Y2(**field("y2")), url=alt.Url(**field("url", "N")))
    )
    kw: dict[str, Any] = {
        "scheme": scheme,
        "domain": [float(domain[0]), float(domain[1])],
        "zero": False,
        "nice": False,
    }
    if log:
        kw["type"] = "symlog"
    if mid is not None:
        kw["domainMid"] = mid
    scale = alt.Scale(**kw)
    legend = (
        alt.Chart(alt.Data(values=[{"value": float(domain[0])}, {"value": float(domain[1])}]))
        .mark_rect(opacity=0, aria=False)
        .encode(color=alt.Color(**field("value", "Q"), scale=scale, title=None))
    )
    return cast(alt.LayerChart, props(alt.layer(image, legend), width=width, height=height))
