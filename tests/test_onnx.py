"""The ONNX backend on files exported from small torch models written here: weights
are the initializers, activations are ONNX Runtime's (and the torch model's), the
graph and summary come from the file, gradient views fail alone with the reason."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import nnspec  # noqa: E402
from nnspec.backends import backend_for  # noqa: E402
from nnspec.backends.base import Call, PassFailed  # noqa: E402
from nnspec.backends.files import open_file, sniff  # noqa: E402
from nnspec.backends.onnx import messages  # noqa: E402
from nnspec.compiler.selectors import resolve_modules  # noqa: E402
from nnspec.query.parser import parse  # noqa: E402


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out)
        out += x
        return self.relu(out)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.layer1 = nn.Sequential(Block(4), Block(4))
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.layer1(self.stem(x)).mean((2, 3)))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a_proj = nn.Linear(4, 3)
        self.b_proj = nn.Linear(2, 3)

    def forward(self, a, b):
        return self.a_proj(a) * self.b_proj(b)


def _export(model, args, path, dynamo=True, **kw):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extra = {"external_data": False} if dynamo else {}
        torch.onnx.export(model.eval(), args, str(path), dynamo=dynamo, verbose=False, **extra, **kw)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    mlp, cnn, two = MLP(), CNN(), TwoInputs()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so folding shows
        for m in cnn.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x_mlp, x_cnn = torch.randn(5, 6), torch.randn(2, 3, 8, 8)
    a, b = torch.randn(5, 4), torch.randn(5, 2)
    return {
        "mlp": (mlp, x_mlp, _export(mlp, (x_mlp,), d / "mlp.onnx")),
        "cnn": (cnn, x_cnn, _export(cnn, (x_cnn,), d / "cnn.onnx")),
        "two": (two, (a, b), _export(two, (), d / "two.onnx", kwargs={"a": a, "b": b})),
        "legacy": (cnn, x_cnn, _export(cnn, (x_cnn,), d / "legacy.onnx", dynamo=False)),
        "dir": d,
    }


def _keep(seen: dict, path: str):
    """A callback that keeps the module's output under ``path``."""

    def on_call(args, kwargs, out):
        seen.setdefault(path, out.clone())

    return on_call


def _ort_outputs(path, feeds, names):
    """ONNX Runtime's own values of the tensors ``names``, computed here independently."""
    proto = onnx.load(path)
    for n in names:
        proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, sess.run(names, feeds)))


def _output_of(path, op_type, k=0):
    return [n for n in onnx.load(path).graph.node if n.op_type == op_type][k].output[0]


def test_weights_are_the_initializers(files):
    _, _, path = files["cnn"]
    be = backend_for(open_file(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    params = {p.path: p for p in be.params()}
    assert set(params) == {n for n, a in inits.items() if a.dtype.kind == "f"}
    for name, p in params.items():
        np.testing.assert_array_equal(be.tensor(name).numpy(), inits[name])
        assert p.shape == inits[name].shape and not p.trainable
    assert params["stem.weight"].layout == ("out", "in", "h", "w") and params["stem.weight"].role == "weight"
    assert params["fc.weight"].layout == ("out", "in") and params["fc.bias"].role == "bias"
    assert be.size() == sum(a.size for a in inits.values() if a.dtype.kind == "f")
    assert be.trainable() == [] and str(be.device()) == "cpu"
    assert be.first_layer() == ("Conv2d", {"channels": 3})


def test_batchnorm_folded_by_the_exporter_is_flagged(files):
    cnn, _, path = files["cnn"]
    be = backend_for(open_file(path))
    assert not any(n.op_type == "BatchNormalization" for n in onnx.load(path).graph.node)
    assert not torch.allclose(be.tensor("layer1.0.conv1.weight"), cnn.layer1[0].conv1.weight)
    notes = be.param_notes("layer1.0.conv1.weight")
    assert notes == (messages.batchnorm_folded("layer1.0.bn1", "layer1.0.conv1.weight"),)
    assert be.param_notes("layer1.0.conv2.weight") == ()
    legacy = backend_for(open_file(files["legacy"][2]))  # no metadata: a weight the exporter computed
    computed = next(p for p in legacy.params() if "onnx::" in p.names[-1] and p.role == "weight")
    assert computed.path == "layer1.0.conv1.weight" and legacy.param_notes(computed.path)


def test_modules_from_the_exporter_metadata(files):
    _, _, path = files["cnn"]
    be = backend_for(open_file(path))
    mods = {m.path: m for m in be.modules()}
    assert list(mods)[0] == "" and mods[""].type == "CNN"
    assert mods["stem"].type == "Conv2d" and mods["stem"].leaf and "Conv" in mods["stem"].types
    assert mods["layer1.0"].type == "Block" and not mods["layer1.0"].leaf
    assert mods["layer1.0.add"].type == "Add"  # the residual `+=`: a node of its own
    sel = parse("activations of type(Conv2d)").source.selector
    assert resolve_modules(sel, be) == ["stem", "layer1.0.conv2", "layer1.1.conv2"]  # conv1: folded into bn1
    legacy = backend_for(open_file(files["legacy"][2]))
    sel = parse("activations of type(Conv)").source.selector
    assert resolve_modules(sel, legacy)[:3] == ["stem", "layer1.0.conv1", "layer1.0.conv2"]


def test_activations_are_onnx_runtimes_and_the_models(files):
    mlp, x, path = files["mlp"]
    be = backend_for(open_file(path))
    seen, entered = {}, {}
    calls = {p: _keep(seen, p) for p in ("fc1", "act", "fc2")}
    done = be.forward(Call((x,)), calls, enter={"act": lambda a, k: entered.setdefault("act", a[0].clone())})
    names = [_output_of(path, "Gemm", 0), _output_of(path, "Gelu"), _output_of(path, "Gemm", 1)]
    want = _ort_outputs(path, {"x": x.numpy()}, names)
    for p, n in zip(("fc1", "act", "fc2"), names):
        np.testing.assert_array_equal(seen[p].numpy(), want[n])
    with torch.no_grad():
        h = mlp.fc1(x)
        torch.testing.assert_close(seen["fc1"], h, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(entered["act"], h, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(seen["act"], mlp.act(h), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(done.result, mlp(x), atol=1e-5, rtol=1e-5)
    assert done.ran == ["fc1", "act", "fc2", ""]


def test_cnn_activations_and_a_failing_pass(files):
    cnn, x, path = files["cnn"]
    be = backend_for(open_file(path))
    seen = {}
    paths = ("stem", "layer1.0.bn1", "layer1.0.add", "layer1.0", "fc")
    be.forward(Call((x,)), {p: _keep(seen, p) for p in paths})
    names = [_output_of(path, "Conv", 0), _output_of(path, "Conv", 1), _output_of(path, "Add", 0)]
    want = _ort_outputs(path, {"x": x.numpy()}, names)
    for p, n in zip(paths[:3], names):
        np.testing.assert_array_equal(seen[p].numpy(), want[n])
    with torch.no_grad():
        stem = cnn.stem(x)
        block = cnn.layer1[0]
        torch.testing.assert_close(seen["stem"], stem, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(seen["layer1.0.bn1"], block.bn1(block.conv1(stem)), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(seen["layer1.0"], block(stem.clone()), atol=1e-5, rtol=1e-5)
    with pytest.raises(PassFailed):
        be.forward(Call((torch.randn(2, 5, 8, 8),)))  # 5 channels into a 3-channel stem


def test_keyword_inputs_by_name(files):
    two, (a, b), path = files["two"]
    be = backend_for(open_file(path))
    got = be.forward(Call((), {"b": b, "a": a})).result
    torch.testing.assert_close(got, two(a=a, b=b).detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(be.forward(Call((a, b))).result, got)  # positional, in the graph's order
    with pytest.raises(PassFailed, match="no input 'c'"):
        be.forward(Call((), {"a": a, "c": b}))


def test_a_dashboard_from_a_renamed_file(files, tmp_path):
    cnn, x, path = files["cnn"]
    renamed = tmp_path / "model.bin"
    shutil.copy(path, renamed)
    assert sniff(str(renamed)) == "onnx"
    torch.save(x, tmp_path / "x.pt")
    spec = {
        "nnspec": 1,
        "model": {"file": str(renamed)},
        "input": {"file": str(tmp_path / "x.pt")},
        "loss": "sum",
        "views": [
            {"query": "weights of fc | heatmap"},
            {"query": "grads of *.weight | norm"},
            {"query": "activations of * | stats"},
            {"query": "graph"},
            {"query": "summary"},
        ],
    }
    dash = nnspec.render(spec, out=str(tmp_path / "out"), formats=("html",))
    weights, grads, acts, graph, summary = dash.views
    assert all(v.error is None for v in (weights, acts, graph, summary))
    assert messages.NO_BACKWARD in grads.error and "onnx backend" in grads.error
    heat = weights.data.sort_values(["row", "col"])["value"].to_numpy().reshape(5, 4)
    np.testing.assert_allclose(heat, cnn.fc.weight.detach().numpy(), atol=1e-7)
    stats = acts.data.set_index("layer")
    with torch.no_grad():
        assert stats.loc["stem", "mean"] == pytest.approx(float(cnn.stem(x).mean()), abs=1e-5)
    assert (graph.data["type"] == "Add").sum() == 2 and "Conv2d" in set(graph.data["type"])
    inits = [onnx.numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer]
    total = summary.data.set_index("layer").loc["total params", "params"]
    assert total == sum(a.size for a in inits if a.dtype.kind == "f")
    assert (tmp_path / "out" / "dashboard.html").exists()


def test_graph_has_the_residual_add_with_two_inputs(files):
    _, x, path = files["cnn"]
    be = backend_for(open_file(path))
    trace = be.forward(Call((x,)), trace=True).trace
    adds = [n for n in trace.nodes if n.type == "Add"]
    assert len(adds) == 2
    for add in adds:
        sources = [trace.nodes[a] for a, b in trace.edges if b == add.id]
        assert len(sources) == 2 and add.scope in (("layer1", "0"), ("layer1", "1"))
    assert trace.calls["layer1.0.relu"] == 2  # one ReLU module, called twice
    assert trace.module_io["fc"] == ((2, 4), (2, 5))
    assert [n.kind for n in trace.nodes][0] == "input" and trace.nodes[-1].kind == "output"


def test_state_round_trip_and_capabilities(files):
    _, x, path = files["mlp"]
    be = backend_for(open_file(path))
    state = be.state()
    before = be.forward(Call((x,))).result
    be.load_state({k: v * 2 for k, v in state.items()})
    assert not torch.allclose(be.forward(Call((x,))).result, before)
    be.load_state(state)
    torch.testing.assert_close(be.forward(Call((x,))).result, before)
    with pytest.raises(nnspec.errors.ModelError, match="do not fit"):
        be.load_state({"fc1.weight": torch.zeros(1)})
    caps = be.capabilities
    assert caps.forward and not caps.backward and not caps.attention and not caps.train
    assert caps.reason("backward") == messages.NO_BACKWARD
    assert ("activation", "fc1") in be.shapes(Call((x,)))
