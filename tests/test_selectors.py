"""Selector rules against a residual CNN."""

from __future__ import annotations

import pytest
import torch

from nnspec.compiler import messages
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


# -- a tied parameter (GPT-2's lm_head.weight is transformer.wte.weight) ----------------------


@pytest.fixture(scope="module")
def gpt2():
    from tests.hf_models import gpt2

    return gpt2()


def _noted(q, model):
    from nnspec.compiler.selectors import resolve_params_noted

    src = parse(q).source
    return resolve_params_noted(src.kind, src.selector, model)


def test_a_tied_parameter_answers_to_every_name(gpt2):
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight  # the premise
    shared = messages.shared_param("lm_head.weight", "transformer.wte.weight", ["transformer.wte"])
    for q in ("weights of lm_head", "weights of lm_head.weight", "weights of type(Linear)", "params of lm_head"):
        assert _noted(q, gpt2) == (["transformer.wte.weight"], [shared]), q  # captured once, under its first name
    assert _noted("weights of transformer.wte", gpt2) == (
        ["transformer.wte.weight"],
        [messages.shared_param("transformer.wte.weight", "transformer.wte.weight", ["lm_head"])],
    )
    every = params("weights of *", gpt2)
    assert every.count("transformer.wte.weight") == 1 and "lm_head.weight" not in every
    assert len(params("grads of *", gpt2)) == len(list(gpt2.parameters()))  # each tensor once


def test_a_tied_view_draws_the_tied_matrix_with_its_note(gpt2):
    import nnspec
    from nnspec.compiler.compile import compile_plan
    from nnspec.spec.load import load_spec

    vp = compile_plan(load_spec({"nnspec": 1, "views": [{"query": "weights of lm_head | heatmap"}]}), gpt2).views[0]
    assert vp.error is None and vp.layers == ("transformer.wte.weight",)
    assert vp.notes == (messages.shared_param("lm_head.weight", "transformer.wte.weight", ["transformer.wte"]),)
    dash = nnspec.render(
        {"nnspec": 1, "views": [{"query": "weights of lm_head | heatmap"}]},
        model=gpt2,
        inputs={"input_ids": torch.zeros(1, 4, dtype=torch.long)},
    )
    v = dash.views[0]
    assert v.error is None
    w = gpt2.lm_head.weight.detach().double()
    got = v.data.pivot(index="row", columns="col", values="value").to_numpy()
    assert got.shape == tuple(w.shape) and got == pytest.approx(w.numpy(), abs=1e-7)


def test_near_misses_never_suggest_the_failing_name(gpt2):
    with pytest.raises(SpecError) as e:
        params("weights of lm_hed", gpt2)
    assert e.value.message == messages.no_match("lm_hed")
    assert e.value.hint == messages.no_match_hint(["lm_head", "lm_head.weight"])
    with pytest.raises(SpecError) as e:
        params("weights of type(Linearr)", gpt2)
    assert e.value.hint == "did you mean 'Linear'?"
    with pytest.raises(SpecError) as e:
        params("weights of type(Conv2d)", gpt2)
    assert e.value.message == messages.unknown_type("Conv2d") and "'Conv2d'" not in (e.value.hint or "")


def test_a_module_without_parameters_says_so(gpt2):
    with pytest.raises(SpecError) as e:
        params("weights of transformer.h.0.mlp.act", gpt2)
    assert e.value.message == messages.holds_no_params("transformer.h.0.mlp.act", ["transformer.h.0.mlp.act"])
    with pytest.raises(SpecError) as e:
        params("weights of type(NewGELUActivation)", gpt2)
    assert e.value.message == messages.holds_no_params(
        "type(NewGELUActivation)", ["transformer.h.0.mlp.act", "transformer.h.1.mlp.act"]
    )
    with pytest.raises(SpecError) as e:
        params("biases of lm_head", gpt2)  # parameters, but no bias among them
    assert e.value.message == messages.no_params("biases", "lm_head")
