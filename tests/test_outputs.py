"""The plan's promises and the outputs: one pass, hooks only where needed,
the JS bundle cached, scales, budgets."""

from __future__ import annotations

import pytest
import torch
import vl_convert

import nnspec
from nnspec.errors import SpecError
from tests.fixtures.models import TinyMLP
from tests.helpers import spec, view


class Counting(TinyMLP):
    calls = 0

    def forward(self, x):
        Counting.calls += 1
        return super().forward(x)


def test_one_forward_for_all_views_and_hooks_only_where_needed():
    torch.manual_seed(0)
    m = Counting()
    Counting.calls = 0
    views = [
        "activations of fc1 | stats",
        "activations of fc1 | heatmap",
        "grads of * | norm",
        "output_grads of act | norm",
    ]
    dash = nnspec.render(spec(views), model=m, inputs=torch.randn(4, 4), target=torch.randn(4, 3))
    assert dash.ok and Counting.calls == 1
    assert set(dash.plan.hooked) == {"fc1", "act"}
    p = nnspec.plan(spec(views), model=m, inputs=torch.randn(4, 4), target=torch.randn(4, 3))
    text = p.explain()
    assert "passes: forward + backward" in text and "hooked modules (2)" in text
    assert "keep tensor (4, 5)" in text  # the heatmap keeps its tensor, the stats only numbers


def test_parameter_views_run_no_pass():
    m = Counting()
    Counting.calls = 0
    dash = nnspec.render(spec(["weights of * | stats"], loss=None), model=m)
    assert dash.ok and Counting.calls == 0 and not dash.plan.forward


def test_bundle_built_once(tmp_path, monkeypatch):
    monkeypatch.setenv("NNSPEC_CACHE", str(tmp_path / "cache"))
    calls = []
    real = vl_convert.javascript_bundle
    monkeypatch.setattr(vl_convert, "javascript_bundle", lambda **kw: calls.append(1) or real(**kw))
    d = spec(["weights of fc1 | heatmap"], loss=None)
    for out in ("a", "b"):
        nnspec.render(d, out=str(tmp_path / out))
    assert len(calls) == 1
    html = (tmp_path / "b" / "dashboard.html").read_text()
    assert html.count("window.vegaEmbed=") == 1  # one inline copy for the whole page


def _rect_color(vl: dict) -> dict:
    """The colour encoding of the heatmap's cells (the first layer when values are printed on them)."""
    unit = vl["layer"][0] if "layer" in vl else vl
    return unit["encoding"]["color"]


def test_diverging_scale_centred_at_zero():
    torch.manual_seed(0)
    m = TinyMLP()
    with torch.no_grad():
        m.fc2.weight.abs_()
    dash = nnspec.render(spec(["weights of fc1 | heatmap", "weights of fc2 | heatmap"], loss=None), model=m)
    both = _rect_color(view(dash, 0).vega_lite())["scale"]
    assert both["domainMid"] == 0 and both["scheme"] == "blueorange" and both["domain"][0] == -both["domain"][1]
    positive = _rect_color(view(dash, 1).vega_lite())["scale"]
    assert positive["scheme"] == "viridis" and "domainMid" not in positive


def test_max_marks_limit_refused():
    with pytest.raises(SpecError) as e:
        nnspec.render(spec([{"query": "weights of fc1", "max_marks": 200_000}], loss=None), model=TinyMLP())
    assert "max_marks" in str(e.value) and "100000" in str(e.value)


def test_histogram_over_budget_is_refused_not_drawn():
    dash = nnspec.render(
        spec([{"query": "weights of fc1 | histogram(bins=500)", "max_marks": 100}], loss=None), model=TinyMLP()
    )
    assert "budget of 100" in dash.views[0].error


def test_encoding_columns_checked():
    dash = nnspec.render(
        spec(["grads of * | norm | bar(y=nrom)"], loss="sum"), model=TinyMLP(), inputs=torch.randn(2, 4)
    )
    assert "no column 'nrom'" in dash.views[0].error and "value" in dash.views[0].error


def test_a_view_vl_convert_cannot_draw_fails_alone(tmp_path, monkeypatch):
    from nnspec.output import write

    real = write.convert

    def flaky(spec, fmt):
        if "histogram" in str(spec.get("title", "")):
            raise ValueError("Vega-Lite to PNG conversion failed: boom")
        return real(spec, fmt)

    monkeypatch.setattr(write, "convert", flaky)
    views = [
        {"title": "heat", "query": "weights of fc1 | heatmap"},
        {"title": "histogram", "query": "weights of fc2 | histogram"},
    ]
    dash = nnspec.render(spec(views, loss=None), model=TinyMLP(), out=str(tmp_path), formats=("html", "png"))
    assert dash.views[0].error is None and "boom" in dash.views[1].error and not dash.ok
    html = (tmp_path / "dashboard.html").read_text()
    assert html.count('class="card failed"') == 1
    assert (tmp_path / "dashboard.heat.png").exists() and not (tmp_path / "dashboard.histogram.png").exists()
