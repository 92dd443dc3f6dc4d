"""Selector rules against a residual CNN."""

from __future__ import annotations

import pytest
import torch

from nnspec.compiler.selectors import resolve_modules, resolve_params
from nnspec.errors import SpecError
from nnspec.models import ResNet
from nnspec.query.parser import parse


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ResNet(widths=(4, 8), blocks=1, classes=3)


def mods(q, model):
    return resolve_modules(parse(q).source.selector, model)


def params(q, model):
    src = parse(q).source
    return resolve_params(src.kind, src.selector, model)


def test_exact_container_and_leaf(model):
    assert mods("activations of stages.0", model) == ["stages.0"]
    assert mods("activations of stem.0", model) == ["stem.0"]


def test_globs_match_leaves_across_dots(model):
    assert mods("activations of stages.*.conv1", model) == ["stages.0.0.conv1", "stages.1.0.conv1"]
    star = mods("activations of *", model)
    assert "stages.0" not in star and "stages.0.0.bn2" in star and "fc" in star


def test_type_regex_union_except(model):
    convs = mods("activations of type(Conv2d)", model)
    assert len(convs) == 1 + 2 * 2 + 1  # stem, two per block, one 1×1 shortcut
    assert mods("activations of /stages\\.[0-9]\\.0\\.conv[12]/", model) == [
        c for c in convs if "shortcut" not in c and c != "stem.0"
    ]
    assert mods("activations of type(BasicBlock)", model) == ["stages.0.0", "stages.1.0"]
    got = mods("activations of type(Conv2d) except *shortcut*, stem.0", model)
    assert got == [c for c in convs if "shortcut" not in c and c != "stem.0"]
    assert mods("activations of fc, stem.0", model) == ["stem.0", "fc"]  # model order


def test_params(model):
    assert params("weights of fc", model) == ["fc.weight"]
    assert params("biases of fc", model) == ["fc.bias"]
    assert params("grads of *.weight", model)[:2] == ["stem.0.weight", "stem.1.weight"]
    inside = params("params of stages.1", model)
    assert inside and all(n.startswith("stages.1.") for n in inside)


def test_no_match_suggests(model):
    with pytest.raises(SpecError) as e:
        mods("activations of stemm.0", model)
    assert "stem.0" in e.value.hint
    with pytest.raises(SpecError) as e:
        mods("activations of type(Conv3d)", model)
    assert e.value.hint == "did you mean 'Conv2d'?"
    with pytest.raises(SpecError):
        mods("activations of /([/", model)
