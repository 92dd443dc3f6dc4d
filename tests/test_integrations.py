"""The framework callbacks (nnspec.integrations): each trains a tiny model through its
framework's own loop, and the stored records are checked against a hand-written loop
over the same data from the same weights; the model is left as found after training
ends and after a training step raises."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from nnspec.errors import SpecError
from nnspec.runs.store import Run
from tests.conftest import ROOT
from tests.helpers import spec

VIEWS = [
    "loss over steps",
    "grads of * over steps | norm",
    "weights of * over steps | stats",
    "activations of act over steps | stats",
    "weights of fc1 over steps | update_ratio",
]


def _data(n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _records(run: str) -> dict:
    """{(series, step, statistic): value} of everything the run stored, and {step: loss}."""
    r = Run(run)
    try:
        frame = r.frame()
        out = {
            (row.series, row.step, "value" if row.series.endswith(f"| {row.statistic}") else row.statistic): row.value
            for row in frame.itertuples()
            if row.series != "loss"
        }
        return {"records": out, "loss": dict(r.losses()), "finished": r.meta.get("finished")}
    finally:
        r.close()


def _hand_torch(model, batches, lr, seen_acts=("act",)):
    """Plain SGD with autograd: per step the loss, each gradient, each weight, each activation."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    seen = []
    for xb, yb in batches:
        acts = {}
        handles = [
            getattr(model, name).register_forward_hook(
                lambda m, a, o, name=name, acts=acts: acts.update({name: o.detach()})
            )
            for name in seen_acts
        ]
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        for h in handles:
            h.remove()
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        opt.step()
        opt.zero_grad()
        after = {n: p.detach().clone() for n, p in model.named_parameters()}
        seen.append({"loss": float(loss.detach()), "grads": grads, "params": params, "after": after, "acts": acts})
    return seen


def _check(got: dict, seen: list, steps, params, acts=("act",), rel=1e-6) -> None:
    """The run's loss, gradient norms, weight stats, activation stats and update ratios
    equal the hand loop's at exactly the recorded steps."""
    records = got["records"]
    assert sorted(got["loss"]) == list(steps)
    recorded = sorted({s for (_, s, _) in records if not _[0].startswith("update")})
    assert recorded == list(steps)
    for s in steps:
        h = seen[s]
        assert got["loss"][s] == pytest.approx(h["loss"], rel=rel, abs=1e-7)
        for name in params:
            g, w = h["grads"][name].double(), h["params"][name].double()
            assert records[(f"grad {name} | norm", s, "value")] == pytest.approx(float(g.norm()), rel=rel, abs=1e-7)
            if name.endswith("weight"):  # weights of *: the weights, not the biases
                assert records[(f"param {name} | stats", s, "mean")] == pytest.approx(float(w.mean()), rel=rel)
                assert records[(f"param {name} | stats", s, "max")] == pytest.approx(float(w.max()), rel=rel)
                assert records[(f"param {name} | stats", s, "std")] == pytest.approx(float(w.std()), rel=1e-5)
        for name in acts:
            a = h["acts"][name].double()
            assert records[(f"activation {name} | stats", s, "mean")] == pytest.approx(float(a.mean()), rel=rel)
            assert records[(f"activation {name} | stats", s, "std")] == pytest.approx(float(a.std()), rel=1e-5)
        w, w2 = h["params"]["fc1.weight"].double(), h["after"]["fc1.weight"].double()
        want = float((w2 - w).norm() / w.norm())
        assert records[("update fc1.weight | update_ratio", s, "value")] == pytest.approx(want, rel=1e-5)


def _no_hooks(model) -> None:
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks, m
        assert not getattr(m, "_forward_hooks_with_kwargs", None)


def _flags(model):
    return [(n, p.requires_grad) for n, p in model.named_parameters()], model.training


PARAMS = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")


def test_importing_nnspec_imports_no_framework():
    code = (
        "import sys, nnspec, nnspec.integrations; "
        "print(sorted(m for m in ('lightning', 'transformers', 'keras', 'jax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


# -- Lightning -----------------------------------------------------------------------------------
L = pytest.importorskip("lightning")


class Lit(L.LightningModule):
    def __init__(self, fail_at: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.act, self.fc2 = nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)
        self.fail_at = fail_at

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))

    def training_step(self, batch, i):
        if self.global_step == self.fail_at:
            raise RuntimeError("the data loader broke")
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(cb, steps=6, **kw):
    return L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[cb],
        **kw,
    )


def _loader(x, y, batch=4):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)


def test_lightning_records_what_a_hand_loop_gives(tmp_path):
    from nnspec.integrations.lightning import NnspecCallback

    x, y = _data()
    model = Lit()
    hand = nn.Sequential()
    hand.fc1, hand.act, hand.fc2 = copy.deepcopy(model.fc1), nn.ReLU(), copy.deepcopy(model.fc2)
    before = _flags(model)
    run = str(tmp_path / "lit")
    cb = NnspecCallback(spec(VIEWS, loss="cross_entropy", train={"steps": 6, "record_every": 2}), run=run)
    hooked = {}

    class Watch(L.Callback):  # after nnspec's: are hooks on for this step's forward?
        def on_train_batch_start(self, trainer, pl_module, batch, i):
            hooked[trainer.global_step] = any(m._forward_hooks for m in pl_module.modules())

    trainer = _trainer(cb)
    trainer.callbacks.append(Watch())
    trainer.fit(model, _loader(x, y))
    assert hooked == {0: True, 1: False, 2: True, 3: False, 4: True, 5: False}  # record_every from the spec
    seen = _hand_torch(hand, [(x[i : i + 4], y[i : i + 4]) for i in range(0, 24, 4)], lr=0.1)
    got = _records(run)
    assert got["finished"] == "1"
    _check(got, seen, [0, 2, 4], PARAMS)
    _no_hooks(model)
    assert _flags(model)[0] == before[0]


def test_lightning_counts_optimizer_steps_under_accumulation(tmp_path):
    from nnspec.integrations.lightning import NnspecCallback

    x, y = _data()
    model = Lit()
    hand = nn.Sequential()
    hand.fc1, hand.act, hand.fc2 = copy.deepcopy(model.fc1), nn.ReLU(), copy.deepcopy(model.fc2)
    run = str(tmp_path / "acc")
    cb = NnspecCallback(spec(VIEWS[:2], loss="cross_entropy"), run=run, record_every=1)
    _trainer(cb, steps=3, accumulate_grad_batches=2).fit(model, _loader(x, y))
    # two micro-batches of 4 with equal weight = one batch of 8 under a mean loss
    seen = _hand_torch(hand, [(x[i : i + 8], y[i : i + 8]) for i in range(0, 24, 8)], lr=0.1, seen_acts=())
    got = _records(run)
    assert sorted(got["loss"]) == [0, 1, 2]
    for s in range(3):
        assert got["loss"][s] == pytest.approx(seen[s]["loss"], rel=1e-6)
        for name in PARAMS:
            want = float(seen[s]["grads"][name].double().norm())
            assert got["records"][(f"grad {name} | norm", s, "value")] == pytest.approx(want, rel=1e-5)


def test_lightning_refuses_manual_optimization(tmp_path):
    from nnspec.integrations import messages
    from nnspec.integrations.lightning import NnspecCallback

    model = Lit()
    model.automatic_optimization = False
    cb = NnspecCallback(spec(VIEWS, loss="cross_entropy"), run=str(tmp_path / "manual"))
    with pytest.raises(SpecError) as e:
        _trainer(cb).fit(model, _loader(*_data()))
    assert e.value.message == messages.manual_optimization() and not os.path.exists(tmp_path / "manual")
    _no_hooks(model)


def test_lightning_leaves_the_model_as_found_when_a_step_raises(tmp_path):
    from nnspec.integrations.lightning import NnspecCallback

    x, y = _data()
    model = Lit(fail_at=3)
    before = _flags(model)
    run = str(tmp_path / "broken")
    cb = NnspecCallback(spec(VIEWS, loss="cross_entropy"), run=run, record_every=1)
    with pytest.raises(RuntimeError, match="data loader broke"):
        _trainer(cb).fit(model, _loader(x, y))
    _no_hooks(model)
    assert _flags(model)[0] == before[0] and cb.recorder is None
    got = _records(run)
    assert got["finished"] == "0" and sorted(got["loss"]) == [0, 1, 2]


# -- Hugging Face Trainer ------------------------------------------------------------------------


def _gpt2():
    from tests.hf_models import gpt2

    model = gpt2()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0  # the Trainer trains in train mode: no randomness for the hand loop to match
    return model


def _hf_trainer(model, cb, tmp_path, samples, steps, accumulate, fail_at=None):
    from transformers import Trainer

    class InOrder(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return torch.utils.data.SequentialSampler(samples)

        def training_step(self, model, inputs, *args, **kwargs):
            if self.state.global_step == fail_at:
                raise RuntimeError("out of memory, say")
            return super().training_step(model, inputs, *args, **kwargs)

    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    args = _trainer_args(tmp_path, steps, 2, accumulate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return InOrder(model=model, args=args, train_dataset=samples, callbacks=[cb], optimizers=(opt, sched))


def _trainer_args(tmp_path, steps: int, batch: int, accumulate: int, **more):
    """TrainingArguments of the tests' Trainers: CPU, no clipping (the hand loops do none),
    no logging, saving or reporting."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=steps,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulate,
        max_grad_norm=0.0,
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **more,
    )


def _samples(n=12, seq=8):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 96, (n, seq), generator=g)
    labels = ids.clone()
    labels[:, 0] = -100  # the Trainer's token count is then the loss's, whether it shifts the labels or not
    return [{"input_ids": ids[i], "labels": labels[i]} for i in range(n)]


HF_VIEWS = [
    "loss over steps",
    "grads of transformer.h.0.mlp.c_fc.weight over steps | norm",
    "grads of transformer.wte.weight over steps | norm",  # tied to lm_head: both uses
    "weights of transformer.h.1.attn.c_attn.weight over steps | stats",
    "activations of transformer.h.0.mlp.act over steps | stats",
]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_trainer_records_optimizer_steps_with_the_accumulated_grads(tmp_path, accumulate):
    pytest.importorskip("transformers")
    from nnspec.integrations.transformers import NnspecCallback

    samples, steps = _samples(), 3
    model, hand = _gpt2(), _gpt2()
    before = _flags(model)
    run = str(tmp_path / "gpt2")
    with NnspecCallback(spec(HF_VIEWS, loss=None), run=run, record_every=1) as cb:
        _hf_trainer(model, cb, tmp_path, samples, steps, accumulate).train()
    got = _records(run)
    assert got["finished"] == "1" and sorted(got["loss"]) == list(range(steps))
    r = Run(run)
    assert r.hparams["optimizer"] == "SGD" and r.hparams["optimizer.lr"] == 0.5
    r.close()

    opt = torch.optim.SGD(hand.parameters(), lr=0.5)
    hand.train()
    per_step = 2 * accumulate
    for s in range(steps):
        acts, losses = [], []
        h = hand.transformer.h[0].mlp.act.register_forward_hook(
            lambda m, a, o, acts=acts: acts.append(o.detach()) and None
        )
        for k in range(accumulate):
            chunk = samples[s * per_step + 2 * k : s * per_step + 2 * k + 2]
            ids, labels = (torch.stack([c[k] for c in chunk]) for k in ("input_ids", "labels"))
            loss = hand(input_ids=ids, labels=labels).loss  # equal token counts: the step's mean is the mean of means
            (loss / accumulate).backward()
            losses.append(float(loss.detach()))
        h.remove()
        records = got["records"]
        assert got["loss"][s] == pytest.approx(sum(losses) / accumulate, rel=1e-6), (s, got["loss"], losses)
        for name in ("transformer.h.0.mlp.c_fc.weight", "transformer.wte.weight"):
            g = dict(hand.named_parameters(remove_duplicate=False))[name].grad.double()
            assert records[(f"grad {name} | norm", s, "value")] == pytest.approx(float(g.norm()), rel=1e-5)
        w = hand.transformer.h[1].attn.c_attn.weight.detach().double()
        key = "param transformer.h.1.attn.c_attn.weight | stats"
        assert records[(key, s, "mean")] == pytest.approx(float(w.mean()), rel=1e-6)
        assert records[(key, s, "std")] == pytest.approx(float(w.std()), rel=1e-6)
        a = acts[0].double()  # the first micro-batch's forward is the step's
        assert records[("activation transformer.h.0.mlp.act | stats", s, "mean")] == pytest.approx(
            float(a.mean()), rel=1e-5
        )
        opt.step()
        opt.zero_grad()
    _no_hooks(model)
    assert _flags(model)[0] == before[0]


def test_trainer_hooks_only_recorded_steps(tmp_path):
    pytest.importorskip("transformers")
    from transformers import TrainerCallback

    from nnspec.integrations.transformers import NnspecCallback

    model, hooked = _gpt2(), {}

    class Watch(TrainerCallback):  # after nnspec's: are hooks on for this step's forward?
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            hooked[state.global_step] = any(m._forward_hooks for m in model.modules())

    run = str(tmp_path / "gpt2")
    with NnspecCallback(spec(HF_VIEWS, loss=None), run=run, record_every=2) as cb:
        trainer = _hf_trainer(model, cb, tmp_path, _samples(), 4, 1)
        trainer.add_callback(Watch())
        trainer.train()
    assert hooked == {0: True, 1: False, 2: True, 3: False}
    assert sorted(_records(run)["loss"]) == [0, 2]
    _no_hooks(model)


def test_trainer_raising_leaves_no_hook_and_an_unfinished_run(tmp_path):
    pytest.importorskip("transformers")
    from nnspec.integrations.transformers import NnspecCallback

    model = _gpt2()
    before = [(n, p.requires_grad) for n, p in model.named_parameters()]
    run = str(tmp_path / "gpt2")
    with pytest.raises(RuntimeError, match="out of memory"):
        with NnspecCallback(spec(HF_VIEWS, loss=None), run=run, record_every=1) as cb:
            _hf_trainer(model, cb, tmp_path, _samples(), 4, 1, fail_at=2).train()
    _no_hooks(model)
    assert [(n, p.requires_grad) for n, p in model.named_parameters()] == before and cb.recorder is None
    got = _records(run)
    assert got["finished"] == "0" and sorted(got["loss"]) == [0, 1]


# -- Keras -----------------------------------------------------------------------------------------
keras = pytest.importorskip("keras")
on_torch = pytest.mark.skipif(keras.backend.backend() != "torch", reason="Keras runs on another backend here")
KERAS_VIEWS = [
    "loss over steps",
    "grads of * over steps | norm",
    "weights of * over steps | stats",
    "activations of hidden over steps | stats",
]


def _keras_mlp():
    init = keras.initializers.GlorotUniform
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(5, activation="relu", name="hidden", kernel_initializer=init(seed=0)),
         keras.layers.Dense(3, name="out", kernel_initializer=init(seed=1))],
    )  # fmt: skip


def _keras_state(model):
    return [w.copy() for w in model.get_weights()], [(v.path, v.trainable) for v in model.variables]


@on_torch
def test_keras_fit_on_torch_records_what_a_hand_loop_gives(tmp_path):
    from nnspec.integrations.keras import NnspecCallback

    x, y = (t.numpy() for t in _data())
    y = np.eye(3, dtype="float32")[y]
    model = _keras_mlp()
    hand = _keras_mlp()
    hand.set_weights(model.get_weights())
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    run = str(tmp_path / "keras")
    with NnspecCallback(spec(KERAS_VIEWS, loss=None), run=run, record_every=2) as cb:
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[cb])
    got = _records(run)
    assert got["finished"] == "1" and sorted(got["loss"]) == [0, 2, 4, 6, 8, 10]  # 6 batches an epoch, 2 epochs

    names = ["hidden.kernel", "hidden.bias", "out.kernel", "out.bias"]
    for s in range(12):
        i = (s % 6) * 4
        acts = []
        layer = hand.get_layer("hidden")
        original = layer.call
        object.__setattr__(layer, "call", lambda *a, _o=original, _a=acts, **k: _a.append(_o(*a, **k)) or _a[-1])
        pred = hand(torch.tensor(x[i : i + 4]), training=True)
        object.__delattr__(layer, "call")
        loss = torch.mean((pred - torch.tensor(y[i : i + 4])) ** 2)
        loss.backward()
        values = [v.value for v in hand.trainable_weights]
        if s % 2 == 0:
            records = got["records"]
            assert got["loss"][s] == pytest.approx(float(loss), rel=1e-6)
            for name, v in zip(names, values):
                g, w = v.grad.double(), v.detach().double()
                assert records[(f"grad {name} | norm", s, "value")] == pytest.approx(float(g.norm()), rel=1e-5)
                if name.endswith("kernel"):  # weights of *: kernels, not biases
                    assert records[(f"param {name} | stats", s, "mean")] == pytest.approx(float(w.mean()), rel=1e-6)
            a = acts[0].detach().double()
            assert records[("activation hidden | stats", s, "mean")] == pytest.approx(float(a.mean()), rel=1e-6)
        with torch.no_grad():
            for v in values:
                v -= 0.1 * v.grad
                v.grad = None
    for layer in model._flatten_layers(include_self=True, recursive=True):
        assert "call" not in vars(layer)
    assert not {"train_step", "_compute_loss"} & set(vars(model)) and "apply" not in vars(model.optimizer)


@on_torch
def test_keras_fit_raising_leaves_the_model_as_found(tmp_path):
    from nnspec.integrations.keras import NnspecCallback

    x, y = (t.numpy() for t in _data())
    y = np.eye(3, dtype="float32")[y]
    model = _keras_mlp()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")

    class Breaks(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 3:
                object.__setattr__(model.get_layer("out"), "call", lambda *a, **k: 1 / 0)

    run = str(tmp_path / "keras")
    with pytest.raises(ZeroDivisionError):
        cb = NnspecCallback(spec(KERAS_VIEWS, loss=None), run=run, record_every=1)
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[cb, Breaks()])
    object.__delattr__(model.get_layer("out"), "call")
    before = _keras_state(model)
    for layer in model._flatten_layers(include_self=True, recursive=True):
        assert "call" not in vars(layer)
    assert not {"train_step", "_compute_loss"} & set(vars(model)) and "apply" not in vars(model.optimizer)
    assert all(not v.value.requires_grad or v.trainable for v in model.variables)
    assert _keras_state(model)[1] == before[1]
    got = _records(run)
    assert got["finished"] == "0" and sorted(got["loss"]) == [0, 1, 2]
