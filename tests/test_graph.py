"""The architecture graph on models nobody here wrote: Hugging Face GPT-2, ViT
and T5 from small configs, and faithful copies of torchvision's ResNet
Bottleneck (in-place ReLU reused three times, ``out += identity``) and timm's
ViT block. Every check is on the graph's structure: edges follow the data, a
module called twice is two nodes, residual adds show at the default depth,
repeated blocks fold at every depth, the graph fits its node budget."""

from __future__ import annotations

import igraph as ig
import pytest
import torch
from torch import nn

import nnspec
from nnspec.backends.base import Call
from nnspec.backends.pytorch.trace import Tracer
from nnspec.execute import layout as G
from tests.helpers import spec, view
from tests.vision_models import Attention, Block, Bottleneck, Mlp, ResNet50ish, TimmViT  # noqa: F401

transformers = pytest.importorskip("transformers")


def gpt2(layers=2):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=layers, n_head=2, n_embd=32, vocab_size=50, n_positions=32)
    return transformers.GPT2LMHeadModel(cfg).eval()


def hf_vit(layers=2):
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=16,
        patch_size=8,
    )
    return transformers.ViTModel(cfg, add_pooling_layer=False).eval()


def t5(layers=2):
    torch.manual_seed(0)
    cfg = transformers.T5Config(
        vocab_size=50, d_model=32, d_kv=8, d_ff=64, num_layers=layers, num_heads=2, decoder_start_token_id=0
    )
    return transformers.T5ForConditionalGeneration(cfg).eval()


class Logits(nn.Module):
    """A Hugging Face model called with input_ids, returning its logits (or hidden states)."""

    def __init__(self, model, **extra):
        super().__init__()
        self.model = model
        self.extra = extra

    def forward(self, x):
        kw = {k: f(x) for k, f in self.extra.items()}
        out = self.model(x, **kw)
        return out.logits if hasattr(out, "logits") else out.last_hidden_state


# --- helpers ------------------------------------------------------------------------------------


def trace(model, *args, **kwargs):
    tracer = Tracer(model)
    with torch.no_grad():
        tracer.run(model, Call(args, kwargs))
    return tracer.trace


def graph(model, *args, depth=None, fold=None, **kwargs):
    return G.build(trace(model, *args, **kwargs), model, depth, fold)


def edges(g) -> set:
    return set(g.edges)


def preds(g, node) -> set:
    return {a for a, b in g.edges if b == node}


def succs(g, node) -> set:
    return {b for a, b in g.edges if a == node}


def is_dag(g) -> bool:
    index = {n.id: i for i, n in enumerate(g.nodes)}
    return ig.Graph(n=len(index), edges=[(index[a], index[b]) for a, b in g.edges], directed=True).is_dag()


def reaches(g, a, b) -> bool:
    seen, todo = set(), [a]
    while todo:
        n = todo.pop()
        if n == b:
            return True
        if n not in seen:
            seen.add(n)
            todo += succs(g, n)
    return False


def adds(g, scope="") -> list:
    return [n.id for n in g.nodes if n.kind == "op" and n.type == "add" and n.path.startswith(scope)]


# --- the trace: per-call nodes, in-place ops, keyword calls, several inputs --------------------


def test_a_module_called_twice_is_two_nodes_and_the_edges_follow_the_data():
    model = hf_vit()
    g = graph(model, torch.randn(1, 3, 16, 16), depth=5)
    assert is_dag(g)
    first, second = "layers.0.dropout:1", "layers.0.dropout:2"
    ids = {n.id: n for n in g.nodes}
    assert ids[first].label.startswith("layers.0.dropout (call 1)")
    assert ids[second].label.startswith("layers.0.dropout (call 2)")
    assert "layers.0.dropout" not in ids  # the calls are never merged
    assert preds(g, first) == {"layers.0.attention.o_proj"}
    assert preds(g, second) == {"layers.0.mlp.fc2"}
    attn_add, mlp_add = (next(iter(succs(g, d))) for d in (first, second))
    assert ids[attn_add].type == ids[mlp_add].type == "add"
    # the attention residual adds the block's input; the MLP residual adds the attention residual
    assert preds(g, attn_add) == {first, "embeddings.dropout"}
    assert preds(g, mlp_add) == {second, attn_add}
    # nothing of the MLP feeds the attention back
    mlp = [n for n in ids if n.startswith("layers.0.mlp")] + [second, mlp_add]
    attention = [n for n in ids if n.startswith("layers.0.attention")] + [first, attn_add]
    assert not any(reaches(g, m, a) for m in mlp for a in attention)


def test_in_place_add_and_relu_take_the_previous_producer_and_become_the_producer():
    torch.manual_seed(0)
    block = Bottleneck(8, 2).eval()  # no downsample: the identity is the input itself
    g = graph(block, torch.randn(1, 8, 4, 4), depth=1)
    assert is_dag(g)
    chain = ["input", "conv1", "bn1", "relu:1", "conv2", "bn2", "relu:2", "conv3", "bn3"]
    for a, b in zip(chain, chain[1:]):
        assert (a, b) in edges(g), (a, b)
    (add,) = adds(g)
    assert preds(g, add) == {"bn3", "input"}  # out += identity: bn3 before the add, and the input
    assert succs(g, add) == {"relu:3"} and succs(g, "relu:3") == {"output"}
    assert {n.id for n in g.nodes if n.type == "ReLU"} == {"relu:1", "relu:2", "relu:3"}


def test_modules_called_with_keywords_and_a_call_with_several_inputs():
    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, hidden_states, mask=None):
            return self.fc(hidden_states) * mask

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 4)
            self.block = Inner()
            self.head = nn.Linear(4, 2)

        def forward(self, input_ids, attention_mask=None):
            return self.head(self.block(hidden_states=self.embed(input_ids), mask=attention_mask))

    x, m = torch.randn(2, 4), torch.ones(2, 4)
    g = graph(Net(), x, attention_mask=m, depth=2)
    assert {"input", "attention_mask"} <= {n.id for n in g.nodes if n.kind == "input"}
    assert ("input", "embed") in edges(g) and ("embed", "block.fc") in edges(g)
    (mul,) = [n.id for n in g.nodes if n.type == "mul"]
    assert preds(g, mul) == {"block.fc", "attention_mask"} and succs(g, mul) == {"head"}
    g = graph(Net(), input_ids=x, attention_mask=m, depth=1)
    assert [n.id for n in g.nodes if n.kind == "input"] == ["input_ids", "attention_mask"]
    two = graph(Net(), x, m, depth=1)
    assert [n.id for n in two.nodes if n.kind == "input"] == ["input 0", "input 1"]
    assert preds(two, "block") == {"embed", "input 1"}


def test_the_tracer_still_takes_a_bare_input():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    tracer = Tracer(model)
    tracer.run(model, torch.randn(2, 3))
    assert [n.name for n in tracer.trace.nodes] == ["input", "0", "1", "output"]


# --- the default depth: residual adds, folding at every depth, the node budget -----------------


def test_resnet50_shaped_default_depth_shows_the_residual_adds_and_fits():
    torch.manual_seed(0)
    model = ResNet50ish().eval()
    g = graph(model, torch.randn(1, 3, 32, 32))
    assert len(g.nodes) <= G.FITS and is_dag(g)
    assert g.depth == 4  # each stage's first block drawn inside out, its downsample too
    ids = {n.id: n for n in g.nodes}
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        (add,) = adds(g, f"{stage}.0")
        # the residual add: bn3 and the shortcut (the downsample of the block's input)
        assert preds(g, add) == {f"{stage}.0.bn3", f"{stage}.0.downsample.1"}
        assert succs(g, add) == {f"{stage}.0.relu:3"}
        block_input = preds(g, f"{stage}.0.conv1")
        assert len(block_input) == 1 and preds(g, f"{stage}.0.downsample.0") == block_input
    # the identical blocks after each stage's first fold, runs of two included
    folded = {n.path: n.fold for n in g.nodes if n.fold > 1}
    assert folded == {"layer1.1–2": 2, "layer2.1–3": 3, "layer3.1–5": 5, "layer4.1–2": 2}
    assert ids["layer3.1"].label == "layer3.1–5\nBottleneck ×5"
    assert ("layer3.0.relu:3", "layer3.1") in edges(g) and ("layer3.1", "layer4.0.conv1") in edges(g)
    assert g.folded == 12


def test_resnet50_shaped_blocks_fold_inside_out_at_a_given_depth(monkeypatch):
    monkeypatch.setattr(G, "FITS", 1000)  # room to draw every run inside out
    torch.manual_seed(0)
    model = ResNet50ish().eval()
    g = graph(model, torch.randn(1, 3, 32, 32), depth=3, fold=True)
    assert is_dag(g)
    # each run's first block stands for the run, its insides drawn once with ×N
    ids = {n.id: n for n in g.nodes}
    assert ids["layer3.1.conv1"].label == "layer3.1–5.conv1\nConv2d ×5" and ids["layer3.1.conv1"].fold == 5
    assert "layer3.2.conv1" not in ids
    (add,) = adds(g, "layer3.1–5")
    assert preds(g, add) == {"layer3.1.bn3", "layer3.0.relu:3"}  # the run's input is the identity
    assert ids[add].label == "add ×5"
    assert succs(g, "layer3.1.relu:3") == {"layer4.0.conv1", "layer4.0.downsample"}


def test_gpt2_default_depth_shows_the_residual_adds_and_folds_the_blocks():
    model = gpt2(layers=4)
    g = graph(Logits(model), torch.randint(0, 50, (1, 6)))
    assert len(g.nodes) <= G.FITS and is_dag(g)
    ids = {n.id: n for n in g.nodes}
    h = "model.transformer.h"
    # the four blocks fold into the first, drawn inside out, at every depth below the blocks'
    assert not any(i.startswith(f"{h}.1") for i in ids)
    assert ids[f"{h}.0.ln_1"].label == f"{h}.0–3.ln_1\nLayerNorm ×4"
    attn_add, mlp_add = adds(g, f"{h}.0–3")
    assert preds(g, attn_add) == {f"{h}.0.attn.resid_dropout", "model.transformer.drop"}  # one from the block input
    assert preds(g, mlp_add) == {f"{h}.0.mlp.dropout", attn_add}
    assert succs(g, mlp_add) == {f"{h}.0.ln_1", "model.transformer.ln_f"} - {f"{h}.0.ln_1"}
    assert ("model.lm_head", "output") in edges(g)
    for d in (4, 5, 6):  # model.transformer.h.0 is at depth 4: the run folds there and deeper
        at = graph(Logits(model), torch.randint(0, 50, (1, 6)), depth=d)
        assert is_dag(at) and not any(".h.1" in n.id for n in at.nodes) and at.folded == 4


def test_gpt2_without_folding_keeps_every_block_and_the_chain():
    model = gpt2(layers=2)
    g = graph(Logits(model), torch.randint(0, 50, (1, 6)), depth=5, fold=False)
    h = "model.transformer.h"
    assert is_dag(g) and (f"{h}.0.mlp", adds(g, f"{h}.0")[1]) in edges(g)
    assert preds(g, f"{h}.1.ln_1") == {adds(g, f"{h}.0")[1]}


def test_t5_reused_dropout_is_one_node_per_call_and_the_output_is_last():
    model = t5(layers=2)
    x = torch.randint(0, 50, (1, 6))
    wrapped = Logits(model, decoder_input_ids=lambda x: x[:, :3])
    g = graph(wrapped, x)
    assert len(g.nodes) <= G.FITS and is_dag(g)
    ids = {n.id for n in g.nodes}
    for stack in ("encoder", "decoder"):
        assert {f"model.{stack}.dropout:1", f"model.{stack}.dropout:2"} <= ids
        assert preds(g, f"model.{stack}.dropout:2") == {f"model.{stack}.final_layer_norm"}
    assert ("model.lm_head", "output") in edges(g)
    lay = G.layout(g)
    rank = {n: y for n, (_, y) in lay.pos.items()}
    assert rank["output"] == max(rank.values()) and rank["input"] == min(rank.values())
    # the cross-attention reads the encoder's output
    assert any(a == "model.encoder.dropout:2" and "EncDecAttention" in b for a, b in g.edges)


def test_timm_vit_block_residuals_and_fold():
    torch.manual_seed(0)
    model = TimmViT(depth=4).eval()
    g = graph(model, torch.randn(1, 3, 16, 16), depth=3)
    assert is_dag(g) and len(g.nodes) <= G.FITS
    ids = {n.id: n for n in g.nodes}
    attn_add, mlp_add = adds(g, "blocks.0–3")
    assert preds(g, attn_add) == {"blocks.0.drop_path1", "patch_embed"}
    assert preds(g, mlp_add) == {"blocks.0.drop_path2", attn_add}
    assert ids["blocks.0.mlp"].fold == 4 and succs(g, mlp_add) == {"norm"}


# --- pictures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt2", "t5", "resnet50"])
def test_graph_renders(tmp_path, name):
    x = torch.randint(0, 50, (1, 6))
    model, inputs = {  # Hugging Face models called with keyword arguments, as they are meant to be
        "gpt2": lambda: (gpt2(layers=4), {"input_ids": x, "attention_mask": torch.tensor([[0, 1, 1, 1, 1, 1]])}),
        "t5": lambda: (t5(layers=2), {"input_ids": x, "decoder_input_ids": x[:, :3]}),
        "resnet50": lambda: (ResNet50ish().eval(), torch.randn(1, 3, 32, 32)),
    }[name]()
    dash = nnspec.render(
        spec(["graph"], loss=None), out=str(tmp_path), formats=("html", "png"), model=model, inputs=inputs
    )
    v = view(dash)
    nodes = v.data.set_index("id")
    edges = set(zip(v.data.attrs["edges"].source, v.data.attrs["edges"].target))
    assert len(nodes) <= G.FITS
    first = "input" if name == "resnet50" else "input_ids"
    assert nodes.loc[first, "y"] == nodes["y"].min() and nodes.loc["output", "y"] == nodes["y"].max()
    if name == "gpt2":  # the padding mask reaches the attention; the mask checks (sum) are not drawn
        (sdpa,) = [i for i in nodes.index if i.startswith("scaled_dot_product_attention")]
        mask = [b for a, b in edges if a == "attention_mask"]
        assert mask and all((m, sdpa) in edges for m in mask) and not any(i.startswith("sum#") for i in nodes.index)
    if name == "t5":
        assert {("input_ids", "encoder.embed_tokens"), ("decoder_input_ids", "decoder.embed_tokens")} <= edges
    assert list(tmp_path.glob("*.png"))


def test_a_folded_node_is_coloured_by_every_block_of_its_run():
    torch.manual_seed(0)
    model = TimmViT(depth=4).eval()
    q = 'graph(depth=3, color="weights of *.weight | norm")'
    dash = nnspec.render(spec([q], loss=None), model=model, inputs=torch.randn(1, 3, 16, 16))
    nodes = view(dash).data.set_index("id")
    norms = [model.blocks[i].mlp.fc1.weight.norm().item() for i in range(4)]
    norms += [model.blocks[i].mlp.fc2.weight.norm().item() for i in range(4)]
    assert nodes.loc["blocks.0.mlp", "stat"] == pytest.approx(sum(norms) / len(norms), rel=1e-5)
