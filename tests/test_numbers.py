"""Every drawn number against a hand computation on tiny seeded models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nnspec
from nnspec.numerics import reduce
from nnspec.numerics import small as reduce_small
from tests.fixtures.models import NaNModel, TinyCNN, TinyMLP
from tests.helpers import spec, view


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    return TinyMLP()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 3, generator=g)
    return nnspec.Inputs(args=(x,), target=y)


def test_heatmap_values_are_the_weights(mlp, batch):
    dash = nnspec.render(spec(["weights of fc1 | heatmap"]), model=mlp, inputs=batch)
    df = view(dash).data
    assert list(df.columns[:4]) == ["layer", "row", "col", "value"]
    w = mlp.fc1.weight.detach()
    assert len(df) == w.numel()
    for r in df.itertuples():
        assert r.value == pytest.approx(float(w[r.row, r.col]), abs=0, rel=1e-7)


def test_histogram_counts_match_numpy_and_histc(mlp, batch):
    dash = nnspec.render(spec(["activations of fc1 | histogram(bins=7)"]), model=mlp, inputs=batch)
    df = view(dash).data
    act = mlp.fc1(batch.args[0]).detach()
    assert df["count"].sum() == act.numel()
    counts, edges = np.histogram(act.numpy(), bins=7)
    assert df["count"].tolist() == counts.tolist()
    assert df["bin_start"].tolist() == pytest.approx(edges[:-1].tolist(), rel=1e-6)
    assert df["bin_end"].tolist() == pytest.approx(edges[1:].tolist(), rel=1e-6)
    histc = torch.histc(act, bins=7, min=float(act.min()), max=float(act.max()))
    assert df["count"].tolist() == histc.long().tolist()


def test_histogram_with_range_counts_outside_values():
    t = torch.tensor([0.5, 1.5, 1.5, 2.5, 9.0, -3.0])
    h = reduce.histogram(t, 3, (0.0, 3.0))
    assert h["counts"].tolist() == [1, 2, 1]
    assert int(h["outside"]) == 2


def test_stats_equal_torch(mlp, batch):
    dash = nnspec.render(spec(["activations of fc1, act | stats"]), model=mlp, inputs=batch)
    df = view(dash).data.set_index("layer")
    h = mlp.fc1(batch.args[0]).detach()
    for layer, t in (("fc1", h), ("act", h.relu())):
        row = df.loc[layer]
        assert row["numel"] == t.numel()
        assert row["mean"] == pytest.approx(t.mean().item(), rel=1e-5)
        assert row["std"] == pytest.approx(t.std().item(), rel=1e-5)
        assert row["min"] == pytest.approx(t.min().item())
        assert row["max"] == pytest.approx(t.max().item())
        assert row["absmean"] == pytest.approx(t.abs().mean().item(), rel=1e-5)
        assert row["zero_frac"] == pytest.approx((t == 0).float().mean().item())
        assert row["nan"] == 0 and row["inf"] == 0
    assert df.loc["act", "zero_frac"] > 0  # the ReLU zeroes some units: the check above is not vacuous


def test_stats_count_nan_and_inf():
    torch.manual_seed(0)
    model = NaNModel()
    x = torch.randn(5, 3)
    dash = nnspec.render(spec(["activations of poison | stats"], loss=None), model=model, inputs=x)
    row = view(dash).data.iloc[0]
    assert (row["nan"], row["inf"]) == (1, 2)
    t = model.poison(model.fc1(x)).detach()
    finite = t[torch.isfinite(t)]
    assert row["mean"] == pytest.approx(finite.mean().item(), rel=1e-5)
    assert row["max"] == pytest.approx(finite.max().item())


def test_histogram_and_heatmap_show_nonfinite():
    torch.manual_seed(0)
    model = NaNModel()
    x = torch.randn(5, 3)
    dash = nnspec.render(
        spec(["activations of poison | histogram(bins=5)", "activations of poison | heatmap"], loss=None),
        model=model,
        inputs=x,
    )
    hist, heat = view(dash, 0), view(dash, 1)
    assert hist.data["count"].sum() == 5 * 4 - 3
    assert any("1 NaN and 2 Inf" in n for n in hist.notes)
    assert sorted(f for f in heat.data["flag"] if f) == ["+Inf", "-Inf", "NaN"]
    assert any("3 cells hold NaN/Inf" in n for n in heat.notes)


def test_grad_norms_equal_autograd(mlp, batch):
    x, y = batch.args[0], batch.target
    dash = nnspec.render(spec(["grads of *.weight | norm | bar"]), model=mlp, inputs=x, target=y)
    df = view(dash).data.set_index("layer")
    loss = torch.nn.functional.mse_loss(mlp(x), y)
    g1, g2 = torch.autograd.grad(loss, [mlp.fc1.weight, mlp.fc2.weight])
    assert df.loc["fc1.weight", "value"] == pytest.approx(g1.norm().item(), rel=1e-5)
    assert df.loc["fc2.weight", "value"] == pytest.approx(g2.norm().item(), rel=1e-5)
    assert mlp.fc1.weight.grad is None  # nnspec took grads without touching .grad


def test_output_and_input_grads_equal_autograd(mlp, batch):
    x, y = batch.args[0], batch.target
    dash = nnspec.render(
        spec(["output_grads of fc1 | heatmap", "input_grads | abs | max"]), model=mlp, inputs=x, target=y
    )
    xg = x.clone().requires_grad_(True)
    h = mlp.fc1(xg)
    loss = torch.nn.functional.mse_loss(mlp.fc2(mlp.act(h)), y)
    gh, gx = torch.autograd.grad(loss, [h, xg])
    heat = view(dash, 0).data
    assert heat["value"].to_numpy() == pytest.approx(gh.reshape(-1).numpy(), rel=1e-5)
    assert view(dash, 1).data["value"].iloc[0] == pytest.approx(gx.abs().max().item(), rel=1e-6)


def test_block_means_of_a_large_matrix():
    torch.manual_seed(0)
    w = torch.randn(300, 200)
    means, bad = reduce.block_mean(w, 3, 4)
    for i in range(3):
        for j in range(4):
            block = w[i * 100 : (i + 1) * 100, j * 50 : (j + 1) * 50]
            # sums of 100 float32 rows first, then float64: within float32 rounding of the exact mean
            assert means[i, j].item() == pytest.approx(block.double().mean().item(), abs=1e-6)
    assert bad.sum() == 0


def test_heatmap_over_budget_is_an_image_at_true_magnitude_and_says_so():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(400, 250))
    dash = nnspec.render(spec([{"query": "weights of 0 | heatmap", "max_marks": 1000}], loss=None), model=model)
    v = view(dash)
    assert len(v.data) <= 1000
    assert any("250×400 drawn as an image, one pixel per value" in n for n in v.notes)
    # the table keeps, per block, the value of largest magnitude with its sign (never a mean)
    w = model[0].weight.detach().double()
    r = v.data.iloc[7]
    block = w[int(r.row) : int(r.row_end), int(r.col) : int(r.col_end)].reshape(-1)
    assert r.value == pytest.approx(block[block.abs().argmax()].item(), abs=1e-6)
    assert v.vega_lite()["title"]["subtitle"]


def test_conv_weight_flatten_and_index():
    torch.manual_seed(0)
    model = TinyCNN()
    x = torch.randn(2, 2, 5, 5)
    dash = nnspec.render(
        spec(
            [
                "weights of conv1 | flatten | heatmap",
                "activations of conv1 [0, :2] | stats",
                "weights of conv1 | heatmap",
            ],
            loss=None,
        ),
        model=model,
        inputs=x,
    )
    flat = view(dash, 0).data
    assert flat["col_end"].max() == 2 * 3 * 3 and flat["row_end"].max() == 4
    w = model.conv1.weight.detach().reshape(4, -1)
    assert flat["value"].to_numpy() == pytest.approx(w.reshape(-1).numpy(), rel=1e-7)
    st = view(dash, 1).data.iloc[0]
    a = model.conv1(x)[0, :2].detach()
    # float32 sums: a mean near zero is exact to float32 rounding of the values' scale, not of itself
    scale = float(a.abs().max())
    assert st["numel"] == a.numel() and st["mean"] == pytest.approx(a.double().mean().item(), abs=1e-7 * scale)
    err = dash.views[2].error
    assert "(4, 2, 3, 3)" in err and "flatten" in err


def test_box_quantiles_equal_numpy(mlp, batch):
    dash = nnspec.render(spec(["activations of fc1 | box"], loss=None), model=mlp, inputs=batch.args[0])
    row = view(dash).data.iloc[0]
    a = mlp.fc1(batch.args[0]).detach().double().numpy().reshape(-1)
    q = np.quantile(a, [0, 0.25, 0.5, 0.75, 1])
    assert [row["min"], row["q1"], row["median"], row["q3"], row["max"]] == pytest.approx(q.tolist())


def test_mean_along_a_dim(mlp, batch):
    dash = nnspec.render(spec(["activations of fc1 | mean(dim=0) | bar"], loss=None), model=mlp, inputs=batch.args[0])
    df = view(dash).data
    expected = mlp.fc1(batch.args[0]).detach().mean(dim=0)
    assert df["value"].to_numpy() == pytest.approx(expected.numpy(), rel=1e-6)


def test_sample_is_seeded_and_noted(mlp, batch):
    q = "activations of fc1 | sample(n=10, seed=3) | bar"
    a = nnspec.render(spec([q], loss=None), model=mlp, inputs=batch.args[0])
    b = nnspec.render(spec([q], loss=None), model=mlp, inputs=batch.args[0])
    assert view(a).data.equals(view(b).data)
    assert len(view(a).data) == 10
    act = set(mlp.fc1(batch.args[0]).detach().reshape(-1).tolist())
    assert set(view(a).data["value"]) <= act
    assert any("10 of 80 values sampled" in n for n in view(a).notes)


def test_stats_reduction_matches_on_cuda_path_formula():
    # the masked formula (used on CUDA) agrees with the CPU one
    t = torch.randn(1000)
    t[3] = float("nan")
    cpu = reduce.stats_dict(reduce.stats(t))
    masked = reduce.stats_dict(reduce._masked_stats(t, torch.isnan(t).sum().double(), torch.isinf(t).sum().double()))
    for k in cpu:
        assert masked[k] == pytest.approx(cpu[k], rel=1e-6), k


@pytest.mark.parametrize("case", ["plain", "nonfinite", "range", "constant"])
def test_sync_free_histogram_agrees(case):
    # the CUDA variant, run on the CPU: same counts as the CPU path
    torch.manual_seed(0)
    t = torch.randn(5000)
    rng = None
    if case == "nonfinite":
        t[::97] = float("nan")
        t[5] = float("inf")
    if case == "range":
        rng = (-1.0, 2.0)
    if case == "constant":
        t = torch.full((10,), 3.0)
    a, b = reduce.histogram(t, 13, rng), reduce.histogram_sync_free(t, 13, rng)
    for k in ("counts", "lo", "hi", "nan", "inf", "outside"):
        assert torch.equal(a[k].double(), b[k].double()), k


@pytest.mark.parametrize("case", ["plain", "nonfinite", "range", "constant", "empty", "all_nan", "float64", "edges"])
def test_small_tensor_path_gives_the_torch_paths_numbers(case):
    # small CPU tensors go through NumPy (reduce_small): same bins exactly, same stats
    torch.manual_seed(1)
    t = torch.randn(3000)
    rng = None
    if case == "nonfinite":
        t[::41] = float("nan")
        t[7], t[8] = float("inf"), float("-inf")
    if case == "range":
        rng = (-0.7, 1.3)
    if case == "constant":
        t = torch.full((50,), -2.5)
    if case == "empty":
        t = torch.zeros(0)
    if case == "all_nan":
        t = torch.full((9,), float("nan"))
    if case == "float64":
        t = t.double() * 1e3
    if case == "edges":  # values on bin edges: the bin is decided in float32 by both paths
        t = torch.arange(-64, 65, dtype=torch.float32) / 8
    assert reduce_small.applies(t)
    a, b = reduce.histogram(t, 16, rng), reduce.histogram_torch(t, 16, rng)
    for k in ("counts", "lo", "hi", "nan", "inf", "outside"):
        assert torch.equal(a[k].double(), b[k].double()), k
    s, u = reduce.stats_dict(reduce.stats(t)), reduce.stats_dict(reduce.stats_torch(t))
    for k in s:
        assert s[k] == pytest.approx(u[k], rel=1e-5, abs=1e-6, nan_ok=True), k
