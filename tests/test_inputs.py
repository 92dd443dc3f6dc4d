"""Inputs (random, data sets, csv, files) and losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nnspec
from nnspec.errors import SpecError
from nnspec.inputs.batch import load_input
from nnspec.spec.load import load_spec
from tests.helpers import iris_spec, model_and_batch, spec, view


def _batch(inp: dict, base_dir="."):
    s = load_spec(spec(["weights of fc1"], inp=inp))
    return load_input(s.input, base_dir)


def test_random_is_seeded():
    a = _batch({"random": {"shape": [3, 4], "seed": 5}})
    b = _batch({"random": {"shape": [3, 4], "seed": 5}})
    assert torch.equal(a.x, b.x) and a.x.shape == (3, 4)
    ints = _batch({"random": {"shape": [2, 7], "dist": "randint", "high": 11}})
    assert ints.x.dtype == torch.int64 and 0 <= int(ints.x.min()) and int(ints.x.max()) < 11
    u = _batch({"random": {"shape": [100], "dist": "uniform"}})
    assert 0 <= float(u.x.min()) and float(u.x.max()) < 1


def test_dataset_standardised_dropped_and_classes():
    b = _batch({"dataset": "cars", "features": ["Horsepower", "Weight_in_lbs"], "target": "Miles_per_Gallon"})
    assert b.x.shape == (392, 2)
    assert b.x.mean(0).abs().max() < 1e-5 and (b.x.std(0, unbiased=False) - 1).abs().max() < 1e-5
    assert b.notes == ["14 rows with missing values dropped"]
    iris = _batch({"dataset": "iris", "features": ["petalLength"], "target": "species"})
    assert iris.classes == ("setosa", "versicolor", "virginica")
    assert iris.y.dtype == torch.long and sorted(set(iris.y.tolist())) == [0, 1, 2]


def test_csv_dataset(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,x\n3,,y\n5,6,x\n7,8,y\n")
    b = _batch({"dataset": "d.csv", "features": ["a", "b"], "target": "label"}, str(tmp_path))
    assert b.x.shape == (3, 2) and b.notes == ["1 rows with missing values dropped"]
    expected = (np.array([1.0, 5, 7]) - np.mean([1, 5, 7])) / np.std([1, 5, 7])
    assert b.x[:, 0].numpy() == pytest.approx(expected, rel=1e-6)
    assert b.y.tolist() == [0, 0, 1]


def test_bad_columns_name_the_columns():
    with pytest.raises(SpecError) as e:
        _batch({"dataset": "cars", "features": ["Horsepowr"]})
    assert "Horsepowr" in e.value.message and "Horsepower" in e.value.message


def test_files(tmp_path):
    x = torch.randn(5, 4)
    torch.save({"x": x, "y": torch.randn(5, 3)}, tmp_path / "b.pt")
    b = _batch({"file": "b.pt"}, str(tmp_path))
    assert torch.equal(b.x, x) and b.y.shape == (5, 3)
    torch.save(x, tmp_path / "t.pt")
    assert torch.equal(_batch({"file": "t.pt"}, str(tmp_path)).x, x)
    np.save(tmp_path / "a.npy", x.numpy())
    assert torch.equal(_batch({"file": "a.npy"}, str(tmp_path)).x, x)
    np.savez(tmp_path / "z.npz", x=x.numpy(), y=np.arange(5))
    z = _batch({"file": "z.npz"}, str(tmp_path))
    assert torch.equal(z.x, x) and z.y.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(SpecError):
        _batch({"file": "missing.pt"}, str(tmp_path))


def test_cross_entropy_on_iris_grads_equal_autograd():
    d = iris_spec(["grads of fc1.weight | norm"], hidden=8)
    got = view(nnspec.render(d)).data["value"].iloc[0]
    model, b = model_and_batch(d)
    loss = torch.nn.functional.cross_entropy(model(b.x), b.y)
    (g,) = torch.autograd.grad(loss, [model.fc1.weight])
    assert got == pytest.approx(g.norm().item(), rel=1e-5)


def custom_loss(out, y):
    return (out**2).mean()


def test_module_callable_loss():
    x = torch.randn(6, 4)
    torch.manual_seed(0)
    from tests.fixtures.models import TinyMLP

    m = TinyMLP()
    dash = nnspec.render(spec(["grads of fc2.bias | norm"], loss="tests.test_inputs:custom_loss"), model=m, inputs=x)
    (g,) = torch.autograd.grad((m(x) ** 2).mean(), [m.fc2.bias])
    assert view(dash).data["value"].iloc[0] == pytest.approx(g.norm().item(), rel=1e-6)
