"""The dashboard page as an instrument (docs/design.md §7), driven in headless
Chromium with the network blocked: sidebar, filter, collapsible cards, dark mode,
layouts that fit the window, HTML tables, log/linear, smoothing, export, legend
isolation, layer highlight, and a 57-view page drawn in under 2 s.

The charts are Vega-Lite written by hand here, with the ``usermeta.nnspec``
declarations the marks make, and laid out by ``nnspec.output.html.page``."""

from __future__ import annotations

import csv
import io
import json
import os
import time

import pytest

from nnspec.output.convert import vl_version
from nnspec.output.html import page as make_page
from tests import browser_util

pytestmark = pytest.mark.browser
sync_api = browser_util.require()

LAYERS = ["encoder.fc1", "encoder.fc2", "head"]


@pytest.fixture(scope="module")
def browser():
    with browser_util.launch(sync_api) as b:
        yield b


def series_rows():
    """A loss-like series per layer over 12 steps (value and, as Python draws it, smoothed = value)."""
    rows = []
    for k, layer in enumerate(LAYERS):
        for step in range(12):
            v = (k + 1) * 10.0 / (step + 1) + (step % 3) * 0.5
            rows.append({"step": step, "layer": layer, "run": "r1", "value": v, "smoothed": v})
    return rows


def line_spec() -> dict:
    opacity_raw = {"condition": {"test": "nnspec_smoothing > 0", "value": 0.3}, "value": 1}
    opacity_smooth = {"condition": {"test": "nnspec_smoothing > 0", "value": 1}, "value": 0}
    base = {"x": {"field": "step", "type": "quantitative"}, "color": {"field": "layer", "type": "nominal"}}
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"name": "series"},
        "datasets": {"series": series_rows()},
        "params": [{"name": "nnspec_smoothing", "value": 0}, {"name": "nnspec_layer", "value": ""}],
        "layer": [
            {
                "mark": "line",
                "encoding": {**base, "y": {"field": "value", "type": "quantitative"}, "opacity": opacity_raw},
            },
            {
                "mark": "line",
                "encoding": {**base, "y": {"field": "smoothed", "type": "quantitative"}, "opacity": opacity_smooth},
            },
        ],
        "width": 300,
        "height": 160,
        "usermeta": {
            "nnspec": {
                "kind": "line",
                "layers": LAYERS,
                "layer_field": "layer",
                "log": {"field": "value", "channel": "y", "type": "log"},
                "smooth": {"x": "step", "y": "value", "by": ["layer", "run"], "as": "smoothed"},
            }
        },
    }


STATS = {
    "columns": ["layer", "numel", "mean"],
    "rows": [["encoder.fc1", 20, 0.5], ["encoder.fc2", 100, -0.25], ["head", 9, 2.0], ["encoder.norm", 8, 10.0]],
}


def table_spec() -> dict:
    values = [dict(zip(STATS["columns"], r)) for r in STATS["rows"]]
    return {
        "data": {"values": values},
        "mark": "bar",
        "encoding": {"y": {"field": "layer", "type": "nominal"}, "x": {"field": "numel", "type": "quantitative"}},
        "params": [{"name": "nnspec_layer", "value": ""}],
        "usermeta": {
            "nnspec": {"kind": "table", "layers": [r[0] for r in STATS["rows"]], "layer_field": "layer", "table": STATS}
        },
    }


def legend_spec() -> dict:
    rows = [{"x": i, "y": (i * 7) % 5, "run": run} for run in ("alpha", "beta", "gamma") for i in range(6)]
    return {
        "data": {"values": rows},
        "mark": {"type": "point", "size": 80},
        "params": [{"name": "runsel", "select": {"type": "point", "fields": ["run"]}, "bind": "legend"}],
        "encoding": {
            "x": {"field": "x", "type": "quantitative"},
            "y": {"field": "y", "type": "quantitative"},
            "color": {"field": "run", "type": "nominal"},
            "opacity": {"condition": {"param": "runsel", "value": 1}, "value": 0.1},
        },
        "usermeta": {"nnspec": {"kind": "point"}},
    }


def wide_spec(i: int) -> dict:
    return {
        "data": {"values": [{"a": j, "b": (i + j) % 4} for j in range(8)]},
        "mark": "bar",
        "encoding": {"x": {"field": "a", "type": "ordinal"}, "y": {"field": "b", "type": "quantitative"}},
        "width": 400,
        "height": 120,
        "usermeta": {"nnspec": {"kind": "bar", "layers": [f"block{i}.conv"]}},
    }


def cards():
    return [
        {"title": "Loss per layer", "query": "series of loss | line", "spec": line_spec()},
        {"title": "Layer statistics", "query": "activations of * | stats | table", "spec": table_spec()},
        {"title": "Runs compared", "query": "series of acc | point", "spec": legend_spec()},
        {"title": "weights of fc9 | heatmap", "query": "weights of fc9 | heatmap", "error": "no module matches 'fc9'"},
        *[
            {
                "title": f"block{i} weights",
                "query": f"weights of block{i}.conv | bar",
                "spec": wide_spec(i),
                "group": "2:layer",
                "columns": 4,
            }
            for i in range(4)
        ],
    ]


RUNS = [{"run": "r1", "lr": 0.01, "seed": 0}, {"run": "r2", "lr": 0.001, "seed": 1, "warmup": 100}]


def write(tmp_path, cards_=None, runs=RUNS, name="page.html"):
    text = make_page("Instrument test", "hand-written charts", cards_ or cards(), vl_version(), "footer", runs=runs)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def open_page(browser, path, **kw):
    page, errors, blocked = browser_util.open_page(browser, path, **kw)
    return page, errors, blocked


@pytest.fixture
def opened(browser, tmp_path):
    page, errors, blocked = open_page(browser, write(tmp_path))
    page.set_viewport_size({"width": 1440, "height": 900})
    yield page
    assert errors == [] and blocked == []
    page.close()


def test_page_is_deterministic(tmp_path):
    assert write(tmp_path, name="a.html").read_bytes() == write(tmp_path, name="b.html").read_bytes()


def test_untitled_view_shows_its_query_once(tmp_path):
    text = write(tmp_path).read_text(encoding="utf-8")
    card = text[text.index('id="view-3"') : text.index("</section>", text.index('id="view-3"'))]
    assert card.count("weights of fc9 | heatmap") == 2  # data-search, and the heading; no <pre> repeating it
    assert "<h2><code>weights of fc9 | heatmap</code></h2>" in card and "<pre>" not in card


def test_sidebar_lists_every_card_and_scrolls_to_it(opened):
    opened.set_viewport_size({"width": 1440, "height": 300})
    titles = opened.eval_on_selector_all(".nn-side li[data-card] a", "as => as.map(a => a.textContent)")
    assert titles == [c["title"] for c in cards()]
    assert opened.eval_on_selector_all(".nn-side a", "as => as.map(a => a.getAttribute('href'))")[0] == "#runs"
    opened.click(".nn-side a[href='#view-7']")
    opened.wait_for_timeout(200)
    top = opened.evaluate("document.getElementById('view-7').getBoundingClientRect().top")
    assert 0 <= top < 50
    opened.wait_for_selector(".nn-side li.current[data-card='view-7']")  # the sidebar marks where you are


def test_filter_by_title_and_by_layer(opened):
    def shown():
        return opened.eval_on_selector_all("section.card[data-search]:not([hidden])", "ss => ss.map(s => s.id)")

    assert len(shown()) == 8
    opened.keyboard.press("/")
    assert opened.evaluate("document.activeElement.id") == "nn-filter"
    opened.fill("#nn-filter", "statistics")
    assert shown() == ["view-1"]
    assert opened.eval_on_selector_all(".nn-side li[data-card]:not([hidden])", "ls => ls.length") == 1
    opened.fill("#nn-filter", "block2.conv")  # a layer: named in usermeta.nnspec.layers
    assert shown() == ["view-6"]
    opened.fill("#nn-filter", "encoder.fc2")  # in the series' and the table's layers, no title
    assert shown() == ["view-0", "view-1"]
    assert opened.inner_text("#nn-count") == "2 of 8 views"
    opened.fill("#nn-filter", "")
    assert len(shown()) == 8


def test_a_card_collapses(opened):
    card = "#view-0"
    assert opened.is_visible(f"{card} [data-spec]")
    opened.click(f"{card} .collapse")
    assert not opened.is_visible(f"{card} [data-spec]") and not opened.is_visible(f"{card} pre")
    assert opened.is_visible(f"{card} h2")
    opened.click(f"{card} .collapse")
    assert opened.is_visible(f"{card} [data-spec]")


def _background(page):
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def test_dark_mode_follows_the_system_and_toggles(browser, tmp_path):
    path = write(tmp_path)
    light, errors, _ = open_page(browser, path, color_scheme="light")
    dark, errors2, _ = open_page(browser, path, color_scheme="dark")
    for p in (light, dark):
        p.set_viewport_size({"width": 1440, "height": 900})
    assert light.evaluate("document.documentElement.dataset.theme") == "light"
    assert dark.evaluate("document.documentElement.dataset.theme") == "dark"
    assert _background(light) == "rgb(246, 247, 249)" and _background(dark) == "rgb(21, 24, 30)"
    light.screenshot(path=str(tmp_path / "light.png"))
    dark.screenshot(path=str(tmp_path / "dark.png"))
    # axis labels are light on the dark page (Vega's dark theme), dark on the light one
    fill = "document.querySelector('#view-0 .role-axis-label text').getAttribute('fill')"
    assert dark.evaluate(fill) != light.evaluate(fill)
    dark.click("#nn-theme")
    assert dark.evaluate("document.documentElement.dataset.theme") == "light"
    assert _background(dark) == "rgb(246, 247, 249)"
    dark.wait_for_function(
        "window.nnspec.views['view-0'] && document.querySelector('#view-0 [data-spec]').dataset.rendered"
    )
    if os.environ.get("NNSPEC_SHOTS"):  # keep the screenshots to look at
        for name in ("light.png", "dark.png"):
            (tmp_path / name).replace(os.path.join(os.environ["NNSPEC_SHOTS"], name))
    assert errors == [] and errors2 == []
    light.close()
    dark.close()


def test_a_four_column_repeat_group_fits_the_window(opened):
    assert opened.evaluate("document.documentElement.scrollWidth") <= 1440
    # each copy still draws at its own size, the group wraps
    widths = opened.eval_on_selector_all(".group section.card", "ss => ss.map(s => s.getBoundingClientRect().width)")
    assert len(widths) == 4 and min(widths) > 400
    opened.set_viewport_size({"width": 3000, "height": 900})
    opened.wait_for_timeout(100)
    tops = opened.eval_on_selector_all(".group section.card", "ss => ss.map(s => s.getBoundingClientRect().top)")
    assert len(set(tops)) == 1  # wide enough: the 4 columns in one row


def _rows(page, card):
    return page.eval_on_selector_all(
        f"{card} .nn-table tbody tr:not([hidden])",
        "trs => trs.map(tr => [...tr.cells].slice(0, -1).map(c => c.textContent))",
    )


def test_table_sorts_searches_and_copies(opened):
    card = "#view-1"
    assert opened.is_visible(f"{card} .nn-table") and not opened.is_visible(f"{card} [data-spec]")
    assert [r[0] for r in _rows(opened, card)] == [r[0] for r in STATS["rows"]]
    opened.click(f"{card} th:has-text('mean')")
    means = [float(r[2]) for r in _rows(opened, card)]
    assert means == sorted(means)
    opened.click(f"{card} th:has-text('mean')")
    assert [float(r[2]) for r in _rows(opened, card)] == sorted(means, reverse=True)
    opened.click(f"{card} th:has-text('numel')")
    assert [int(r[1]) for r in _rows(opened, card)] == [8, 9, 20, 100]  # numbers, not text order
    opened.fill(f"{card} .nn-table input[type=search]", "encoder")
    assert sorted(r[0] for r in _rows(opened, card)) == ["encoder.fc1", "encoder.fc2", "encoder.norm"]
    opened.evaluate(
        "Object.defineProperty(navigator, 'clipboard', {value: {writeText: t => (window.__copied = t, Promise.resolve())}})"
    )
    opened.click(f"{card} .nn-table .bar button:has-text('copy')")
    copied = opened.evaluate("window.__copied")
    assert copied == "layer\tnumel\tmean\nencoder.norm\t8\t10\nencoder.fc1\t20\t0.5\nencoder.fc2\t100\t-0.25\n"
    opened.hover(f"{card} .nn-table tbody tr:not([hidden]) >> nth=0")
    opened.click(f"{card} .nn-table tbody tr:not([hidden]) >> nth=0 >> td.copy button")
    assert opened.evaluate("window.__copied") == "layer\tnumel\tmean\nencoder.norm\t8\t10\n"
    # the static chart is one click away, and drawn (PNG/SVG export need it)
    opened.click(f"{card} .nn-alt")
    assert opened.is_visible(f"{card} [data-spec] svg") and not opened.is_visible(f"{card} .nn-table")


def test_runs_table(opened):
    assert _rows(opened, "#runs") == [["r1", "0.01", "0", ""], ["r2", "0.001", "1", "100"]]
    assert opened.eval_on_selector_all("#runs th", "ths => ths.map(t => t.textContent)")[:4] == [
        "run",
        "lr",
        "seed",
        "warmup",
    ]
    opened.click("#runs th:has-text('lr')")
    assert [r[0] for r in _rows(opened, "#runs")] == ["r2", "r1"]


def _y_scale(page):
    return page.evaluate("window.nnspec.views['view-0'].scale('y').type")


def _new_view(page, old):
    page.wait_for_function(f"window.nnspec.views['view-0'] !== window.{old}")


def test_log_toggle_changes_the_scale(opened):
    assert _y_scale(opened) == "linear"
    opened.evaluate("() => { window.__v = window.nnspec.views['view-0']; }")
    opened.click("#view-0 .nn-log")
    _new_view(opened, "__v")
    assert _y_scale(opened) == "log"
    assert opened.get_attribute("#view-0 .nn-log", "aria-pressed") == "true"
    opened.evaluate("() => { window.__v = window.nnspec.views['view-0']; }")
    opened.click("#view-0 .nn-log")
    _new_view(opened, "__v")
    assert _y_scale(opened) == "linear"


def tensorboard_ema(values, w):
    last, out = 0.0, []
    for i, v in enumerate(values):
        last = last * w + (1 - w) * v
        out.append(last / (1 - w ** (i + 1)))
    return out


def test_smoothing_slider(opened):
    opened.evaluate("() => { window.__v = window.nnspec.views['view-0']; }")
    opened.eval_on_selector(
        "#view-0 .nn-smooth input", "r => { r.value = '0.6'; r.dispatchEvent(new Event('input')); }"
    )
    _new_view(opened, "__v")
    assert opened.evaluate("window.nnspec.views['view-0'].signal('nnspec_smoothing')") == 0.6
    rows = opened.evaluate("window.nnspec.views['view-0'].data('series')")
    rows = [r for r in rows if r["layer"] == "encoder.fc2"]
    rows.sort(key=lambda r: r["step"])
    expected = tensorboard_ema([r["value"] for r in rows], 0.6)
    assert [r["smoothed"] for r in rows] == pytest.approx(expected, rel=1e-12)
    assert rows[5]["smoothed"] != rows[5]["value"]


def test_export_png_svg_and_csv(opened):
    png = opened.evaluate("window.nnspec.export('view-0', 'png')")
    svg = opened.evaluate("window.nnspec.export('view-0', 'svg')")
    assert png.startswith("data:image/png;base64,") and len(png) > 1000
    assert svg.startswith("data:image/svg+xml")
    text = opened.evaluate("window.nnspec.export('view-0', 'csv')")
    got = list(csv.DictReader(io.StringIO(text)))
    want = series_rows()
    assert len(got) == len(want)
    assert [{k: float(r[k]) if k in ("value", "smoothed", "step") else r[k] for k in r} for r in got] == want
    # the menu downloads it
    with opened.expect_download() as dl:
        opened.click("#view-0 .nn-export summary")
        opened.click("#view-0 .nn-export button:has-text('CSV')")
    assert dl.value.suggested_filename == "Loss_per_layer.csv"


def test_legend_click_isolates_a_run(opened):
    opened.click("#view-2 .role-legend-label text:has-text('beta')")
    opened.wait_for_timeout(100)
    store = opened.evaluate("window.nnspec.views['view-2'].data('runsel_store')")
    assert [s["values"] for s in store] == [["beta"]]
    opacities = opened.eval_on_selector_all(
        "#view-2 .mark-symbol.role-mark path", "ps => ps.map(p => p.getAttribute('opacity'))"
    )
    assert sorted(set(opacities)) == ["0.1", "1"] and opacities.count("1") == 6


def test_pick_sets_the_layer_signal_and_layer_numbers(opened):
    opened.evaluate("window.nnspec.pick('encoder.fc2')")
    assert opened.evaluate("window.nnspec.views['view-0'].signal('nnspec_layer')") == "encoder.fc2"
    assert opened.evaluate("window.nnspec.views['view-1'].signal('nnspec_layer')") == "encoder.fc2"
    assert opened.eval_on_selector_all("#view-1 tr.picked td:first-child", "tds => tds.map(t => t.textContent)") == [
        "encoder.fc2"
    ]
    # a chart without layer_field is left alone (and has no such signal)
    numbers = opened.evaluate("window.nnspec.layerNumbers('encoder.fc2')")
    assert numbers == [{"view": "Layer statistics", "values": {"numel": 100, "mean": -0.25}}]
    # re-embedding (log toggle) keeps the pick; a table row picks its layer
    opened.evaluate("() => { window.__v = window.nnspec.views['view-0']; }")
    opened.click("#view-0 .nn-log")
    _new_view(opened, "__v")
    assert opened.evaluate("window.nnspec.views['view-0'].signal('nnspec_layer')") == "encoder.fc2"
    opened.click("#view-1 .nn-table td:has-text('head')")
    assert opened.evaluate("window.nnspec.views['view-0'].signal('nnspec_layer')") == "head"


def test_mount_is_idempotent_and_takes_swapped_cards(opened):
    views = opened.evaluate("Object.keys(window.nnspec.views).length")
    opened.evaluate("() => { window.__v = window.nnspec.views['view-6']; window.nnspec.mount(document); }")
    assert opened.evaluate("window.nnspec.views['view-6'] === window.__v")
    assert opened.evaluate("document.querySelectorAll('#view-6 .collapse').length") == 1
    # nnspec serve: a new <section class="card"> replaces the old one, then mount(section)
    opened.evaluate(
        """() => {
        const old = document.getElementById('view-6');
        const s = old.cloneNode(false);
        s.innerHTML = '<div class="card-head"><h2>swapped</h2><div class="tools"></div></div>'
          + '<div class="chart" data-spec="spec-6"></div>';
        s.appendChild(document.getElementById('spec-6'));  // the new card brings its spec
        old.replaceWith(s);
        window.nnspec.mount(s);
    }"""
    )
    opened.wait_for_function("document.querySelector('#view-6 [data-spec]').dataset.rendered === 'yes'")
    assert opened.evaluate("window.nnspec.views['view-6'] !== window.__v")
    assert opened.evaluate("Object.keys(window.nnspec.views).length") == views


def test_bound_inputs_in_dark_mode(browser, tmp_path):
    spec = wide_spec(0)
    spec["params"] = [{"name": "step", "value": 3, "bind": {"input": "range", "min": 0, "max": 9, "step": 1}}]
    spec["transform"] = [{"filter": "datum.a <= step"}]
    path = write(tmp_path, [{"title": "slider", "query": "q", "spec": spec}], runs=None)
    page, errors, _ = open_page(browser, path, color_scheme="dark")
    color = page.evaluate("getComputedStyle(document.querySelector('.vega-bind label')).color")
    assert color == "rgb(169, 176, 189)"  # the page's muted text, readable on dark
    page.fill(".vega-bind input[type=range]", "7")
    page.wait_for_timeout(100)
    assert page.evaluate("window.nnspec.views['view-0'].signal('step')") == 7
    page.screenshot(path=str(tmp_path / "bind-dark.png"))
    if os.environ.get("NNSPEC_SHOTS"):
        (tmp_path / "bind-dark.png").replace(os.path.join(os.environ["NNSPEC_SHOTS"], "bind-dark.png"))
    assert errors == []
    page.close()


def test_a_57_view_page_draws_in_under_2_s(browser, tmp_path):
    import nnspec
    from bench.bench_page import resnet50_spec

    dash = nnspec.render(resnet50_spec(8), out=str(tmp_path))
    assert len(dash.views) == 57 and dash.ok
    path = tmp_path / "dashboard.html"
    times = []
    for _ in range(3):  # the best of three: other processes on a shared machine only add time
        p = browser.new_page(viewport={"width": 1440, "height": 900})
        t0 = time.perf_counter()
        p.goto("file://" + str(path))
        p.wait_for_function(
            "[...document.querySelectorAll('[data-spec]')].every(e => e.dataset.rendered)", timeout=60_000
        )
        times.append(time.perf_counter() - t0)
        assert p.eval_on_selector_all("[data-spec]", "es => es.every(e => e.dataset.rendered === 'yes')")
        p.close()
    print(f"57 views: load and draw {json.dumps([round(t, 2) for t in times])} s")
    assert min(times) < 2.0


def test_graph_explorer_and_layer_numbers_on_a_rendered_page(browser, tmp_path):
    import nnspec
    from nnspec.output.assets import asset

    spec = {
        "nnspec": 1,
        "model": {"factory": "tests.fixtures.models:make_tiny_mlp"},
        "input": {"random": {"shape": [4, 4]}},
        "views": [{"query": "graph"}, {"title": "Statistics", "query": "activations of * | stats | table"}],
    }
    nnspec.render(spec, out=str(tmp_path))
    page, errors, blocked = open_page(browser, tmp_path / "dashboard.html")
    handed = page.evaluate("window.nnspec.cards['view-0'].spec.usermeta.nnspec")
    assert "explorer" not in handed  # Vega is not handed the explorer's payload
    try:
        asset("graph.js")
    except FileNotFoundError:
        assert page.is_visible("#view-0 [data-spec] svg")  # no explorer: the Vega chart shows
    else:
        assert page.is_visible("#view-0 .explorer svg") and not page.is_visible("#view-0 [data-spec]")
        page.click("#view-0 .nn-alt")
        assert page.is_visible("#view-0 [data-spec] svg") and not page.is_visible("#view-0 .explorer")
    numbers = page.evaluate("window.nnspec.layerNumbers('fc1')")
    assert [n["view"] for n in numbers] == ["Statistics"] and numbers[0]["values"]["numel"] == 20
    assert errors == [] and blocked == []
    page.close()


def test_serve_swap_keeps_the_sidebar_current(opened):
    opened.evaluate(
        """() => {
        const old = document.getElementById('view-2');
        const s = old.cloneNode(true);
        s.querySelector('h2').textContent = 'Renamed';
        s.querySelectorAll('.tools > *').forEach(t => t.remove());
        s.querySelector('[data-spec]').removeAttribute('data-rendered');
        s.querySelector('[data-spec]').innerHTML = '';
        old.replaceWith(s);
        window.nnspec.mount(s);
    }"""
    )
    opened.wait_for_function("document.querySelector('#view-2 [data-spec]').dataset.rendered === 'yes'")
    assert opened.inner_text(".nn-side li[data-card='view-2']") == "Renamed"
    assert opened.evaluate("document.querySelectorAll('#view-2 .collapse, #view-2 .nn-export').length") == 2


def test_log_toggle_on_a_chart_drawn_log(browser, tmp_path):
    spec = line_spec()
    for layer in spec["layer"]:
        layer["encoding"]["y"]["scale"] = {"type": "log"}
    page, errors, _ = open_page(browser, write(tmp_path, [{"title": "log", "query": "q", "spec": spec}], runs=None))
    assert _y_scale(page) == "log" and page.get_attribute("#view-0 .nn-log", "aria-pressed") == "true"
    page.evaluate("() => { window.__v = window.nnspec.views['view-0']; }")
    page.click("#view-0 .nn-log")
    _new_view(page, "__v")
    assert _y_scale(page) == "linear" and page.get_attribute("#view-0 .nn-log", "aria-pressed") == "false"
    assert errors == []
    page.close()


def test_a_long_bar_chart_scrolls_within_its_card(browser, tmp_path):
    rows = [{"layer": f"blocks.{i}.mlp.fc", "value": (i % 17) / 17} for i in range(161)]
    spec = {
        "data": {"values": rows},
        "mark": "bar",
        "encoding": {
            "x": {"field": "layer", "type": "nominal", "sort": None},
            "y": {"field": "value", "type": "quantitative"},
        },
        "width": {"step": 20},
        "height": 200,
    }
    page, errors, _ = open_page(
        browser, write(tmp_path, [{"title": "161 bars", "query": "q", "spec": spec}], runs=None)
    )
    page.set_viewport_size({"width": 1440, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= 1440
    chart = "document.querySelector('#view-0 [data-spec]')"
    assert page.evaluate(f"{chart}.scrollWidth") > 3000 > page.evaluate(f"{chart}.clientWidth")
    assert errors == []
    page.close()


def test_draws_in_a_sandboxed_frame_as_in_a_notebook(browser, tmp_path):
    import html

    text = write(tmp_path).read_text(encoding="utf-8")
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_content(f'<iframe sandbox="allow-scripts" style="width:1200px;height:800px" srcdoc="{html.escape(text)}">')
    frame = page.frames[1]
    frame.wait_for_function("[...document.querySelectorAll('[data-spec]')].every(e => e.dataset.rendered)")
    assert frame.evaluate("[...document.querySelectorAll('[data-spec]')].every(e => e.dataset.rendered === 'yes')")
    frame.click("#nn-theme")  # no localStorage in an opaque origin: the toggle still works
    assert frame.evaluate("document.documentElement.dataset.theme") == "dark"
    assert errors == []
    page.close()


def test_quick_slider_moves_leave_one_chart_at_the_last_value(opened):
    opened.evaluate(
        """async () => {
        const r = document.querySelector('#view-0 .nn-smooth input');
        for (const v of ['0.1', '0.2', '0.3', '0.4', '0.5']) {
            r.value = v; r.dispatchEvent(new Event('input'));
            await new Promise(ok => setTimeout(ok, 70));
        }
    }"""
    )
    opened.wait_for_function("window.nnspec.views['view-0'].signal('nnspec_smoothing') === 0.5")
    opened.wait_for_timeout(300)
    assert opened.evaluate("document.querySelectorAll('#view-0 [data-spec] svg.marks').length") == 1
    assert opened.evaluate("window.nnspec.views['view-0'].signal('nnspec_smoothing')") == 0.5
