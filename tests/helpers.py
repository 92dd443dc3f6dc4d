"""Spec dicts for the tests: a model from tests.fixtures.models and some views."""

from __future__ import annotations


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
