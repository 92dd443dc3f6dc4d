"""Spec dicts for the tests: a model from tests.fixtures.models and some views."""

from __future__ import annotations

import math
import re
import struct
import zlib

import numpy as np


def spec(views, factory="tests.fixtures.models:make_tiny_mlp", inp=None, loss="mse", **extra) -> dict:
    d = {
        "nnspec": 1,
        "title": "test",
        "model": {"factory": factory},
        "views": [{"query": q} if isinstance(q, str) else q for q in views],
    }
    if inp is not None:
        d["input"] = inp
    if loss is not None:
        d["loss"] = loss
    d.update(extra)
    return d


def view(dash, i=0):
    v = dash.views[i]
    assert v.error is None, v.error
    return v


IRIS_FEATURES = ["sepalLength", "sepalWidth", "petalLength", "petalWidth"]


def train(rec, model, x, y, opt, steps: int) -> None:
    """``steps`` steps of cross-entropy on (x, y), each recorded by ``rec`` after backward."""
    import torch

    for step in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        rec.step(step, loss=loss)
        opt.step()
        opt.zero_grad()


def iris_spec(views, loss="cross_entropy", hidden: int = 6) -> dict:
    """An MLP 4-hidden-3 on iris, the species as the target."""
    d = spec(
        views,
        factory="nnspec.models:MLP",
        inp={"dataset": "iris", "features": IRIS_FEATURES, "target": "species"},
        loss=loss,
    )
    d["model"]["kwargs"] = {"sizes": [4, hidden, 3]}
    return d


def model_and_batch(d: dict):
    """The model and batch nnspec builds for spec dict ``d``, for hand computations."""
    from nnspec.inputs.batch import load_input
    from nnspec.inputs.model import build_model
    from nnspec.spec.load import load_spec

    s = load_spec(d)
    return build_model(s), load_input(s.input, ".")


# Golden Vega-Lite documents, compared so that they hold on any machine.
#
# float32 carries ~7 significant digits: the same torch build on another x86 CPU
# (other SIMD widths, other threading) sums reductions in another order and
# differs at ~1e-7 relative, which the goldens' 9 printed digits show. rel_tol
# 1e-5 is 100x that noise and still catches any change a reader could see;
# abs_tol 1e-6 covers values that cancel to ~0, whose relative noise is large.
GOLDEN_REL_TOL = 1e-5
GOLDEN_ABS_TOL = 1e-6

# Altair names an inline data set "data-" + the MD5 of its rows: float noise renames it.
_DATASET_NAME = re.compile(r"data-[0-9a-f]{32}")


def canonical_dataset_names(doc):
    """``doc`` with Altair's content-hashed data set names renamed ``data-0``,
    ``data-1``, … in the order the document first refers to them.

    References (``"data": {"name": …}``) are numbered before the ``datasets``
    dictionaries that define them: a layered chart has no top-level ``data``,
    and its sorted keys put ``datasets`` (ordered by hash, so by the floats)
    before ``layer``. Data sets nothing refers to are numbered last, in the
    order they are listed."""
    names: dict[str, str] = {}

    def number(text: str) -> None:
        for name in _DATASET_NAME.findall(text):
            names.setdefault(name, f"data-{len(names)}")

    def collect(x, deferred: list) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                number(k)
                if k == "datasets" and isinstance(v, dict):
                    deferred.append(v)
                else:
                    collect(v, deferred)
        elif isinstance(x, list):
            for v in x:
                collect(v, deferred)
        elif isinstance(x, str):
            number(x)

    deferred: list = []
    collect(doc, deferred)
    for datasets in deferred:
        for k in datasets:
            number(k)
        collect(list(datasets.values()), [])

    def rename(x):
        if isinstance(x, dict):
            return {rename(k): rename(v) for k, v in x.items()}
        if isinstance(x, list):
            return [rename(v) for v in x]
        if isinstance(x, str):
            return _DATASET_NAME.sub(lambda m: names[m.group(0)], x)
        return x

    return rename(doc)


# -- an independent PNG reader: chunks, zlib inflate of IDAT, scanline filters ------------
def units(doc) -> list[dict]:
    """Every unit spec (a dict with a ``mark``) inside a Vega-Lite document, layers and facets included."""
    out = []

    def walk(x):
        if isinstance(x, dict):
            if "mark" in x:
                out.append(x)
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(doc)
    return out


def read_png(data: bytes) -> tuple[np.ndarray, np.ndarray, bytes]:
    """(indexes (h, w), palette (n, 3), tRNS alphas) of an 8-bit palette PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IDAT":
            idat += body
        chunks[kind] = body
        pos += 12 + n
    w, h, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour_type) == (8, 3)
    raw = zlib.decompress(idat)
    rows, prev = [], bytearray(w)
    for r in range(h):
        line = raw[r * (w + 1) : (r + 1) * (w + 1)]
        kind, cur = line[0], bytearray(line[1:])
        for i in range(w):  # unfilter (bpp 1)
            a, b, c = (cur[i - 1] if i else 0), prev[i], (prev[i - 1] if i else 0)
            if kind == 1:
                cur[i] = (cur[i] + a) & 255
            elif kind == 2:
                cur[i] = (cur[i] + b) & 255
            elif kind == 3:
                cur[i] = (cur[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(cur))
        prev = cur
    index = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(h, w)
    pal = np.frombuffer(chunks[b"PLTE"], dtype=np.uint8).reshape(-1, 3)
    return index, pal, chunks.get(b"tRNS", b"")


PNG_URL = "data:image/png;base64,"


def _png_difference(expected: str, actual: str, path: str) -> str | None:
    """Two inline PNG images: same size and palette, and pixel indexes within one
    level (a weight one rounding step away on another CPU moves a pixel by one)."""
    import base64

    e_idx, e_pal, e_alpha = read_png(base64.b64decode(expected[len(PNG_URL) :]))
    a_idx, a_pal, a_alpha = read_png(base64.b64decode(actual[len(PNG_URL) :]))
    if e_idx.shape != a_idx.shape:
        return f"{path}: expected a {e_idx.shape} image, got {a_idx.shape}"
    if e_pal.tobytes() != a_pal.tobytes() or e_alpha != a_alpha:
        return f"{path}: the image's palette differs"
    worst = int(np.abs(e_idx.astype(int) - a_idx.astype(int)).max()) if e_idx.size else 0
    return None if worst <= 1 else f"{path}: image pixels differ by up to {worst} levels"


def _json_path(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", key) else f"{path}[{key!r}]"


def json_difference(expected, actual, rel_tol=GOLDEN_REL_TOL, abs_tol=GOLDEN_ABS_TOL, path="$") -> str | None:
    """The first difference between two parsed JSON documents, as ``"<JSON path>:
    expected X, got Y"``, or None. Structure is compared exactly (keys, list
    lengths, strings, bools, ints, null, and which numbers are floats); floats
    with ``math.isclose(rel_tol, abs_tol)``. Apply canonical_dataset_names first."""
    if isinstance(expected, bool) or isinstance(actual, bool) or type(expected) is not type(actual):
        if type(expected) is type(actual) and expected == actual:
            return None
        return f"{path}: expected {type(expected).__name__} {expected!r}, got {type(actual).__name__} {actual!r}"
    if isinstance(expected, float):
        if math.isclose(expected, actual, rel_tol=rel_tol, abs_tol=abs_tol) or (
            math.isnan(expected) and math.isnan(actual)
        ):
            return None
        return f"{path}: expected {expected!r}, got {actual!r} (beyond rel_tol={rel_tol:g}, abs_tol={abs_tol:g})"
    if isinstance(expected, dict):
        for k in expected:
            if k not in actual:
                return f"{_json_path(path, k)}: expected {expected[k]!r:.200}, got no such key"
        for k in actual:
            if k not in expected:
                return f"{_json_path(path, k)}: expected no such key, got {actual[k]!r:.200}"
        for k in expected:
            diff = json_difference(expected[k], actual[k], rel_tol, abs_tol, _json_path(path, k))
            if diff:
                return diff
        return None
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return f"{path}: expected a list of {len(expected)}, got a list of {len(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            diff = json_difference(e, a, rel_tol, abs_tol, _json_path(path, i))
            if diff:
                return diff
        return None
    if isinstance(expected, str) and expected.startswith(PNG_URL) and actual.startswith(PNG_URL):
        return _png_difference(expected, actual, path)
    if expected != actual:  # str, int, None
        return f"{path}: expected {expected!r}, got {actual!r}"
    return None
