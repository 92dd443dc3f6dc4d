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


IRIS_FEATURES = ["sepalLength", "sepalWidth", "petalLength", "petalWidth"]


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
    from nnspec.inputs import load_input
    from nnspec.modelload import build_model
    from nnspec.spec import load_spec

    s = load_spec(d)
    return build_model(s), load_input(s.input, ".")
