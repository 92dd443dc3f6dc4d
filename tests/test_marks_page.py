"""What the marks declare for the page (design §7: ``usermeta.nnspec``, the params it sets)
and the legibility rules of the marks, checked on numbers and structure."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
import torch
import vl_convert
from torch import nn

import nnspec
from nnspec.marks import raster
from nnspec.marks.common import LAYER_PARAM, SMOOTH_PARAM, log_meta
from nnspec.marks.heatmap import _cell_label
from nnspec.marks.images import labels_fit
from nnspec.marks.steps import STEP_PARAM
from tests.helpers import iris_spec, read_png, spec, units, view


def _mark(unit) -> str:
    return unit["mark"] if isinstance(unit["mark"], str) else unit["mark"]["type"]


def _meta(doc) -> dict:
    return doc["usermeta"]["nnspec"]


def _params(doc) -> dict:
    return {p["name"]: p for p in doc.get("params", [])}


def _render(model, queries, max_marks=None, **kw):
    views = [{"query": q, **({"max_marks": max_marks} if max_marks else {})} for q in queries]
    return nnspec.render(spec(views, loss=None), model=model, **kw)


def _draws(doc) -> str:
    """Vega compiles and draws the chart (every expression parses): its SVG."""
    svg = vl_convert.vegalite_to_svg(doc)
    assert svg.startswith("<svg")
    return svg


def _bar_heights(svg: str) -> list[float]:
    return [float(h) for h in re.findall(r'aria-roledescription="bar" d="M[-\d.]+,[-\d.]+h[-\d.]+v([-\d.]+)', svg)]


# -- runs compared honestly ------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs given in an order that is not alphabetical; the first has 210 recorded steps."""
    root = tmp_path_factory.mktemp("runs")
    out = []
    for name, lr, steps in (("zeta", 0.1, 210), ("alpha", 0.5, 4), ("mid", 0.01, 4)):
        d = iris_spec(["loss over steps", "weights of fc1 over steps | histogram(bins=6)"])
        d["train"] = {"steps": steps, "record_every": 1, "optimizer": {"name": "sgd", "lr": lr}}
        d["train"]["run"] = str(root / name)
        nnspec.render(d)
        out.append(str(root / name))
    return out


ORDER = ["zeta", "alpha", "mid"]


def test_every_chart_of_runs_names_every_run_in_run_order(runs):
    queries = [
        "loss over steps",
        "weights of fc1 over steps | histogram(bins=6)",
        "loss over steps | line(color=layer)",
    ]
    dash = nnspec.render(iris_spec(queries), runs=runs)
    line, ridges, by_layer = (view(dash, i).vega_lite() for i in range(3))
    # past 200 rows the points go, the line's own colour legend stays and names each run
    colours = [u["encoding"]["color"] for u in units(line) if "color" in u.get("encoding", {})]
    assert colours and all(
        c["field"] == "run" and c["sort"] == ORDER and c.get("legend", {}) is not None for c in colours
    )
    assert len(view(dash, 0).data) > 200
    fills = [u["encoding"]["fill"] for u in units(ridges) if "fill" in u.get("encoding", {})]
    assert fills and all(f["field"] == "run" and f["sort"] == ORDER for f in fills)
    assert list(dict.fromkeys(view(dash, 1).data["run"])) == ORDER
    dashes = [u["encoding"]["strokeDash"] for u in units(by_layer) if "strokeDash" in u.get("encoding", {})]
    assert dashes and all(d["sort"] == ORDER and d.get("legend", {}) is not None for d in dashes)
    for doc in (line, ridges):
        assert _meta(doc)["runs"] == ORDER and _meta(doc)["colors"] == [{"field": "run"}]
        assert _meta(doc)["over_run"] is True
        _draws(doc)


def test_series_declare_smoothing_log_and_legend_isolation(runs):
    dash = nnspec.render(iris_spec(["loss over steps | line(log=true)"]), runs=runs)
    v = view(dash)
    doc = v.vega_lite()
    meta = _meta(doc)
    assert meta["kind"] == "line" and meta["layers"] == ["loss"] and meta["layer_field"] == "layer"
    assert meta["log"] == {"field": "value", "channel": "y", "type": "log"}  # every loss > 0
    assert meta["smooth"] == {"x": "step", "y": "value", "by": ["run"], "as": "smoothed"}
    # inline rows carry both, the EMA field equal to the value as Python draws it
    rows = [r for u in [doc] for r in (u.get("data") or {}).get("values", [])] or [
        r for rows in doc.get("datasets", {}).values() for r in rows
    ]
    assert rows and all(r["smoothed"] == r["value"] for r in rows)
    assert (v.data["smoothed"] == v.data["value"]).all()
    params = _params(doc)
    assert params[SMOOTH_PARAM]["value"] == 0 and params[LAYER_PARAM]["value"] == ""
    pick = next(p for p in params.values() if p.get("bind") == "legend")
    assert pick["select"]["fields"] == ["run"]
    lines = [u for u in units(doc) if _mark(u) == "line"]
    strokes = sorted(u["mark"]["strokeOpacity"]["expr"] for u in lines)
    assert strokes == [f"{SMOOTH_PARAM} > 0 ? 0.3 : 1", f"{SMOOTH_PARAM} > 0 ? 1 : 0"]
    for u in lines:
        assert u["encoding"]["y"]["scale"]["type"] == "log"
        conditions = u["encoding"]["opacity"]["condition"]
        assert any(c.get("param") == pick["name"] for c in conditions)
        assert any(LAYER_PARAM in c.get("test", "") for c in conditions)
    _draws(doc)


def test_the_ridgeline_has_a_step_slider_at_the_last_step(runs):
    doc = view(nnspec.render(iris_spec(["weights of fc1 over steps | histogram(bins=6)"]), runs=runs[1:])).vega_lite()
    slider = _params(doc)[STEP_PARAM]
    steps = _meta(doc)["steps"]
    assert steps == [0, 1, 2, 3]
    assert slider["value"] == 3 and slider["bind"]["input"] == "range"
    assert (slider["bind"]["min"], slider["bind"]["max"], slider["bind"]["step"]) == (0, 3, 1)
    areas = [u for u in units(doc) if _mark(u) == "area"]
    assert areas and all(STEP_PARAM in u["encoding"]["fillOpacity"]["condition"]["test"] for u in areas)
    pick = next(p for p in _params(doc).values() if p.get("bind") == "legend")  # one layer: runs isolate
    assert pick["select"]["fields"] == ["run"]
    assert all(c["param"] == pick["name"] for u in areas for c in u["encoding"]["opacity"]["condition"])
    _draws(doc)


def test_log_type_follows_the_drawn_values():
    assert log_meta([0.5, 2.0], "value") == {"field": "value", "channel": "y", "type": "log"}
    assert log_meta([0.0, 0.25, 3.0], "count") == {"field": "count", "channel": "y", "type": "symlog", "constant": 0.25}
    assert log_meta([-2.0, 1e-3, float("nan")], "v", "x")["constant"] == 1e-3
    assert log_meta([0.0], "v")["constant"] == 1.0


# -- bars: labels that read ------------------------------------------------------------------
class _Long(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder_first_block_attention_projection = nn.Linear(4, 4)
        self.encoder_first_block_feedforward_output = nn.Linear(4, 4)
        self.encoder_second_block_attention_projection = nn.Linear(4, 4)
        self.encoder_second_block_feedforward_output = nn.Linear(4, 4)

    def forward(self, x):
        return x


def test_four_long_bar_labels_slant_instead_of_overlapping():
    torch.manual_seed(0)
    doc = view(_render(_Long(), ["weights of *.weight | norm | bar(log=true)"])).vega_lite()
    (bar,) = [u for u in units(doc) if _mark(u) == "bar"]
    axis = bar["encoding"]["x"]["axis"]
    assert axis["labelAngle"] == -40 and axis["labelLimit"] <= 200
    meta = _meta(doc)
    assert meta["kind"] == "bar" and meta["layer_field"] == "layer" and len(meta["layers"]) == 4
    assert meta["log"]["type"] == "log" and bar["encoding"]["y"]["scale"]["type"] == "log"
    heights = _bar_heights(_draws(doc))  # bars rise from the axis's foot on a log scale (stacked from 0 they vanish)
    assert len(heights) == 4 and all(h > 1 for h in heights)


def test_a_log_histogram_draws_every_nonzero_bin():
    torch.manual_seed(0)
    v = view(
        _render(
            nn.Sequential(nn.Linear(4, 16)),
            ["activations of 0 | histogram(bins=12, log=true)"],
            inputs=torch.randn(64, 4),
        )
    )
    meta = _meta(v.vega_lite())["log"]
    counts = v.data["count"]
    assert meta["field"] == "count" and meta["type"] == ("log" if (counts > 0).all() else "symlog")
    heights = _bar_heights(_draws(v.vega_lite()))
    assert sum(h > 0 for h in heights) == int((counts > 0).sum())


def test_a_161_bar_chart_lies_down_one_row_a_bar():
    model = nn.Sequential(*(nn.Linear(2, 2) for _ in range(161)))
    doc = view(_render(model, ["weights of *.weight | norm | bar"])).vega_lite()
    (bar,) = [u for u in units(doc) if _mark(u) == "bar"]
    assert bar["encoding"]["y"]["type"] == "nominal" and bar["encoding"]["x"]["type"] == "quantitative"
    assert doc["height"] == {"step": 18}
    assert len(_meta(doc)["layers"]) == 161


# -- heatmaps --------------------------------------------------------------------------------
def test_a_16_by_4_heatmap_prints_values_that_fit_their_cells():
    model = nn.Sequential(nn.Linear(4, 16))
    torch.manual_seed(0)
    doc = view(_render(model, ["weights of 0 | heatmap"])).vega_lite()
    (text,) = [u for u in units(doc) if _mark(u) == "text"]
    font = text["mark"]["fontSize"]
    cell = min(doc["width"] / 4, doc["height"] / 16)
    digits = text["encoding"]["text"]["format"]  # .3~g, or .2~g where three digits do not fit
    longest = max(len(f"{float(v):{digits[:-2]}g}") for v in model[0].weight.detach().reshape(-1).tolist())
    assert 7 <= font and longest * 0.62 * font <= cell - 3
    enc = next(u["encoding"] for u in units(doc) if _mark(u) == "rect")
    assert (enc["y"]["title"], enc["x"]["title"]) == ("output unit", "input unit")
    assert _meta(doc)["layer_field"] == "layer" and _params(doc)[LAYER_PARAM]["value"] == ""
    _draws(doc)


def test_cells_too_small_for_text_print_none():
    assert _cell_label(np.array([-0.123456]), 10.0) is None
    assert _cell_label(np.array([-0.123456]), 60.0) == (".3~g", 10.0)


def test_activation_heatmaps_name_their_axes():
    model = nn.Sequential(nn.Linear(4, 6))
    doc = view(_render(model, ["activations of 0 | heatmap"], inputs=torch.randn(3, 4))).vega_lite()
    enc = next(u["encoding"] for u in units(doc) if _mark(u) == "rect")
    assert (enc["y"]["title"], enc["x"]["title"]) == ("sample", "feature")


# -- images ----------------------------------------------------------------------------------
def test_a_64x64x3x3_conv_draws_all_4096_filters_at_their_values():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 64, 3))
    v = view(_render(model, ["weights of 0.weight | images"]))
    doc = v.vega_lite()
    assert any("all 4096 filters of 3×3" in n for n in v.notes)
    assert not any("first" in n for n in v.notes)
    (image,) = [u for u in units(doc) if _mark(u) == "image"]
    url = image["data"]["values"][0]["url"]
    index, pal, _ = read_png(base64.b64decode(url.split(",", 1)[1]))
    assert index.shape == (64 * 4 - 1, 64 * 4 - 1)
    k = model[0].weight.detach().double().numpy()
    m = float(np.abs(k).max())
    (scale,) = [u["encoding"]["color"]["scale"] for u in units(doc) if "color" in u.get("encoding", {})]
    assert scale["domain"] == pytest.approx([-m, m], rel=1e-12)  # the legend: the true range
    expected = raster.levels(k, (-m, m), 0.0)
    colours = raster.scheme_rgb(scale["scheme"], np.arange(raster.LEVELS) / (raster.LEVELS - 1))
    for o, i, y, x in [(0, 0, 0, 0), (5, 17, 1, 2), (63, 63, 2, 2), (40, 3, 2, 0)]:
        got = index[o * 4 + y, i * 4 + x]
        assert got == expected[o, i, y, x]
        assert tuple(pal[got]) == tuple(colours[expected[o, i, y, x]])
    assert (index[3::4, :] == raster.BLANK).all() and (index[:, 3::4] == raster.BLANK).all()  # gaps
    enc = image["encoding"]
    assert (enc["y"]["title"], enc["x"]["title"]) == ("output channel", "input channel")
    _draws(doc)


def test_narrow_tiles_label_their_rows_not_each_tile():
    assert labels_fit(["1,2"], 20) and not labels_fit(["10,0"], 12)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 12, 3))
    doc = view(_render(model, ["weights of 0.weight | images"])).vega_lite()
    (text,) = [u for u in units(doc) if _mark(u) == "text"]
    assert {"filter": "datum.gx == 0"} in text.get("transform", []) and text["mark"]["align"] == "right"
    _draws(doc)


# -- tables, scatter -------------------------------------------------------------------------
def test_the_table_mark_declares_its_rows():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    v = view(_render(model, ["weights of * | stats | table"]))
    table = _meta(v.vega_lite())["table"]
    assert table["columns"] == list(v.data.columns)
    assert [r[0] for r in table["rows"]] == list(v.data["layer"])
    assert table["rows"][0][v.data.columns.get_loc("mean")] == pytest.approx(float(v.data["mean"][0]))


def test_pca_classes_are_nominal_colours():
    doc = view(nnspec.render(iris_spec(["activations of fc1 | pca"]))).vega_lite()
    (point,) = [u for u in units(doc) if _mark(u) == "circle"]
    assert point["encoding"]["color"]["type"] == "nominal"
    assert _meta(doc)["kind"] == "scatter"


def test_one_function_names_itself():
    doc = view(nnspec.render(spec(["function relu over [-2, 2]"], loss=None))).vega_lite()
    (line,) = [u for u in units(doc) if _mark(u) == "line"]
    assert line["encoding"]["y"]["title"] == "relu(x), relu'(x)"
    assert _meta(doc)["functions"] == ["relu"]


def test_every_chart_says_what_it_is():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    queries = ["weights of 0 | heatmap", "weights of * | histogram", "weights of * | box", "summary", "graph"]
    dash = _render(model, queries, inputs=torch.randn(2, 4))
    kinds = [_meta(view(dash, i).vega_lite())["kind"] for i in range(len(queries))]
    assert kinds == ["heatmap", "histogram", "box", "table", "graph"]


# -- in the browser: the params do what they say ---------------------------------------------
LINE_OPACITY = """(id) => { const out = [];
  const walk = (n) => { if (n.items) n.items.forEach(walk);
    if (n.marktype === 'line') n.items.forEach(i => i.datum && out.push([i.datum.run, i.opacity])); };
  walk(window.nnspec.views[id].scenegraph().root); return out; }"""
STRONG_STEPS = """(id) => { const out = new Set();
  const walk = (n) => { if (n.items) n.items.forEach(walk);
    if (n.marktype === 'area') n.items.forEach(i => i.datum && i.fillOpacity > 0.9 && out.add(i.datum.step)); };
  walk(window.nnspec.views[id].scenegraph().root); return [...out].sort((a, b) => a - b); }"""


def test_legend_isolation_layer_dimming_and_step_slider_in_chromium(runs, tmp_path):
    from tests import browser_util

    sync_api = browser_util.require()
    queries = ["loss over steps", "weights of fc1 over steps | histogram(bins=6)"]
    dash = nnspec.render(iris_spec(queries), runs=runs, out=str(tmp_path), formats=("html",))
    (html,) = tmp_path.glob("*.html")
    with browser_util.launch(sync_api) as browser:
        page, errors, blocked = browser_util.open_page(browser, html)
        page.wait_for_function("window.nnspec.views['view-0']")
        assert {r for r, o in page.evaluate(LINE_OPACITY, "view-0")} == set(ORDER)
        assert {o for r, o in page.evaluate(LINE_OPACITY, "view-0")} == {1}
        # clicking the legend's second run isolates it
        box = page.eval_on_selector(
            "#view-0 .role-legend-label text >> nth=1",
            "t => { const r = t.getBoundingClientRect(); return [r.x, r.y, r.height]; }",
        )
        page.mouse.click(box[0] + 3, box[1] + box[2] / 2)
        page.wait_for_timeout(200)
        seen = dict(page.evaluate(LINE_OPACITY, "view-0"))
        assert seen["alpha"] == 1 and seen["zeta"] == seen["mid"] == pytest.approx(0.15)
        # a layer picked elsewhere dims every line of another layer
        page.evaluate("() => { window.nnspec.views['view-0'].signal('nnspec_pick', null); }")
        page.evaluate("() => { window.nnspec.views['view-0'].signal('nnspec_layer', 'fc2').run(); }")
        assert all(o == pytest.approx(0.15) for r, o in page.evaluate(LINE_OPACITY, "view-0"))
        # the ridgeline's step slider: a range input over the recorded steps, at the last
        page.eval_on_selector("#view-1", "e => e.scrollIntoView()")
        page.wait_for_function("window.nnspec.views['view-1']")
        assert page.eval_on_selector_all("#view-1 input[type=range]", "xs => xs.map(x => [x.min, x.max, x.value])") == [
            ["0", "209", "209"]
        ]
        steps = sorted({int(s) for s in view(dash, 1).data["step"]})
        assert page.evaluate(STRONG_STEPS, "view-1") == [steps[-1]]  # the last step drawn strong
        # moving the slider to the first step draws that step's ridge strong instead
        page.eval_on_selector(
            "#view-1 input[type=range]",
            "(x, v) => { x.value = v; x.dispatchEvent(new Event('input', {bubbles: true})); }",
            str(steps[0]),
        )
        page.wait_for_timeout(200)
        assert page.evaluate(STRONG_STEPS, "view-1") == [steps[0]]
        assert errors == [] and blocked == []
