"""The backend seam: the PyTorch backend against the module's own API, and no
framework call outside nnspec/backends/."""

from __future__ import annotations

import pathlib
import re

import pytest
import torch
from torch import nn

from nnspec.backends import backend_for
from nnspec.backends.base import Call, PassFailed, module_at, own_params, params_under

ROOT = pathlib.Path(__file__).resolve().parent.parent


class Tied(nn.Module):
    """GPT-2's pattern: the output projection is the embedding (one tensor, two names)."""

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(10, 4)
        self.block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.lm_head = nn.Linear(4, 10, bias=False)
        self.lm_head.weight = self.wte.weight
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, ids):
        h = self.block(self.wte(ids))
        h = self.attn(h, h, h)[0]
        return self.lm_head(h) * self.scale


def test_framework_calls_only_inside_backends():
    banned = re.compile(
        r"register_forward_hook|register_forward_pre_hook|register_module_forward_hook|"
        r"\.register_hook\(|named_modules\(|named_parameters\(|named_children\(|\.eval\(\)|load_state_dict\("
    )
    offenders = []
    for path in (ROOT / "nnspec").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("nnspec/backends/") or rel == "nnspec/models.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if banned.search(line):
                offenders.append(f"{rel}:{i}: {line.strip()}")
    assert offenders == []


def test_modules_match_the_module_tree():
    model = Tied()
    be = backend_for(model)
    assert [m.path for m in be.modules()] == [p for p, _ in model.named_modules()]
    assert module_at(be, "block.0").type == "Linear" and module_at(be, "block.0").leaf
    assert not module_at(be, "block").leaf
    assert "Module" in module_at(be, "block.1").types  # bases, for type(Module)
    assert [m.path for m in be.modules() if m.attention] == ["attn"]


def test_tied_parameters_are_one_tensor_with_every_name():
    model = Tied()
    be = backend_for(model)
    params = {p.path: p for p in be.params()}
    assert list(params) == [n for n, _ in model.named_parameters()]  # each tensor once, model order
    assert params["wte.weight"].names == ("wte.weight", "lm_head.weight")
    assert be.tensor("lm_head.weight") is model.wte.weight
    assert params["block.0.weight"].layout == ("out", "in") and params["block.0.weight"].role == "weight"
    assert params["attn.in_proj_weight"].role == "weight" and params["attn.in_proj_bias"].role == "bias"
    assert params["scale"].role == "other" and params["scale"].module == ""
    assert be.size() == sum(p.numel() for p in model.parameters())
    assert [n for n, _ in own_params(be, "lm_head")] == ["weight"]
    assert sum(p.numel for _, p in params_under(be, "")) == be.size()


def test_params_under_and_own_params_of_every_module_equal_a_scan_of_every_name():
    """Indexed once per backend (a scan per module is quadratic on a large model): the same
    lists, in the same order, tied weights under their first name in each module."""
    model = Tied()
    be = backend_for(model)

    def under(name, path):
        return name if not path else (name[len(path) + 1 :] if name.startswith(path + ".") else None)

    for path in [m.path for m in be.modules()] + ["", "block", "nothing"]:
        want_under, want_own = [], []
        for p in be.params():
            rel = next((r for r in (under(n, path) for n in p.names) if r is not None), None)
            if rel is not None:
                want_under.append((rel, p))
            want_own += [(under(n, path), p) for n in p.names if under(n, path) and "." not in under(n, path)]
        assert params_under(be, path) == want_under and own_params(be, path) == want_own, path
    assert [n for n, _ in params_under(be, "lm_head")] == ["weight"]


def test_a_parameter_by_any_name_is_the_live_tensor_get_parameter_gives():
    """``tensor`` walks the modules' own dicts (fast): the same object as ``get_parameter``
    for every name, tied, parametrized and swapped-in modules included; a bad name is its error."""
    from torch.nn.utils import parametrize

    class Positive(nn.Module):
        def forward(self, x):
            return x.abs()

    model = Tied()
    parametrize.register_parametrization(model.block[0], "weight", Positive())
    be = backend_for(model)
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    assert "block.0.parametrizations.weight.original" in names and "lm_head.weight" in names
    for name in names:
        assert be.tensor(name) is model.get_parameter(name), name
    model.attn = nn.MultiheadAttention(8, 2)  # swapped after the backend was made: the new one
    assert be.tensor("attn.in_proj_weight") is model.attn.in_proj_weight
    with pytest.raises(AttributeError):
        be.tensor("block.7.weight")


def test_forward_calls_back_and_leaves_no_hook():
    model = Tied()
    be = backend_for(model)
    seen = {}
    ids = torch.randint(0, 10, (2, 5))
    with be.guest():
        done = be.forward(Call((ids,)), {"block.0": lambda a, k, out: seen.setdefault("out", out.detach().clone())})
    mine = {}
    h = model.block[0].register_forward_hook(lambda m, a, out: mine.setdefault("out", out.detach().clone()))
    model.eval()
    model(ids)
    h.remove()
    torch.testing.assert_close(seen["out"], mine["out"])
    assert done.ran[:4] == ["wte", "block.0", "block.1", "block"]  # in the order they finished
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_guest_restores_modes_and_flags_when_the_model_raises():
    model = Tied().train()
    model.block[0].weight.requires_grad_(False)
    be = backend_for(model)
    with pytest.raises(PassFailed) as e:
        with be.guest(("block.0.weight",)):
            assert not model.training and model.block[0].weight.requires_grad
            be.forward(Call((torch.zeros(2, 3),)))  # floats into an embedding: the model raises
    assert e.value.ran == []  # wte raised: no module finished
    assert model.training and all(m.training for m in model.modules())
    assert not model.block[0].weight.requires_grad


def test_backward_gives_exactly_the_wanted_gradients():
    model = Tied()
    be = backend_for(model)
    ids = torch.randint(0, 10, (2, 5))
    with be.guest(("scale",)):
        out = be.forward(Call((ids,)), grad=True).result
        got = be.backward(out.sum(), {"scale": be.tensor("scale"), "unused": torch.ones(1, requires_grad=True)})
    (want,) = torch.autograd.grad(model(ids).sum(), [model.scale])
    torch.testing.assert_close(got["scale"], want)
    assert got["unused"] is None and model.scale.grad is None


def test_a_view_the_backend_cannot_serve_fails_alone_with_the_reason():
    """ONNX Runtime has no backward: its gradient views fail, saying so; the others draw."""
    import nnspec
    from nnspec.backends.base import Capabilities
    from nnspec.backends.pytorch.backend import TorchBackend

    class ForwardOnly(TorchBackend):
        name = "forward-only"
        capabilities = Capabilities(backward=False, why=(("backward", "it has no backward pass"),))

    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    spec = {
        "nnspec": 1,
        "loss": "sum",
        "views": [
            {"query": "weights of 0 | heatmap"},
            {"query": "grads of *.weight | norm"},
            {"query": "activations of * | stats"},
        ],
    }
    dash = nnspec.render(spec, model=ForwardOnly(model), inputs=torch.randn(5, 4))
    weights, grads, acts = dash.views
    assert weights.error is None and acts.error is None
    assert "which the forward-only backend cannot run: it has no backward pass" in grads.error
    torch.testing.assert_close(
        torch.tensor(weights.data.sort_values(["row", "col"])["value"].to_numpy()).reshape(3, 4),
        model[0].weight.detach().double(),
    )
