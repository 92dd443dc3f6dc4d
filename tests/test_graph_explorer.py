"""The graph explorer (nnspec/output/assets/graph.js) in headless Chromium with the
network blocked, on a page of its own (graph.js and a payload inlined): clicks
expand, collapse and unfold, search opens the groups holding a match, a click
on a node opens its panel (numbers checked against the model's own), the wheel
zooms the graph and never scrolls the page, and pan/zoom stays fluid at full
depth on ResNet-50 and GPT-2 small."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from nnspec.execute import explore
from nnspec.output.assets import asset
from tests import browser_util
from tests.vision_models import ResNet50ish

pytestmark = pytest.mark.browser
sync_api = browser_util.require()
transformers = pytest.importorskip("transformers")
test_graph = pytest.importorskip("tests.test_graph")  # its trace helper

FRAME_MS = 50  # the median frame a pan/zoom may take at full depth


@pytest.fixture(scope="module")
def browser():
    with browser_util.launch(sync_api) as b:
        yield b


def gpt2(layers=4, embd=32):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=layers, n_head=2 if embd < 64 else 12, n_embd=embd, vocab_size=96)
    cfg.n_positions = 32
    return transformers.GPT2LMHeadModel(cfg).eval()


def write_page(tmp_path, model, *args, name="graph", **kwargs) -> str:
    """A page holding only the explorer, scrollable above and below it, and a stand-in for the dashboard's
    ``window.nnspec`` (its numbers for a layer, and what was picked)."""
    data = explore.payload(test_graph.trace(model, *args, **kwargs), model)
    payload = json.dumps(data).replace("<", "\\u003c")
    html = (
        "<!doctype html><meta charset=utf-8><body style='margin:0'><div style='height:400px'>above</div>"
        "<div id=g></div><div style='height:3000px'>below</div><script>"
        "window.nnspec = {picked: [], pick: function (p) { this.picked.push(p); },"
        " layerNumbers: function (p) { return [{view: 'weights', values: {mean: 0.125, layer: p}}]; }};"
        f"</script><script>{asset('graph.js')}</script><script>"
        f"window.G = nnspecGraph.mount(document.getElementById('g'), {payload}, {{height: 700}});</script>"
    )
    path = tmp_path / f"{name}.html"
    path.write_text(html, encoding="utf-8")
    return str(path)


def open_(browser, path):
    page, errors, blocked = browser_util.open_page(browser, path, wait_charts=False)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_function("document.getElementById('g').dataset.nodes")
    return page, errors, blocked


def count(page) -> int:
    return int(page.evaluate("document.getElementById('g').dataset.nodes"))


def click_node(page, key: str):
    """Click the node drawn for ``key`` (by its box on screen, as a user would)."""
    i = page.evaluate(f"G.lay.info.findIndex(d => d.key === {json.dumps(key)})")
    assert i >= 0, f"{key} is not drawn: {page.evaluate('G.state().keys')}"
    page.evaluate(f"G.reveal({json.dumps(key)})")  # in view, as a user would pan to it
    page.locator(f"#g [data-i='{i}']").click()


def test_click_expands_unfolds_and_collapses_in_place(browser, tmp_path):
    page, errors, blocked = open_(browser, write_page(tmp_path, gpt2(4), input_ids=torch.randint(0, 96, (1, 8))))
    start = count(page)
    assert page.evaluate("G.state().folded").__len__() == 1  # the four blocks fold
    page.screenshot(path=str(tmp_path / "gpt2-initial.png"))
    page.locator("#g [data-g='transformer.h']").click()  # the outline's name collapses the group
    collapsed = count(page)
    assert collapsed < start and "transformer.h" in page.evaluate("G.state().keys")
    click_node(page, "transformer.h")  # a group: expands in place, to the run it holds
    opened = count(page)
    keys = page.evaluate("G.state().keys")
    assert opened == collapsed and "transformer.h.0" in keys and "transformer.h" not in keys
    click_node(page, "transformer.h.0")  # the folded run h.0–3, drawn whole: unfolds into its four blocks
    unfolded = count(page)
    assert unfolded == opened + 3 and page.evaluate("G.state().folded") == []
    click_node(page, "transformer.h.2")
    assert count(page) > unfolded and "transformer.h.2.ln_1" in page.evaluate("G.state().keys")
    page.screenshot(path=str(tmp_path / "gpt2-expanded.png"))
    page.locator("#g [data-g='transformer.h.2']").click()
    assert count(page) == unfolded
    page.locator("#g [data-g='transformer.h']").click()
    assert count(page) == collapsed
    assert errors == [] and blocked == []


def test_search_opens_the_group_and_the_panel_has_the_numbers(browser, tmp_path):
    model = gpt2(4)
    page, errors, _ = open_(browser, write_page(tmp_path, model, input_ids=torch.randint(0, 96, (1, 8))))
    target = "transformer.h.1.mlp.c_fc"
    assert target not in page.evaluate("G.state().keys")  # folded into h.0–3
    page.fill("#g .ng-search", "h.1.mlp.c_fc")
    page.press("#g .ng-search", "Enter")
    assert target in page.evaluate("G.state().keys")
    assert "1 match" in page.inner_text("#g .ng-status")
    page.fill("#g .ng-search", r"/h\.[0-3]\.mlp\.c_fc$/")  # a regex: every block's
    page.press("#g .ng-search", "Enter")
    assert "4 matches" in page.inner_text("#g .ng-status")
    click_node(page, target)
    panel = page.locator("#g .ng-panel")
    assert panel.is_visible()
    want = sum(p.numel() for p in model.transformer.h[1].mlp.c_fc.parameters())
    assert int(panel.locator(".ng-params").get_attribute("data-value").replace(",", "")) == want
    assert panel.locator(".ng-path").get_attribute("data-value") == target
    assert panel.locator(".ng-type").get_attribute("data-value") == "Conv1D"
    assert panel.locator(".ng-output").get_attribute("data-value") == "1×8×128"
    assert "0.125" in panel.inner_text() and "weights" in panel.inner_text()  # the page's numbers for it
    assert page.evaluate("window.nnspec.picked") == [target]  # the page highlights it everywhere
    assert errors == []


def test_wheel_zooms_at_the_cursor_and_never_scrolls_the_page(browser, tmp_path):
    page, errors, _ = open_(browser, write_page(tmp_path, gpt2(2), input_ids=torch.randint(0, 96, (1, 8))))
    page.evaluate("window.scrollTo(0, 300)")
    before = page.evaluate("document.querySelector('#g svg').style.transform")
    box = page.locator("#g .ng-pane").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    page.wait_for_timeout(100)
    after = page.evaluate("document.querySelector('#g svg').style.transform")
    assert after != before and float(page.evaluate("G.view.k")) > 1.0 * float(before.split("scale(")[1].rstrip(")"))
    assert page.evaluate("window.scrollY") == 300
    page.mouse.down()  # drag pans
    page.mouse.move(box["x"] + box["width"] / 2 + 80, box["y"] + box["height"] / 2 + 40, steps=5)
    page.mouse.up()
    assert (
        page.evaluate("document.querySelector('#g svg').style.transform") != after
        and page.evaluate("window.scrollY") == 300
    )
    assert errors == []


FRAMES = """async () => {
  const el = document.getElementById('g'), times = [];
  const frame = () => new Promise(r => requestAnimationFrame(r));
  await frame();
  for (let i = 0; i < 90; i++) {
    if (i % 3 === 0) G.zoomAt(400, 300, i < 45 ? 1.06 : 0.95); else G.panBy(i < 45 ? -7 : 6, 11);
    const t0 = performance.now();
    await frame();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return {nodes: +el.dataset.nodes, median: times[times.length >> 1], p90: times[Math.floor(times.length * 0.9)]};
}"""


@pytest.mark.parametrize("name", ["resnet50", "gpt2-small", "gpt2-110-blocks"])
def test_full_depth_stays_fluid(browser, tmp_path, name):
    if name == "resnet50":
        torch.manual_seed(0)
        model, args, kwargs = ResNet50ish().eval(), (torch.randn(1, 3, 32, 32),), {}
    elif name == "gpt2-small":
        model, args, kwargs = gpt2(12, 768), (), {"input_ids": torch.randint(0, 96, (1, 8))}
    else:  # about 1,500 nodes open at once
        model, args, kwargs = gpt2(110, 32), (), {"input_ids": torch.randint(0, 96, (1, 8))}
    page, errors, _ = open_(browser, write_page(tmp_path, model, *args, name=name, **kwargs))
    layout_ms = page.evaluate("(() => { const t = performance.now(); G.all(); return performance.now() - t; })()")
    got = page.evaluate(FRAMES)
    print(
        f"\n{name}: {got['nodes']} nodes, layout {layout_ms:.0f} ms, frame median {got['median']:.1f} ms, "
        f"p90 {got['p90']:.1f} ms"
    )
    assert got["nodes"] > 150
    assert got["median"] < FRAME_MS
    page.screenshot(path=str(tmp_path / f"{name}.png"))
    assert errors == []
    assert statistics.mean([layout_ms]) < 5000  # one layout of the whole model


def _states(data):
    """The initial state, everything open and unfolded, everything open and folded, and a few in between."""
    groups = [p for p, m in data["m"].items() if m.get("g")]
    init = (data["init"]["x"], data["init"]["f"])
    every_run = list(range(len(data["r"])))
    yield init
    yield groups, []
    yield groups, every_run
    yield [], every_run
    yield groups[::2], every_run[::2]
    yield [g for g in groups if g.count(".") < 2], []


@pytest.mark.parametrize("name", ["gpt2", "t5", "resnet50"])
def test_the_browser_draws_the_graph_python_computes(browser, tmp_path, name):
    """graph.js's visible graph equals explore.visible's, node for node and edge for edge, in every state."""
    if name == "gpt2":
        model, args, kwargs = gpt2(4), (), {"input_ids": torch.randint(0, 96, (1, 8))}
    elif name == "t5":
        x = torch.randint(0, 50, (1, 6))
        model, args, kwargs = test_graph.Logits(test_graph.t5(2), decoder_input_ids=lambda x: x[:, :3]), (x,), {}
    else:
        torch.manual_seed(0)
        model, args, kwargs = ResNet50ish().eval(), (torch.randn(1, 3, 32, 32),), {}
    page, errors, _ = open_(browser, write_page(tmp_path, model, *args, name=name, **kwargs))
    data = explore.payload(test_graph.trace(model, *args, **kwargs), model)
    for expanded, folded in _states(data):
        shown, edges = explore.visible(data, expanded, folded)
        got = page.evaluate(
            """([x, f]) => {
              G.expanded = {}; x.forEach(p => G.expanded[p] = 1);
              G.folded = {}; f.forEach(i => G.folded[i] = 1);
              G.redraw();
              const v = G.visible();
              return {keys: v.keys, edges: v.edges, drawn: +document.getElementById('g').dataset.nodes};
            }""",
            [expanded, folded],
        )
        assert set(got["keys"]) == set(shown) and got["drawn"] == len(shown)
        assert {tuple(e) for e in got["edges"]} == edges
    assert errors == []


def test_a_folded_node_says_what_it_stands_for_and_unfolds_from_its_panel(browser, tmp_path):
    model = gpt2(4)
    page, errors, _ = open_(browser, write_page(tmp_path, model, input_ids=torch.randint(0, 96, (1, 8))))
    start = count(page)
    click_node(page, "transformer.h.0.ln_1")  # drawn once for the four blocks, "×4"
    panel = page.locator("#g .ng-panel")
    assert panel.locator(".ng-path").get_attribute("data-value") == "transformer.h.0–3.ln_1"
    one = sum(p.numel() for p in model.transformer.h[0].ln_1.parameters())
    assert panel.locator(".ng-params").get_attribute("data-value") == f"{one:,} × 4"
    panel.locator(".ng-unfold").click()
    assert page.evaluate("G.state().folded") == [] and count(page) > start
    page.keyboard.press("Escape")
    assert not panel.is_visible()
    assert errors == []


def test_far_reaching_fan_out_becomes_stubs_and_residuals_stay_drawn(browser, tmp_path):
    """Llama's rotary embedding feeds every layer's attention: its edges into the layers
    far below are stubs into their targets (TensorBoard's answer), not lines across the
    graph; a residual (one long edge of its node) stays a drawn edge."""
    from tests import hf_models

    llama = hf_models.llama()
    page, errors, _ = open_(browser, write_page(tmp_path, llama, input_ids=torch.randint(0, 96, (1, 8)), name="l"))
    page.evaluate("G.all()")  # every group open, every run unfolded: both layers at full depth
    stubs = page.evaluate("G.lay.stubs.map(s => [s.from.path || s.from.key, s.to.path || s.to.key])")
    assert stubs and {src for src, _ in stubs} == {"model.rotary_emb"}
    assert all(dst.startswith("model.layers.1.") or "#" in dst for _, dst in stubs)
    edges = int(page.evaluate("document.getElementById('g').dataset.edges"))
    assert edges == len(page.evaluate("G.lay.paths")) + len(stubs)  # every edge drawn, one way or the other
    page.close()
    resnet = ResNet50ish()
    page, errors2, _ = open_(browser, write_page(tmp_path, resnet, torch.randn(1, 3, 64, 64), name="r"))
    page.evaluate("G.all()")
    assert page.evaluate("G.lay.stubs.length") == 0  # residual adds keep their edges
    assert errors == errors2 == []
    page.close()
