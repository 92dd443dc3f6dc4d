"""Every spec that ships renders, without failures or warnings, deterministically."""

from __future__ import annotations

import glob
import os
import warnings

import pytest

import nnspec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = sorted(glob.glob(os.path.join(ROOT, "specs", "*.yaml")))


@pytest.mark.parametrize("path", SPECS, ids=os.path.basename)
def test_shipped_spec_renders(path, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dash = nnspec.render(path, out=str(tmp_path), formats=("html", "json"))
    assert dash.ok, [v.error for v in dash.views]
    for v in dash.views:
        assert len(v.data) > 0
        assert len(v.to_json()) < 1_000_000


def test_same_spec_same_bytes(tmp_path):
    path = os.path.join(ROOT, "specs", "quickstart.yaml")
    a, b = tmp_path / "a", tmp_path / "b"
    nnspec.render(path, out=str(a), formats=("html", "json"))
    nnspec.render(path, out=str(b), formats=("html", "json"))
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b)) and len(names) > 2
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_quickstart_numbers():
    dash = nnspec.render(os.path.join(ROOT, "specs", "quickstart.yaml"))

    from nnspec.inputs.model import build_model
    from nnspec.spec.load import load_spec

    model = build_model(load_spec(os.path.join(ROOT, "specs", "quickstart.yaml")))
    heat = dash.views[0].data
    assert heat["value"].tolist() == pytest.approx(model.fc1.weight.detach().reshape(-1).tolist(), rel=1e-7)
    hist = dash.views[2].data
    assert hist["count"].sum() == 392 * 3  # cars has 406 rows, 14 with missing values
