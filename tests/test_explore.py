"""The graph explorer's payload (nnspec/execute/explore.py): its initial state
draws exactly ``layout.build``'s graph, node for node and edge for edge, on
small models, Hugging Face GPT-2 and T5, and a torchvision-style ResNet-50;
every other state is the same rule (what graph.js does in the browser)."""

from __future__ import annotations

import json

import pytest
import torch

from nnspec.execute import explore
from nnspec.execute import layout as G
from tests import hf_models
from tests.fixtures import models as fx
from tests.vision_models import ResNet50ish

test_graph = pytest.importorskip("tests.test_graph")  # its trace helpers and HF builders (needs transformers)


def _check(model, *args, depth=None, fold=None, **kwargs):
    tr = test_graph.trace(model, *args, **kwargs)
    data = explore.payload(tr, model, {"depth": depth, "fold": fold})
    g = G.build(tr, model, depth, fold)
    shown, edges = explore.visible(data, data["init"]["x"], data["init"]["f"])
    assert set(shown) == {n.id for n in g.nodes}
    assert edges == set(g.edges)
    assert json.loads(json.dumps(data)) == data  # JSON-able as it is
    return data, tr


@pytest.mark.parametrize(
    "make, x",
    [
        (fx.make_tiny_mlp, lambda: torch.randn(2, 4)),
        (fx.TinyCNN, lambda: torch.randn(1, 2, 8, 8)),
        (fx.Branchy, lambda: torch.randn(2, 4)),
        (fx.Stack, lambda: torch.randint(0, 10, (1, 5))),
        (fx.make_dead_layer, lambda: torch.randn(2, 4)),
    ],
)
def test_fixture_models_initial_state_is_builds_graph(make, x):
    torch.manual_seed(0)
    _check(make().eval(), x())


def test_stack_runs_fold_and_unfold():
    torch.manual_seed(0)
    model = fx.Stack().eval()
    data, _ = _check(model, torch.randint(0, 10, (1, 5)))
    assert [r["b"] for r in data["r"]] == [[f"blocks.{i}" for i in range(6)]]
    for depth in (1, 2, 3):
        for fold in (None, True, False):
            _check(model, torch.randint(0, 10, (1, 5)), depth=depth, fold=fold)
    shown, _ = explore.visible(data, ["blocks"], [])
    assert {f"blocks.{i}" for i in range(6)} <= set(shown)
    shown, _ = explore.visible(data, ["blocks"], [0])
    assert "blocks.0" in shown and "blocks.1" not in shown


def test_gpt2_at_every_depth_and_folding():
    model = hf_models.gpt2()
    ids = torch.randint(0, hf_models.VOCAB, (1, 8))
    data, _ = _check(model, input_ids=ids)
    for depth in (1, 2, 3, 4, 5):
        for fold in (None, True, False):
            _check(model, input_ids=ids, depth=depth, fold=fold)
    assert data["m"]["transformer.h.1.mlp.c_fc"]["t"] == "Conv1D"
    want = sum(p.numel() for p in model.transformer.h[1].mlp.c_fc.parameters())
    assert data["m"]["transformer.h.1.mlp.c_fc"]["p"] == want
    # the tied lm_head counts once in the model's total
    assert data["m"][""]["p"] == sum(p.numel() for p in model.parameters())


def test_gpt2_with_four_layers_folds_the_blocks_at_the_default_depth():
    model = test_graph.gpt2(layers=4)
    data, _ = _check(test_graph.Logits(model), torch.randint(0, 50, (1, 6)))
    assert data["init"]["f"]  # the blocks are folded
    # everything open and unfolded: every leaf module call and op is a node
    groups = [p for p, m in data["m"].items() if m.get("g")]
    shown, edges = explore.visible(data, groups, [])
    assert len(shown) == len(data["n"])


def test_t5_calls_stay_apart():
    model = test_graph.t5(layers=2)
    x = torch.randint(0, 50, (1, 6))
    for depth in (None, 3, 4):
        _check(test_graph.Logits(model, decoder_input_ids=lambda x: x[:, :3]), x, depth=depth)


def test_resnet50_shaped_initial_state_and_full_depth():
    torch.manual_seed(0)
    model = ResNet50ish().eval()
    x = torch.randn(1, 3, 32, 32)
    data, _ = _check(model, x)
    for depth in (2, 3, 4):
        _check(model, x, depth=depth, fold=False)
        _check(model, x, depth=depth, fold=True)
    groups = [p for p, m in data["m"].items() if m.get("g")]
    shown, _ = explore.visible(data, groups, [])
    assert len(shown) > 150  # every conv, bn, relu call and residual add
