"""Hostile strings in every field a page shows (module names, token labels,
CSV column names and class values, titles, descriptions, errors): in a real
Chromium with the network blocked, every card is shown, every chart draws,
no script of theirs runs and no request leaves."""

from __future__ import annotations

import csv
import os

import pytest
import torch

import nnspec
from tests.test_browser import browser  # noqa: F401  (the module's Chromium, a fixture)

pytestmark = pytest.mark.browser

PAYLOADS = [
    "<!--<script>",
    "</script><script>__pwned=1;alert(1)</script>",
    "<img src=x onerror=__pwned=1>",
    "]]>",
    "a\u2028b\u2029c",
    "{{constructor}}",
    "javascript:alert(1)",
    "<svg onload=__pwned=1>",
    "&lt;&amp;\"'`",
    "L" * 3000,
]


# Module names become a facet's custom sort, which Vega-Lite compiles into a Vega
# expression with the names as string literals, unescaped: a raw U+2028 there was
# "Unexpected token ILLEGAL"; marks now sort such labels by value instead
# (nnspec/marks/common.py in_order; test_a_line_separator_in_a_module_name below).
MODULE_NAMES = [p for p in PAYLOADS if "\u2028" not in p][:6]


class Hostile(torch.nn.Module):
    """Four features in, three out, through modules named by the payloads."""

    def __init__(self, names=None):
        super().__init__()
        self.order = []
        width = 4
        for i, name in enumerate(names or MODULE_NAMES):
            out = 3 if i == 5 else 5
            self.add_module(name.replace(".", "_"), torch.nn.Linear(width, out))
            self.order.append(name.replace(".", "_"))
            width = out

    def forward(self, x):
        for name in self.order:
            x = torch.relu(getattr(self, name)(x))
        return x


def make_hostile(names=None):
    torch.manual_seed(0)
    return Hostile(names)


def _views(queries):
    return [
        {"title": PAYLOADS[i % len(PAYLOADS)] + f" {i}", "description": PAYLOADS[(i + 1) % len(PAYLOADS)], "query": q}
        for i, q in enumerate(queries)
    ]


def _bad_query_view():
    return {"title": PAYLOADS[1], "query": "weights of </script><script>alert(1)</script> | heatmap"}


def _specs(tmp_path):
    table = tmp_path / "hostile.csv"
    cols = PAYLOADS[:4] + [PAYLOADS[6]]
    with open(table, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i in range(30):
            w.writerow([i * 0.1, (i % 7) * 0.3, (i % 5) - 2.0, i % 3, PAYLOADS[(i % 3) + 4][:50]])
    common = {"nnspec": 1, "title": PAYLOADS[0] + " dashboard", "description": " ".join(PAYLOADS)}
    modules = {
        **common,
        "model": {"factory": "tests.test_page_hostile:make_hostile"},
        "loss": "sum",
        "input": {"random": {"shape": [6, 4], "seed": 0}, "labels": PAYLOADS[:6]},
        "views": _views(
            [
                "graph",
                "summary",
                "weights of * | heatmap",
                "activations of * | histogram(bins=8)",
                "grads of *.weight | norm",
                "activations of * | pca(k=2)",
            ]
        )
        + [_bad_query_view()],
    }
    tokens = {
        **common,
        "model": {"factory": "nnspec.models:TinyEncoder", "kwargs": {"vocab": 32, "d": 16, "heads": 2, "layers": 1}},
        "loss": "sum",
        "input": {"tokens": [p[:40] for p in PAYLOADS]},
        "views": _views(["attention of encoder.layers.0.self_attn", "activations of encoder [0] | pca(k=2)"]),
    }
    data = {
        **common,
        "model": {"factory": "nnspec.models:MLP", "args": [[4, 8, 3]]},
        "loss": "cross_entropy",
        "input": {"dataset": str(table), "features": cols[:4], "target": cols[4]},
        "views": _views(["weights of * | heatmap", "activations of * | pca(k=2)", "activations of * | stats | table"]),
    }
    return {"modules": modules, "tokens": tokens, "data": data}


def _open(browser, path):  # noqa: F811
    page = browser.new_page()
    errors, left, dialogs = [], [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    url = "file://" + os.path.abspath(path)

    def route(r):
        if r.request.url == url:
            r.continue_()
        else:
            left.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(url)
    page.wait_for_function(
        "[...document.querySelectorAll('[data-spec]')].every(e => e.dataset.rendered)", timeout=30_000
    )
    page.wait_for_timeout(200)  # an onerror/onload would have fired by now
    return page, errors, left, dialogs


@pytest.mark.parametrize("name", ["modules", "tokens", "data"])
def test_hostile_strings_everywhere_and_every_chart_still_draws(browser, tmp_path, name):  # noqa: F811
    dash = nnspec.render(_specs(tmp_path)[name], out=str(tmp_path))
    failed = [v for v in dash.views if v.error]
    assert [v.query for v in failed] == ([_bad_query_view()["query"]] if name == "modules" else []), [
        v.error for v in failed
    ]
    page, errors, left, dialogs = _open(browser, tmp_path / "dashboard.html")
    cards = page.query_selector_all("section.card:not(.checks)")
    assert len(cards) == len(dash.views)  # every card is shown
    drawn = 0
    for card, v in zip(cards, dash.views):
        if v.error:
            assert "failed" in card.get_attribute("class")
            continue
        chart = card.query_selector("[data-spec]")
        assert chart is not None and chart.get_attribute("data-rendered") == "yes", v.title[:40]
        marks = card.query_selector_all("svg path, svg text, svg image, canvas")
        assert marks, v.title[:40]
        drawn += 1
    assert drawn == len(dash.views) - len(failed)
    assert page.evaluate("window.__pwned") is None and dialogs == []  # no script of theirs ran
    assert left == []  # no request left the page
    assert errors == []
    text = page.inner_text("body")
    assert PAYLOADS[1] in text and PAYLOADS[0] in text  # shown as text, not run
    page.close()


def test_a_line_separator_in_a_module_name(browser, tmp_path):  # noqa: F811
    names = ["fc", "a\u2028b", "out"]
    d = _specs(tmp_path)["modules"]
    d["model"] = {"factory": "tests.test_page_hostile:make_hostile", "kwargs": {"names": names}}
    d["views"] = [{"query": "weights of * | heatmap"}]
    nnspec.render(d, out=str(tmp_path))
    page, errors, left, dialogs = _open(browser, tmp_path / "dashboard.html")
    rendered = page.query_selector("[data-spec]").get_attribute("data-rendered")
    page.close()
    assert rendered == "yes"
