"""The user's model is a guest: after a render it is exactly as it was."""

from __future__ import annotations

import torch

import nnspec
from tests.fixtures.models import TinyMLP
from tests.helpers import spec

VIEWS = [
    "weights of fc1 | heatmap",
    "activations of * | stats",
    "output_grads of fc1 | norm",
    "grads of * | norm",
    "input_grads | abs | mean",
]


def _state(model):
    return {
        "training": [(n, m.training) for n, m in model.named_modules()],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "grads": [(n, None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()],
        "hooks": [
            (n, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for n, m in model.named_modules()
        ],
        "params": {n: p.detach().clone() for n, p in model.state_dict().items()},
    }


def _same(a, b):
    assert a["training"] == b["training"]
    assert a["requires_grad"] == b["requires_grad"]
    assert a["hooks"] == b["hooks"]
    for (n1, g1), (n2, g2) in zip(a["grads"], b["grads"], strict=True):
        assert n1 == n2 and ((g1 is None and g2 is None) or torch.equal(g1, g2))
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k])


def test_model_left_as_it_was():
    torch.manual_seed(0)
    model = TinyMLP()
    model.train()
    model.fc2.eval()  # mixed modes must come back as they were
    model.fc1.bias.requires_grad_(False)  # a frozen parameter whose grad a view asks for
    model.fc2.weight.grad = torch.full_like(model.fc2.weight, 7.0)  # the user's own accumulated grad
    x, y = torch.randn(6, 4), torch.randn(6, 3)
    before = _state(model)
    grad_mode = torch.is_grad_enabled()
    dash = nnspec.render(spec(VIEWS), model=model, inputs=x, target=y)
    assert all(v.error is None for v in dash.views), [v.error for v in dash.views]
    _same(before, _state(model))
    assert torch.is_grad_enabled() == grad_mode
    assert not torch.nn.modules.module._global_forward_hooks


def test_model_left_as_it_was_when_forward_fails():
    torch.manual_seed(0)
    model = TinyMLP()
    model.train()
    before = _state(model)
    dash = nnspec.render(spec(VIEWS), model=model, inputs=torch.randn(6, 7))  # wrong width
    assert dash.views[0].error is None  # a parameter view still renders
    assert "forward pass failed" in dash.views[1].error
    _same(before, _state(model))
    assert not torch.nn.modules.module._global_forward_hooks
