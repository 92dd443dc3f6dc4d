"""The Keras 3 backend, against Keras' own numbers: get_weights(), a layer's output
from a functional sub-model, gradients from torch.autograd (torch backend) and
jax.grad (JAX, in a subprocess: one Keras backend per process), count_params(),
files, graphs, channels-last images, a subclassed model, the model left as found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported; the user's choice wins
keras = pytest.importorskip("keras")

import nnspec  # noqa: E402
from nnspec.backends import backend_for  # noqa: E402
from nnspec.backends.base import Call  # noqa: E402
from nnspec.backends.files import open_file  # noqa: E402
from nnspec.backends.keras import files as kfiles  # noqa: E402
from nnspec.backends.keras import messages  # noqa: E402
from nnspec.errors import ModelError  # noqa: E402
from nnspec.execute import structure  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
on_torch = pytest.mark.skipif(keras.backend.backend() != "torch", reason="Keras runs on another backend here")
L = keras.layers


def mlp(seed: int = 0):
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential(
        [keras.Input((2,)), L.Dense(3, activation="relu", name="hidden", kernel_initializer=init),
         L.Dense(1, name="out", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1))],
    )  # fmt: skip


def resnet():
    """A residual functional CNN: Conv2D → BatchNormalization → ReLU, added to its input."""
    x = keras.Input((8, 8, 3))
    c = L.Conv2D(4, 3, name="conv", kernel_initializer=keras.initializers.GlorotUniform(seed=0))(x)
    b = L.BatchNormalization(name="bn")(c)
    r = L.ReLU(name="relu")(b)
    a = L.Add(name="add")([c, r])
    y = L.Dense(2, name="head", kernel_initializer=keras.initializers.GlorotUniform(seed=1))(L.Flatten(name="flat")(a))
    return keras.Model(x, y, name="res")


class Sub(keras.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.d1 = L.Dense(4, name="d1", kernel_initializer=keras.initializers.GlorotUniform(seed=0))
        self.d2 = L.Dense(1, name="d2", kernel_initializer=keras.initializers.GlorotUniform(seed=1))

    def call(self, x, training=False):
        return self.d2(keras.ops.tanh(self.d1(x)) * 2.0)


def snapshot(model):
    return [w.copy() for w in model.get_weights()], [(v.path, v.trainable) for v in model.variables]


def unchanged(model, before) -> None:
    weights, flags = before
    now = snapshot(model)
    assert all(np.array_equal(a, b) for a, b in zip(weights, now[0])) and flags == now[1]
    for layer in model._flatten_layers(include_self=True, recursive=True):
        assert "call" not in vars(layer)  # every wrapped call restored


def test_accepts_without_importing_for_other_models():
    from nnspec.backends.keras.backend import KerasBackend

    assert not KerasBackend.accepts(torch.nn.Linear(2, 3)) and not KerasBackend.accepts(object())
    assert backend_for(mlp()).name == "keras"  # before pytorch, though a torch-backend Keras model is an nn.Module


def test_params_roles_layouts_and_weights():
    m = mlp()
    be = backend_for(m)
    by = {p.path: p for p in be.params()}
    assert list(by) == ["hidden.kernel", "hidden.bias", "out.kernel", "out.bias"]
    assert by["hidden.kernel"].layout == ("in", "out") and by["hidden.kernel"].role == "weight"
    assert by["hidden.bias"].role == "bias" and by["hidden.kernel"].shape == (2, 3)
    for name, w in zip(by, m.get_weights()):
        assert np.array_equal(be.tensor(name).detach().cpu().numpy(), w)
    res = backend_for(resnet())
    roles = {p.path: (p.role, p.layout) for p in res.params()}
    assert roles["conv.kernel"] == ("weight", ("h", "w", "in", "out"))
    assert roles["bn.gamma"][0] == "weight" and roles["bn.beta"][0] == "bias" and roles["bn.moving_mean"][0] == "other"
    assert be.size() == m.count_params() and res.size() == resnet().count_params()
    assert [m.path for m in res.modules()] == ["", "conv", "bn", "relu", "add", "flat", "head"]


def _render(model, views, x, y=None, loss=None):
    spec = {"nnspec": 1, "views": [{"query": q} for q in views]}
    if loss:
        spec["loss"] = loss
    return nnspec.render(spec, model=model, inputs=nnspec.Inputs(args=(x,), target=y) if y is not None else x)


@on_torch
def test_activations_and_gradients_match_keras_and_autograd():
    m = resnet()
    before = snapshot(m)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype("float32"))
    y = torch.from_numpy(np.random.default_rng(1).normal(size=(5, 2)).astype("float32"))
    from nnspec.capture import run as capture
    from nnspec.compiler.compile import compile_plan
    from nnspec.inputs.batch import Batch, make_loss
    from nnspec.spec.load import load_spec

    q = ["activations of conv", "activations of bn", "grads of conv.kernel", "output_grads of relu", "input_grads"]
    plan = compile_plan(load_spec({"nnspec": 1, "loss": "mse", "views": [{"query": v} for v in q]}), m)
    got = capture.run(plan, m, Batch(Call((x,)), y), make_loss("mse", ROOT))
    vals = {c.kind + " " + c.target: got.values[c.key] for c in plan.captures}
    for name in ("conv", "bn"):
        want = keras.Model(m.input, m.get_layer(name).output)(x, training=False).detach()
        assert torch.allclose(vals[f"activation {name}"], want.permute(0, 3, 1, 2), atol=1e-6)  # channels-first
    kernel = m.get_layer("conv").kernel.value
    xg = x.clone().requires_grad_(True)
    relu = keras.Model(m.input, [m.get_layer("relu").output, m.output])
    r, out = relu(xg, training=False)
    loss = torch.nn.functional.mse_loss(out, y)
    gk, gx, gr = torch.autograd.grad(loss, [kernel, xg, r])  # autograd, independently
    assert torch.allclose(vals["grad conv.kernel"], gk, atol=1e-6)
    assert torch.allclose(vals["input_grad "], gx.permute(0, 3, 1, 2), atol=1e-6)
    assert torch.allclose(vals["output_grad relu"], gr.permute(0, 3, 1, 2), atol=1e-6)
    unchanged(m, before)


@on_torch
def test_summary_total_and_residual_graph():
    m = resnet()
    be = backend_for(m)
    done = be.forward(Call((torch.zeros(2, 8, 8, 3),)), trace=True)
    frame = structure.summary_frame(done.trace, m)
    assert int(frame[frame.layer == "total params"].params.iloc[0]) == m.count_params()
    assert int(frame[frame.layer == "non-trainable params"].params.iloc[0]) == 8  # BN's moving statistics
    nodes = {n.name: n for n in done.trace.nodes}
    into_add = [a for a, b in done.trace.edges if b == nodes["add"].id]
    assert sorted(done.trace.nodes[a].name for a in into_add) == ["conv", "relu"]
    assert nodes["conv"].shape == (2, 6, 6, 4) and not done.trace.note  # Keras' own shapes
    dash = _render(m, ["graph", "summary"], torch.zeros(2, 8, 8, 3))
    assert dash.ok, [v.error for v in dash.views]


@on_torch
def test_images_of_a_channels_last_feature_map():
    m = resnet()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32"))
    dash = _render(m, ["activations of conv[0] | channels | images", "activations of conv | stats | table"], x)
    assert dash.ok, [v.error for v in dash.views]
    from nnspec.capture import run as capture
    from nnspec.compiler.compile import compile_plan
    from nnspec.execute.gather import gather
    from nnspec.execute.transforms import run_transforms
    from nnspec.inputs.batch import Batch
    from nnspec.spec.load import load_spec

    plan = compile_plan(load_spec({"nnspec": 1, "views": [{"query": "activations of conv[0] | channels | images"}]}), m)
    vp = plan.views[0]
    data = run_transforms(gather(vp, capture.run(plan, m, Batch(Call((x,))))), vp.transforms)
    (maps,) = data.tensors.values()
    assert tuple(maps.shape) == (4, 6, 6)  # 4 maps of 6×6, not 6 tiles of 6×4


@on_torch
def test_files_round_trip(tmp_path):
    m = mlp()
    path = str(tmp_path / "m.keras")
    m.save(path)
    loaded = open_file(path)
    assert backend_for(loaded).name == "keras"
    assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), m.get_weights()))
    weights = str(tmp_path / "m.weights.h5")
    m.save_weights(weights)
    fresh = mlp(seed=7)
    assert not np.array_equal(fresh.get_weights()[0], m.get_weights()[0])
    assert open_file(weights, fresh) is fresh
    assert all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), m.get_weights()))
    with pytest.raises(ModelError) as e:
        open_file(weights)
    assert e.value.message == messages.weights_need_model(weights)
    legacy = str(tmp_path / "m.h5")
    m.save(legacy)
    assert np.array_equal(open_file(legacy).get_weights()[2], m.get_weights()[2])


@on_torch
def test_subclassed_model_and_left_as_found_when_it_raises():
    m = Sub()
    x = torch.randn(3, 5)
    m(x)
    before = snapshot(m)
    be = backend_for(m)
    assert [p.path for p in be.params()] == ["d1.kernel", "d1.bias", "d2.kernel", "d2.bias"]
    got = {}
    done = be.forward(Call((x,)), {"d1": lambda a, k, o: got.setdefault("d1", o.detach().clone())}, trace=True)
    d1 = m.d1(x)
    assert torch.allclose(got["d1"], d1) and done.ran == ["d1", "d2"]
    assert done.trace.note == messages.note_guessed_edges(1)  # tanh(d1) * 2 is code nnspec does not see
    dash = _render(m, ["graph", "activations of * | stats | table", "weights of d1 | heatmap"], x)
    assert dash.ok or "weights of" in str(dash.views[2].error)
    from nnspec.backends.base import PassFailed

    def boom(args, kwargs, output):
        raise RuntimeError("boom")

    with pytest.raises(PassFailed):
        be.forward(Call((x,)), {"d2": boom})
    with pytest.raises(PassFailed) as e:
        be.forward(Call((torch.randn(3, 7),)))
    assert "d1" not in e.value.ran
    unchanged(m, before)


def test_shipped_spec_numbers_equal_the_quickstart():
    if keras.backend.backend() not in ("torch", "jax"):
        pytest.skip("the spec is tested on torch and jax")
    dash = nnspec.render(os.path.join(ROOT, "specs", "keras.yaml"))
    assert dash.ok, [v.error for v in dash.views]
    ref = nnspec.render(os.path.join(ROOT, "specs", "quickstart.yaml"))
    keras_stats = next(v for v in dash.views if "statistics" in (v.title or "")).data
    torch_stats = next(v for v in ref.views if "statistics" in (v.title or "")).data
    assert np.allclose(keras_stats["mean"].tolist()[0], torch_stats["mean"].tolist()[1], rtol=1e-5)  # hidden = act1


JAX = textwrap.dedent(
    """
    import json, sys, numpy as np, torch, keras, jax, jax.numpy as jnp
    sys.path.insert(0, sys.argv[1])
    from tests.test_keras import resnet, snapshot, unchanged
    from nnspec.backends import backend_for
    from nnspec.backends.base import Call
    from nnspec.capture import run as capture
    from nnspec.compiler.compile import compile_plan
    from nnspec.inputs.batch import Batch, make_loss
    from nnspec.spec.load import load_spec
    m = resnet(); before = snapshot(m)
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype("float32")
    y = np.random.default_rng(1).normal(size=(5, 2)).astype("float32")
    q = ["activations of bn", "grads of conv.kernel", "grads of bn.gamma", "output_grads of relu", "input_grads",
         "graph"]
    plan = compile_plan(load_spec({"nnspec": 1, "loss": "mse", "views": [{"query": v} for v in q]}), m)
    got = capture.run(plan, m, Batch(Call((torch.from_numpy(x),)), torch.from_numpy(y)), make_loss("mse", "."))
    assert not got.errors, got.errors
    vals = {c.kind + " " + c.target: got.values[c.key] for c in plan.captures}
    want = np.asarray(keras.Model(m.input, m.get_layer("bn").output)(x, training=False))
    err = {"act": float(np.abs(vals["activation bn"].numpy() - want.transpose(0, 3, 1, 2)).max())}
    tv = [v.value for v in m.trainable_variables]; nv = [v.value for v in m.non_trainable_variables]
    names = [v.path for v in m.trainable_variables]
    def f(tv, x, d):
        return jnp.mean((m.stateless_call(tv, nv, x, training=False)[0] - y) ** 2)
    gt, gx = jax.grad(f, argnums=(0, 1))(tv, jnp.asarray(x), None)
    k = next(i for i, n in enumerate(names) if n.endswith("conv/kernel"))
    g = next(i for i, n in enumerate(names) if n.endswith("bn/gamma"))
    err["kernel"] = float(np.abs(vals["grad conv.kernel"].numpy() - np.asarray(gt[k])).max())
    err["gamma"] = float(np.abs(vals["grad bn.gamma"].numpy() - np.asarray(gt[g])).max())
    err["input"] = float(np.abs(vals["input_grad "].numpy() - np.asarray(gx).transpose(0, 3, 1, 2)).max())
    r = np.asarray(keras.Model(m.input, m.get_layer("relu").output)(x, training=False))
    conv = np.asarray(keras.Model(m.input, m.get_layer("conv").output)(x, training=False))
    def g_r(r):  # the rest of the network after relu, by hand: add, flatten, head
        a = conv + r
        h = m.get_layer("head")
        return jnp.mean((jnp.reshape(a, (5, -1)) @ h.kernel.value + h.bias.value - y) ** 2)
    err["relu"] = float(np.abs(vals["output_grad relu"].numpy() - np.asarray(jax.grad(g_r)(r)).transpose(0, 3, 1, 2)).max())
    trace = vals["trace "]
    add = next(n for n in trace.nodes if n.name == "add")
    err["add_in"] = sorted(trace.nodes[a].name for a, b in trace.edges if b == add.id)
    unchanged(m, before)
    print(json.dumps(err))
    """
)


def test_jax_backend_against_jax_grad():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", JAX, ROOT], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    err = json.loads(done.stdout.strip().splitlines()[-1])
    assert err.pop("add_in") == ["conv", "relu"]
    assert max(err.values()) < 1e-5, err


def test_no_keras_backend_says_how_to_choose(tmp_path):
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorflow is installed: Keras starts without KERAS_BACKEND")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"} | {"KERAS_HOME": str(tmp_path)}
    code = "from nnspec.backends.keras.files import import_keras\nimport_keras()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode != 0 and "KERAS_BACKEND=torch" in done.stderr
    assert kfiles.import_keras() is keras


def test_a_conv_kernel_draws_one_filter_per_output_and_input_channel():
    """Keras keeps a Conv2D kernel as (h, w, in, out); `images` tiles it as torch's (out, in, h, w)."""
    m = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(4, 3, name="conv")])
    k = m.get_weights()[0]  # (3, 3, 2, 4)
    (v,) = nnspec.render({"nnspec": 1, "views": [{"query": "weights of conv | images"}]}, model=m).views
    assert v.error is None and any("(out, in, h, w)" in n for n in v.notes)
    assert sorted(set(v.data["tile"])) == [f"{o},{i}" for o in range(4) for i in range(2)]
    for o, i in ((0, 0), (3, 1), (2, 0)):
        tile = v.data[v.data["tile"] == f"{o},{i}"]
        got = tile.pivot(index="row", columns="col", values="value").to_numpy()
        assert got == pytest.approx(k[:, :, i, o], abs=1e-6)
