"""train: a deterministic loop before the views; the user's model stays untouched."""

from __future__ import annotations

import copy

import pytest
import torch

import nnspec
from nnspec.errors import SpecError
from tests.fixtures.models import TinyMLP
from tests.helpers import iris_spec, model_and_batch, spec, view


def _trained(steps=60, batch=None, seed=0, optimizer=None):
    d = iris_spec(["weights of fc1 | heatmap"])
    d["train"] = {"steps": steps, "seed": seed, "optimizer": optimizer or {"name": "adam", "lr": 0.05}}
    if batch:
        d["train"]["batch"] = batch
    return d


def test_training_is_deterministic_and_the_views_show_the_trained_model():
    a = nnspec.render(_trained(batch=32))
    b = nnspec.render(_trained(batch=32))
    assert view(a).data["value"].tolist() == view(b).data["value"].tolist()
    untrained = nnspec.render(iris_spec(["weights of fc1 | heatmap"]))
    assert view(a).data["value"].tolist() != view(untrained).data["value"].tolist()
    other_seed = nnspec.render(_trained(batch=32, seed=1))
    assert view(a).data["value"].tolist() != view(other_seed).data["value"].tolist()
    assert "trained 60 steps (adam, lr 0.05): loss " in a.footer


def test_training_matches_a_hand_written_loop():
    d = _trained(steps=5, optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9})
    got = view(nnspec.render(d)).data["value"].to_numpy()
    model, batch = model_and_batch(d)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for _ in range(5):  # the whole input each step: no shuffling involved
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(batch.x), batch.y).backward()
        opt.step()
    assert got == pytest.approx(model.fc1.weight.detach().reshape(-1).numpy(), rel=1e-5, abs=1e-7)


def test_an_in_memory_model_is_trained_as_a_copy():
    torch.manual_seed(0)
    model = TinyMLP()
    before = copy.deepcopy(model.state_dict())
    d = spec(["weights of fc1 | heatmap"], loss="sum")
    d["train"] = {"steps": 3, "optimizer": {"name": "sgd", "lr": 0.5}}
    dash = nnspec.render(d, model=model, inputs=torch.randn(8, 4))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert view(dash).data["value"].tolist() != before["fc1.weight"].reshape(-1).tolist()
    assert model.fc1.weight.grad is None


def test_training_needs_a_loss():
    d = _trained()
    d.pop("loss")
    with pytest.raises(SpecError) as e:
        nnspec.render(d)
    assert "train: needs a loss" in e.value.message


def test_plan_explains_the_training_without_running_it():
    d = _trained(steps=1000)
    text = nnspec.plan(d).explain()
    assert "train: 1000 steps before the views (batch all rows, seed 0, name=adam, lr=0.05)" in text


def test_loss_over_steps_is_the_training_loss():
    d = _trained(steps=7, optimizer={"name": "sgd", "lr": 0.1})
    d["train"]["record_every"] = 3
    d["views"] = [{"query": "loss over steps"}, {"query": "loss over steps[3:]"}]
    dash = nnspec.render(d)
    series = view(dash, 0).data
    assert list(series.columns[:3]) == ["step", "layer", "value"] and series["step"].tolist() == [0, 3, 6]
    model, batch = model_and_batch(d)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    expected = []
    for step in range(7):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(batch.x), batch.y)
        loss.backward()
        opt.step()
        if step % 3 == 0:
            expected.append(loss.item())
    assert series["value"].tolist() == pytest.approx(expected, rel=1e-6)
    assert view(dash, 1).data["step"].tolist() == [3, 6]


def test_loss_over_steps_needs_train_and_marks_the_first_nan():
    dash = nnspec.render(iris_spec(["loss over steps"]))
    assert "needs a training run" in dash.views[0].error
    d = _trained(steps=4, optimizer={"name": "sgd", "lr": 1e30})  # blows up on purpose
    d["train"]["record_every"] = 1
    d["views"] = [{"query": "loss over steps"}]
    v = view(nnspec.render(d))
    bad = [s for s, x in zip(v.data["step"], v.data["value"]) if x != x or abs(x) == float("inf")]
    assert bad and any(f"first NaN/Inf at step {bad[0]}" in n for n in v.notes)
    marks = [layer["mark"]["type"] for layer in v.vega_lite()["layer"]]
    assert "rule" in marks  # the first NaN/Inf is marked
