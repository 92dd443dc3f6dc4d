"""The dashboard in a real headless Chromium with the network blocked:
every chart draws and the console stays clean."""

from __future__ import annotations

import os

import pytest

import nnspec
from tests import browser_util

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.browser
sync_api = browser_util.require()


@pytest.fixture(scope="module")
def browser():
    with browser_util.launch(sync_api) as b:
        yield b


def _open(browser, path):
    return browser_util.open_page(browser, path)


@pytest.mark.parametrize(
    "name", ["quickstart", "cnn", "transformer", "health", "team/cnn", "team/mlp", "gpt2", "keras"]
)
def test_every_chart_draws_offline(browser, tmp_path, name):
    dash = nnspec.render(os.path.join(ROOT, "specs", f"{name}.yaml"), out=str(tmp_path))
    page, errors, blocked = _open(browser, tmp_path / f"{os.path.basename(name)}.html")
    cards = page.query_selector_all("section.card:not(.checks)")
    assert len(cards) == len(dash.views)
    checks = page.query_selector("section.checks")
    assert (checks is not None) == bool(dash.checks)
    if dash.checks:
        assert checks.inner_text().count("PASS") == sum(c.passed for c in dash.checks)
    for card in cards:
        chart = card.query_selector("[data-spec]")
        assert chart is not None and chart.get_attribute("data-rendered") == "yes"
        assert card.query_selector("svg, canvas") is not None
        marks = card.query_selector_all("svg .mark-rect path, svg .mark-rect, svg path, svg text")
        assert marks
    assert errors == []
    assert blocked == []
    page.screenshot(path=str(tmp_path / "shot.png"), full_page=True)
    page.close()


def test_failed_view_card(browser, tmp_path):
    spec = {
        "nnspec": 1,
        "title": "one good, one bad",
        "model": {"factory": "tests.fixtures.models:make_tiny_mlp"},
        "views": [{"query": "weights of fc1 | heatmap"}, {"query": "weights of fc9 | heatmap"}],
    }
    dash = nnspec.render(spec, out=str(tmp_path))
    assert dash.views[1].error
    page, errors, _ = _open(browser, tmp_path / "dashboard.html")
    failed = page.query_selector_all("section.card.failed")
    assert len(failed) == 1 and "no module matches 'fc9'" in failed[0].inner_text()
    assert page.query_selector("section.card:not(.failed) svg") is not None
    assert errors == []
    page.close()
