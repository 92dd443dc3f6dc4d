"""Model files without their code: weights-only files (safetensors, a sharded index,
torch state_dicts), exported programs (.pt2) and TorchScript, recognised by content."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from nnspec.backends import backend_for
from nnspec.backends.base import params_under
from nnspec.backends.files import open_file, sniff
from nnspec.backends.weights.files import natural
from nnspec.cli.main import main
from nnspec.errors import ModelError
from nnspec.execute import structure
from nnspec.pipeline import check
from tests.helpers import spec, view

safetensors = pytest.importorskip("safetensors")
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.export's own deprecations


class Small(nn.Module):
    """Conv, batch norm, a nested block and a residual add: paths as a real model has them."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, 5)
        self.block = nn.Sequential(nn.Linear(5, 5), nn.GELU())

    def forward(self, x):
        x = self.fc(self.relu(self.bn(self.conv(x))).flatten(1))
        return self.block(x) + x


def _small() -> Small:
    torch.manual_seed(0)
    m = Small().eval()
    with torch.no_grad():  # batch-norm statistics that are not the defaults
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _checkpoint(path, n_blocks=2, nan=False, dtype=torch.bfloat16):
    """A checkpoint as Hugging Face writes them: half-precision matrices, float32 norms."""
    g = torch.Generator().manual_seed(0)
    tensors = {"embed.weight": torch.randn(10, 6, generator=g).to(dtype)}
    for i in range(n_blocks):
        p = f"encoder.layer.{i}"
        tensors[f"{p}.attn.weight"] = torch.randn(6, 6, generator=g).to(dtype)
        tensors[f"{p}.attn.bias"] = torch.randn(6, generator=g)
        tensors[f"{p}.norm.weight"] = torch.ones(6)
        tensors[f"{p}.norm.running_mean"] = torch.randn(6, generator=g)
    if nan:
        tensors["encoder.layer.1.attn.weight"][2, 3] = float("nan")
    save_file(tensors, str(path))
    return tensors


def _spec(file, views, **extra):
    d = spec(views, **({"loss": None} | extra))
    d["model"] = {"file": str(file)}
    return d


# -- safetensors -----------------------------------------------------------------------------
def test_a_safetensors_file_has_its_names_as_modules_and_params(tmp_path):
    f = tmp_path / "model.safetensors"
    _checkpoint(f)
    be = backend_for(open_file(str(f)))
    assert be.name == "weights"
    mods = {m.path: m for m in be.modules()}
    assert list(mods)[:5] == ["", "embed", "encoder", "encoder.layer", "encoder.layer.0"]
    assert mods[""].type == "safetensors" and mods["encoder"].type == "group"
    assert mods["encoder.layer.0.attn"].type == "tensors" and mods["encoder.layer.0.attn"].leaf
    assert not mods["encoder.layer.0"].leaf
    params = {p.path: p for p in be.params()}
    assert params["embed.weight"].dtype == "bfloat16" and params["embed.weight"].shape == (10, 6)
    assert [params[f"encoder.layer.0.{n}"].role for n in ("attn.weight", "attn.bias", "norm.running_mean")] == [
        "weight",
        "bias",
        "other",
    ]
    assert not params["encoder.layer.0.norm.running_mean"].trainable and params["embed.weight"].layout == ()
    assert [n for n, _ in params_under(be, "encoder.layer.1")] == [  # a header keeps no order: natural order
        "attn.bias",
        "attn.weight",
        "norm.running_mean",
        "norm.weight",
    ]
    assert be.size() == 60 + 2 * (36 + 6 + 6 + 6)


def test_weight_views_equal_safe_open_reads_and_forward_views_fail_alone(tmp_path):
    f = tmp_path / "model.safetensors"
    _checkpoint(f)
    views = ["params of encoder.layer.0 | stats", "weights of embed | heatmap", "activations of *", "grads of *"]
    dash = __import__("nnspec").render(_spec(f, views, inp={"random": {"shape": [2, 6]}}, loss="sum"))
    stats = view(dash, 0).data.set_index("layer")
    with safe_open(str(f), framework="pt") as sf:
        for name in ("attn.weight", "attn.bias", "norm.weight", "norm.running_mean"):
            t = sf.get_tensor(f"encoder.layer.0.{name}").float()
            row = stats.loc[f"encoder.layer.0.{name}"]
            assert row["mean"] == pytest.approx(float(t.mean()), rel=1e-6, abs=1e-7)
            assert row["max"] == float(t.max()) and row["numel"] == t.numel()
        embed = sf.get_tensor("embed.weight").float()
    heat = view(dash, 1).data
    assert len(heat) == 60 and float(heat["value"].max()) == float(embed.max())
    for i in (2, 3):
        err = dash.views[i].error
        assert "weights backend cannot run" in err and "no code to run a forward pass" in err


def test_only_the_tensors_a_view_asks_for_are_read(tmp_path, monkeypatch):
    f = tmp_path / "big.safetensors"
    _checkpoint(f, n_blocks=50)  # 201 tensors
    read: list[str] = []
    real = safetensors.safe_open

    class Counting:
        def __init__(self, *a, **kw):
            self.f = real(*a, **kw)

        def __enter__(self):
            self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def get_tensor(self, name):
            read.append(name)
            return self.f.get_tensor(name)

    monkeypatch.setattr(safetensors, "safe_open", Counting)
    model = open_file(str(f))
    be = backend_for(model)
    assert len(be.params()) == 201 and read == []  # names, shapes and dtypes from the header alone
    dash = __import__("nnspec").render(_spec(f, ["weights of encoder.layer.7 | stats"]), model=model)
    assert list(view(dash).data["layer"]) == ["encoder.layer.7.attn.weight", "encoder.layer.7.norm.weight"]
    assert sorted(read) == ["encoder.layer.7.attn.weight", "encoder.layer.7.norm.weight"]


def test_nan_count_check_guards_a_checkpoint(tmp_path, capsys):
    import yaml

    for nan, code in ((False, 0), (True, 1)):
        f = tmp_path / f"model{int(nan)}.safetensors"
        _checkpoint(f, nan=nan)
        d = _spec(f, ["weights of * | histogram"], expect=["params of * | nan_count == 0"])
        (res,) = check(d)
        assert res.passed is (not nan)
        if nan:
            assert [(r[0], r[2]) for r in res.failures] == [("encoder.layer.1.attn.weight", 1.0)]
        path = tmp_path / f"spec{int(nan)}.yaml"
        path.write_text(yaml.safe_dump(d))
        assert main(["check", str(path)]) == code
    out = capsys.readouterr().out
    assert "FAIL  params of * | nan_count == 0: encoder.layer.1.attn.weight = 1" in out


def test_the_summary_of_a_weights_file_comes_from_its_names(tmp_path):
    f = tmp_path / "model.safetensors"
    _checkpoint(f)
    model = open_file(str(f))
    be = backend_for(model)
    assert be.structure("graph") is None  # no data flow to draw
    frame = structure.summary_frame(be.structure("summary"), model).set_index("layer")
    assert frame.loc["encoder.layer.0", "params"] == 54 and frame.loc["(model)", "params"] == 168
    assert (
        frame.loc["encoder.layer.0.attn", "type"] == "tensors"
        and frame.loc["encoder.layer.0.attn", "input_shape"] == ""
    )
    assert frame.loc["total params", "params"] == 168 and frame.loc["non-trainable params", "params"] == 12
    # the summary view of a spec with the file alone (no input: none is needed)
    (v,) = __import__("nnspec").render(_spec(f, ["summary"])).views
    assert v.error is None and v.data.set_index("layer").loc["encoder.layer.0", "params"] == 54


def test_a_sharded_index_reads_each_tensor_from_its_shard(tmp_path):
    tensors = _checkpoint(tmp_path / "whole.safetensors")
    names = list(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:4], "model-00002-of-00002.safetensors": names[4:]}
    for shard, part in shards.items():
        save_file({n: tensors[n] for n in part}, str(tmp_path / shard))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {n: s for s, part in shards.items() for n in part}}))
    assert sniff(str(index)) == "safetensors-index"
    be = backend_for(open_file(str(index)))
    assert [p.path for p in be.params()] == sorted(names, key=natural)
    for n in (names[0], names[-1]):
        assert torch.equal(be.tensor(n), tensors[n])
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(Exception, match="model-00002-of-00002.safetensors', which is not beside it"):
        open_file(str(index))


# -- torch state_dicts -------------------------------------------------------------------------
class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(7, 4)
        self.head = nn.Linear(4, 7, bias=False)
        self.head.weight = self.wte.weight


@pytest.mark.parametrize("form", ["zip", "legacy", "wrapped"])
def test_a_state_dict_file_equals_torch_load(tmp_path, form):
    m = _small()
    f = tmp_path / "ckpt.pt"
    state = m.state_dict()
    torch.save({"state_dict": state, "epoch": 3} if form == "wrapped" else state, f,
               _use_new_zipfile_serialization=form != "legacy")  # fmt: skip
    assert sniff(str(f)) == "state_dict"
    be = backend_for(open_file(str(f)))
    assert [p.path for p in be.params()] == list(state)  # buffers too: a file does not say which is which
    got = {p.path: p for p in be.params()}
    assert got["bn.num_batches_tracked"].role == "other" and got["bn.num_batches_tracked"].dtype == "int64"
    assert not got["bn.running_var"].trainable and got["conv.weight"].shape == (4, 3, 3, 3)
    ref = torch.load(f, weights_only=True)
    ref = ref["state_dict"] if form == "wrapped" else ref
    for name in state:
        assert torch.equal(be.tensor(name), ref[name])


def test_a_tied_tensor_in_a_state_dict_is_one_param_with_both_names(tmp_path):
    f = tmp_path / "tied.bin"
    torch.save(Tied().state_dict(), f)
    be = backend_for(open_file(str(f)))
    (p,) = be.params()
    assert p.names == ("wte.weight", "head.weight") and be.size() == 28


def test_a_weights_file_with_a_factory_loads_into_its_model(tmp_path):
    m = _small()
    f = tmp_path / "small.safetensors"
    save_file(m.state_dict(), str(f))
    d = _spec(f, ["activations of fc | stats", "weights of conv | stats"], inp={"random": {"shape": [2, 3, 8, 8]}})
    d["model"]["factory"] = "tests.test_files:Small"
    dash = __import__("nnspec").render(d)
    assert view(dash, 0).data is not None
    assert view(dash, 1).data["mean"][0] == pytest.approx(float(m.conv.weight.mean()), rel=1e-6)
    d["model"]["factory"] = "tests.test_files:Tied"
    with pytest.raises(ModelError, match="do not fit the factory's model: missing wte.weight, head.weight; unexpected"):
        __import__("nnspec").render(d)


# -- exported programs -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pt2(tmp_path_factory):
    m = _small()
    path = tmp_path_factory.mktemp("pt2") / "small.pt2"
    torch.export.save(torch.export.export(m, (X,)), str(path))
    return m, path


def test_a_pt2_has_the_original_paths_and_classes(pt2):
    m, path = pt2
    be = backend_for(open_file(str(path)))
    assert be.name == "exported"
    assert [x.path for x in be.modules()] == [n for n, _ in m.named_modules()]
    types = {x.path: x.type for x in be.modules()}
    assert types == {n: type(x).__name__ for n, x in m.named_modules()}
    conv = next(x for x in be.modules() if x.path == "conv")
    assert "_ConvNd" in conv.types  # bases of a torch class, so type(...) selects subclasses
    assert [p.path for p in be.params()] == [n for n, _ in m.named_parameters()]


def _stats(t: torch.Tensor) -> tuple:
    t = t.detach().float()
    return float(t.mean()), float(t.std()), float(t.min()), float(t.max())


def test_pt2_activations_and_gradients_equal_the_eager_models(pt2):
    m, path = pt2
    views = ["activations of type(Conv2d) | stats", "activations of block | stats", "grads of fc.weight | stats",
             "output_grads of bn | stats", "input_grads | stats", "summary", "graph"]  # fmt: skip
    d = _spec(path, views, loss="sum")
    dash = __import__("nnspec").render(d, inputs=X)
    seen: dict = {}
    hooks = [
        getattr(m, n).register_forward_hook(lambda mod, a, o, n=n: seen.__setitem__(n, o))
        for n in ("conv", "bn", "block")
    ]
    x = X.clone().requires_grad_(True)
    try:
        out = m(x)
    finally:
        for h in hooks:
            h.remove()
    g_fc, g_bn, g_x = torch.autograd.grad(out.sum(), [m.fc.weight, seen["bn"], x])
    expected = [("conv", seen["conv"]), ("block", seen["block"]), ("fc.weight", g_fc), ("bn", g_bn), ("input", g_x)]
    for i, (layer, t) in enumerate(expected):
        (row,) = view(dash, i).data.to_dict("records")
        assert row["layer"] == layer or i == 4
        got = (row["mean"], row["std"], row["min"], row["max"])
        assert got == pytest.approx(_stats(t), rel=1e-5, abs=1e-6), layer
    summary = view(dash, 5).data.set_index("layer")
    assert summary.loc["conv", "type"] == "Conv2d" and summary.loc["conv", "output_shape"] == "2×4×6×6"
    assert summary.loc["total params", "params"] == sum(p.numel() for p in m.parameters())
    nodes = view(dash, 6).data
    assert {"Conv2d", "BatchNorm2d", "ReLU", "Linear", "GELU"} <= set(nodes["type"])


def test_a_pt2_with_a_factory_is_refused(pt2):
    d = _spec(pt2[1], ["weights of conv | stats"])
    d["model"]["factory"] = "tests.test_files:Small"
    with pytest.raises(ModelError, match=r"is a whole program \(pt2\), code and weights: it needs no factory"):
        __import__("nnspec").render(d)


# -- TorchScript -----------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_params_graph_and_summary(tmp_path, how):
    m = _small()
    path = tmp_path / "small.ts"
    torch.jit.save(torch.jit.script(m) if how == "script" else torch.jit.trace(m, (X,)), str(path))
    assert sniff(str(path)) == "torchscript"
    model = open_file(str(path))
    be = backend_for(model)
    assert be.name == "torchscript"
    assert [(x.path, x.type) for x in be.modules()] == [(n, type(x).__name__) for n, x in m.named_modules()]
    for name, p in m.named_parameters():
        assert torch.equal(be.tensor(name), p.detach())
    views = ["weights of fc | stats", "activations of conv", "grads of *"]
    dash = __import__("nnspec").render(_spec(path, views, loss="sum"), inputs=X)
    assert view(dash, 0).data["max"][0] == pytest.approx(float(m.fc.weight.max()))
    for i in (1, 2):
        assert "torchscript backend cannot run" in dash.views[i].error
        assert "takes no forward hooks" in dash.views[i].error
    graph = be.structure("graph")
    names = [(n.kind, n.name) for n in graph.nodes]
    assert names == [("input", "input"), ("module", "conv"), ("module", "bn"), ("module", "relu"), ("module", "fc"),
                     ("module", "block.0"), ("module", "block.1"), ("op", "add"), ("output", "output")]  # fmt: skip
    ids = {name: i for i, (_, name) in enumerate(names)}
    assert (ids["fc"], ids["add"]) in graph.edges and (ids["block.1"], ids["add"]) in graph.edges  # the residual
    frame = structure.summary_frame(be.structure("summary"), model).set_index("layer")
    assert frame.loc["fc", "type"] == "Linear" and frame.loc["fc", "params"] == 725
    assert frame.loc["total params", "params"] == sum(p.numel() for p in m.parameters())
    # and as views of a rendered spec: no forward pass runs for them
    g, s = __import__("nnspec").render(_spec(path, ["graph", "summary"])).views
    assert g.error is None and s.error is None
    assert any("drawn from" in n for n in g.notes)
    assert s.data.set_index("layer").loc["fc", "params"] == 725


# -- recognised by content ------------------------------------------------------------------------
def test_files_are_recognised_by_content_not_name(tmp_path, pt2):
    renamed = tmp_path / "weights.bin"
    _checkpoint(renamed)
    zipped = tmp_path / "model.zip"
    zipped.write_bytes(pt2[1].read_bytes())
    pickled = tmp_path / "x.safetensors"
    torch.save(_small().state_dict(), pickled)
    assert [sniff(str(p)) for p in (renamed, zipped, pickled)] == ["safetensors", "pt2", "state_dict"]
    assert [backend_for(open_file(str(p))).name for p in (renamed, zipped, pickled)] == [
        "weights",
        "exported",
        "weights",
    ]
    assert open_file(str(pickled)).kind == "state_dict"


def test_nnspec_layers_lists_each_kind(tmp_path, pt2, capsys):
    import yaml

    st = tmp_path / "a.safetensors"
    _checkpoint(st)
    ts = tmp_path / "a.ts"
    torch.jit.save(torch.jit.script(_small()), str(ts))
    expected = {st: ("encoder.layer.0.attn", "tensors", "168"), pt2[1]: ("conv", "Conv2d", "875"),
                ts: ("block.0", "Linear", "875")}  # fmt: skip
    for file, (path, type_, total) in expected.items():
        f = tmp_path / "spec.yaml"
        f.write_text(yaml.safe_dump(_spec(file, ["weights of * | stats"])))
        assert main(["layers", str(f)]) == 0
        out = capsys.readouterr().out
        line = next(x for x in out.splitlines() if x.split()[:1] == [path])
        assert line.split()[1] == type_, out
        assert out.splitlines()[-1].split() == ["total", total]
