"""Architecture graph, summary, images, attention, functions, saliency and PCA:
numbers against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nnspec
from nnspec.models import ResNet, TinyEncoder
from tests.fixtures.models import Activations, Branchy, Stack, TinyMLP
from tests.helpers import IRIS_FEATURES, iris_spec, model_and_batch, spec, view


def _one(query, model, inputs, loss="sum", **kw):
    dash = nnspec.render(spec([{"query": query, **kw}], loss=loss), model=model, inputs=inputs)
    return view(dash)


def test_graph_has_every_leaf_module_and_the_residual_edges():
    torch.manual_seed(0)
    model = ResNet(widths=(4, 8), blocks=2, classes=3)
    v = _one("graph(fold=false)", model, torch.randn(2, 3, 8, 8))
    nodes, edges = v.data, v.data.attrs.get("edges")
    ids = set(nodes["id"])
    leaves = [p for p, m in model.named_modules() if p and not list(m.children())]
    assert all(p in ids for p in leaves)  # the default depth fits this model whole
    # the residual of the first block: the add takes bn2 and the shortcut
    add = next(i for i in ids if i.startswith("add#") and ("stages.0.0.bn2", i) in set(zip(edges.source, edges.target)))
    preds = set(edges.loc[edges.target == add, "source"])
    assert preds == {"stages.0.0.bn2", "stages.0.0.shortcut"}
    assert any("eager trace" in n for n in v.notes)
    assert {"id", "label", "type", "x", "y"} <= set(nodes.columns) and {"source", "target"} <= set(edges.columns)


def test_graph_collapses_to_a_depth_and_folds_repeats():
    torch.manual_seed(0)
    model = Stack(n=6)
    x = torch.randint(0, 10, (2, 5))
    folded = _one("graph(depth=2)", model, x).data
    row = folded[folded["fold"] > 1].iloc[0]
    assert row["fold"] == 6 and "×6" in row["label"] and row["path"] == "blocks.0–5"
    assert row["params"] == 6 * (8 * 8 + 8)
    plain = _one("graph(depth=2, fold=false)", model, x).data
    assert [f"blocks.{i}" for i in range(6)] == [i for i in plain["id"] if i.startswith("blocks.")]
    assert len(plain) == len(folded) + 5
    shallow = _one("graph(depth=1)", model, x).data
    assert list(shallow["id"]) == ["input", "embed", "blocks", "head", "output"]


def test_graph_of_a_model_torch_export_cannot_trace():
    torch.manual_seed(0)
    model = Branchy()
    x = torch.ones(3, 4)
    with pytest.raises(Exception):  # noqa: B017 - export's error type varies between releases
        torch.export.export(model, (x,))
    v = _one("graph", model, x)
    taken = model.a(x).sum() > 0
    ids = set(v.data["id"])
    assert ("b" in ids) == bool(taken)  # the branch this forward pass took, nothing else
    assert {"a", "c", "input", "output"} <= ids


def test_graph_layout_directions_and_colour():
    torch.manual_seed(0)
    model = TinyMLP()
    tb = _one("graph", model, torch.randn(2, 4)).data.set_index("id")
    lr = _one("graph(direction=LR, color=params)", model, torch.randn(2, 4)).data.set_index("id")
    assert tb.loc["input", "y"] < tb.loc["output", "y"] and lr.loc["input", "x"] < lr.loc["output", "x"]
    assert lr.loc["fc1", "params"] == 4 * 5 + 5


def test_summary_counts_tied_weights_once():
    torch.manual_seed(0)
    model = Stack()
    v = _one("summary", model, torch.randint(0, 10, (2, 5)))
    df = v.data.set_index("layer")
    assert df.loc["total params", "params"] == sum(p.numel() for p in model.parameters())
    assert df.loc["total params", "params"] < sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert "head.weight = embed.weight" in df.loc["head", "shared"]
    assert df.loc["blocks.0.0", "input_shape"] == "2×5×8" and df.loc["head", "output_shape"] == "2×5×10"


def test_images_tiles_are_the_filters():
    torch.manual_seed(0)
    model = ResNet(widths=(4,), blocks=1, classes=2)
    v = _one("weights of stem.0 | images(cols=4)", model, None)
    df = v.data
    w = model.stem[0].weight.detach()
    assert df["tile"].nunique() == 4 * 3
    t = df[df["tile"] == "2,1"]
    assert t["value"].to_numpy() == pytest.approx(w[2, 1].reshape(-1).numpy(), rel=1e-7)
    maps = _one("activations of stem.2 [0] | channels | images", model, torch.randn(2, 3, 6, 6)).data
    assert sorted(maps["tile"].unique(), key=int) == [str(i) for i in range(4)]


def test_attention_rows_sum_to_one_and_match_torch():
    torch.manual_seed(0)
    model = TinyEncoder(vocab=16, d=16, heads=2, layers=1)
    x = torch.randint(0, 16, (3, 7))
    model.eval()
    forward_before = type(model.encoder.layers[0].self_attn).forward
    v = _one("attention of encoder.layers.0.self_attn [1]", model, x)
    df = v.data
    sums = df.groupby(["head", "query"])["weight"].sum()
    assert np.allclose(sums.to_numpy(), 1.0, atol=1e-6)
    # the same weights torch computes when asked directly, for the second sequence
    layer = model.encoder.layers[0]
    h = model.embed(x) + model.pos(torch.arange(7))
    with torch.no_grad():
        _, w = layer.self_attn(h, h, h, need_weights=True, average_attn_weights=False)
    got = df[df["head"] == 1].sort_values(["query", "key"])["weight"].to_numpy()
    assert got == pytest.approx(w[1, 1].reshape(-1).numpy(), abs=1e-6)
    attn = model.encoder.layers[0].self_attn
    assert "forward" not in attn.__dict__ and type(attn).forward is forward_before
    assert torch.backends.mha.get_fastpath_enabled()


def test_attention_labels_from_tokens():
    d = spec(["attention of encoder.layers.0.self_attn"], factory="nnspec.models:TinyEncoder", loss=None)
    d["input"] = {"tokens": ["a", "b", "a"]}
    v = view(nnspec.render(d))
    assert list(v.data[v.data["head"] == 0]["key_label"][:3]) == ["0:a", "1:b", "2:a"]


def test_attention_needs_attention_modules():
    dash = nnspec.render(spec(["attention of *"], loss=None), model=TinyMLP(), inputs=torch.randn(2, 4))
    assert "no nn.MultiheadAttention" in dash.views[0].error


def test_function_curves_and_derivatives():
    v = _one("function tanh, gelu over [-2, 2]", TinyMLP(), None, loss=None)
    df = v.data
    f = df[(df["function"] == "tanh") & (df["kind"] == "f(x)")]
    d = df[(df["function"] == "tanh") & (df["kind"] == "f'(x)")]
    x = torch.tensor(f["x"].to_numpy())
    assert f["value"].to_numpy() == pytest.approx(torch.tanh(x).numpy(), abs=1e-12)
    assert d["value"].to_numpy() == pytest.approx((1 - torch.tanh(x) ** 2).numpy(), abs=1e-12)
    g = df[(df["function"] == "gelu") & (df["kind"] == "f(x)")]
    assert g["value"].to_numpy() == pytest.approx(torch.nn.functional.gelu(x).numpy(), abs=1e-12)
    assert x.min() == -2 and x.max() == 2


def test_function_star_draws_what_the_model_uses():
    model = Activations()
    v = _one("function *", model, torch.randn(2, 3))
    assert set(v.data["function"]) == {"leaky_relu(0.2)", "tanh", "gelu"}
    lr = v.data[(v.data["function"] == "leaky_relu(0.2)") & (v.data["kind"] == "f(x)")]
    assert lr["value"].iloc[0] == pytest.approx(-5 * 0.2)
    assert next(model.parameters()).dtype == torch.float32  # curves use copies, never the model's modules


def test_tabular_saliency_is_mean_abs_grad_per_feature():
    d = iris_spec(["input_grads"])
    v = view(nnspec.render(d))
    assert list(v.data["feature"]) == IRIS_FEATURES
    model, batch = model_and_batch(d)
    x = batch.x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), batch.y), [x])
    assert v.data["value"].to_numpy() == pytest.approx(g.abs().mean(dim=0).numpy(), rel=1e-5)


def test_image_saliency_is_max_abs_over_channels():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 5 * 5, 1))
    x = torch.randn(2, 3, 5, 5)
    v = _one("input_grads", model, x)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xg).sum(), [xg])
    tile = v.data[v.data["tile"] == "1"].sort_values(["row", "col"])
    assert tile["value"].to_numpy() == pytest.approx(g[1].abs().amax(dim=0).reshape(-1).numpy(), rel=1e-6)


def test_pca_matches_numpy_and_reports_variance():
    d = iris_spec(["activations of act1 | pca(k=2)"], loss=None)
    v = view(nnspec.render(d))
    model, batch = model_and_batch(d)
    a = model.act1(model.fc1(batch.x)).detach().double().numpy()
    a = a - a.mean(axis=0)
    u, sv, vt = np.linalg.svd(a, full_matrices=False)
    for i in range(2):
        assert np.abs(v.data[f"pc{i + 1}"].to_numpy()) == pytest.approx(np.abs(u[:, i] * sv[i]), rel=1e-6, abs=1e-9)
    ratio = sv[:2] ** 2 / (sv**2).sum()
    assert f"pc1 {100 * ratio[0]:.1f}%" in v.notes[-1]
    assert set(v.data["label"]) == {"setosa", "versicolor", "virginica"}


def test_layers_shapes_cli(capsys):
    from nnspec.cli.main import main

    assert main(["layers", "--shapes", "specs/transformer.yaml"]) == 0
    out = capsys.readouterr().out
    assert "encoder.layers.0.self_attn" in out and "1×10×32" in out and "total params: 20,226" in out


def test_graph_coloured_by_another_query():
    torch.manual_seed(0)
    model = ResNet(widths=(4,), blocks=1, classes=2)
    x = torch.randn(2, 3, 6, 6)
    v = _one('graph(depth=2, color="grads of *.weight | norm")', model, x)
    nodes = v.data.set_index("id")
    model.eval()  # nnspec's forward pass runs in eval mode (batch norm uses its running statistics)
    loss = model(x).sum()
    names = [n for n, _ in model.named_parameters() if n.endswith("weight")]
    grads = dict(zip(names, torch.autograd.grad(loss, [dict(model.named_parameters())[n] for n in names])))
    inside = [g.norm().item() for n, g in grads.items() if n.startswith("stages.0.")]
    assert nodes.loc["stages.0", "stat"] == pytest.approx(sum(inside) / len(inside), rel=1e-5)
    assert nodes.loc["fc", "stat"] == pytest.approx(grads["fc.weight"].norm().item(), rel=1e-5)
    assert nodes.loc["input", "stat"] is None or nodes.loc["input", "stat"] != nodes.loc["input", "stat"]
    bad = nnspec.render(spec(['graph(color="activations of * | stats")']), model=model, inputs=x)
    assert "one value per layer" in bad.views[0].error


def test_graph_follows_keyword_arguments():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(3, 3)
            self.out = nn.Linear(3, 3)

        def forward(self, x):
            return self.out(input=self.inner(x))  # a leaf module called with a keyword only

    v = _one("graph", Net(), torch.randn(2, 3))
    edges = v.data.attrs["edges"]
    assert ("inner", "out") in set(zip(edges.source, edges.target))


def test_attention_and_pca_labels_from_the_input(tmp_path):
    enc = {"factory": "nnspec.models:TinyEncoder", "kwargs": {"vocab": 8, "d": 8, "heads": 2, "layers": 1}}
    views = [{"query": "attention of encoder.layers.0.self_attn"}, {"query": "activations of encoder [0] | pca"}]
    listed = {"random": {"shape": [1, 4], "dist": "randint", "high": 8}, "labels": ["w", "x", "y", "z"]}
    dash = nnspec.render({"nnspec": 1, "model": enc, "input": listed, "views": views})
    assert list(view(dash, 0).data["key_label"].unique()) == ["0:w", "1:x", "2:y", "3:z"]
    assert list(view(dash, 1).data["label"]) == ["0:w", "1:x", "2:y", "3:z"]
    torch.save({"x": torch.tensor([[1, 2, 3]]), "labels": ["p", "q", "r"]}, tmp_path / "b.pt")
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(
        "nnspec: 1\nmodel: {factory: nnspec.models:TinyEncoder, kwargs: {vocab: 8, d: 8, heads: 2, layers: 1}}\n"
        "input: {file: b.pt}\nviews: [{query: attention of encoder.layers.0.self_attn}]\n"
    )
    assert list(view(nnspec.render(str(spec_file))).data["query_label"].unique()) == ["0:p", "1:q", "2:r"]
    column = iris_spec(["activations of act1 | pca"], loss=None)
    column["input"].pop("target")
    column["input"]["labels"] = "species"
    labels = view(nnspec.render(column)).data["label"]
    assert labels.iloc[0] == "0:setosa" and labels.iloc[-1].endswith(":virginica")


def test_images_of_several_layers_one_grid_and_scale_each():
    torch.manual_seed(0)
    model = ResNet(widths=(4,), blocks=1, classes=2)
    v = _one("weights of stem | images(cols=4)", model, None, loss=None)
    assert set(v.data["layer"]) == {"stem.0.weight", "stem.1.weight"}
    vl = v.vega_lite()
    assert len(vl["vconcat"]) == 2 and vl["resolve"]["scale"]["color"] == "independent"
    bn = v.data[v.data["layer"] == "stem.1.weight"]
    assert bn["value"].tolist() == model.stem[1].weight.tolist()  # a vector is one row of cells
