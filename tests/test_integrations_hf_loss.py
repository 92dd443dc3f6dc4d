"""The Hugging Face ``Trainer`` callback records the loss the Trainer backpropagates when
the Trainer, not the model, computes it: a ``compute_loss_func``, ``label_smoothing_factor``
or a subclass's own ``compute_loss`` (the model then returns no ``loss``, its labels being
taken from it). Each is checked against a hand loop with the same loss function over the
same micro-batches, under gradient accumulation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.helpers import spec
from tests.test_integrations import _gpt2, _no_hooks, _records, _samples, _trainer_args

pytest.importorskip("transformers")

VIEWS = ["loss over steps", "grads of transformer.h.0.mlp.c_fc.weight over steps | norm"]
GRAD = "transformer.h.0.mlp.c_fc.weight"
STEPS, ACCUMULATE, BATCH = 3, 2, 2


def _tempered(outputs, labels, num_items_in_batch=None):
    """A loss the model does not compute: cross-entropy of the logits at temperature 2,
    summed over the predicted tokens and divided by the step's token count."""
    logits = outputs["logits"][:, :-1] / 2.0
    targets = labels[:, 1:]
    total = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
    return total / num_items_in_batch


def _smoothed(outputs, labels, num_items_in_batch=None):
    """What ``label_smoothing_factor=0.1`` trains on a causal LM, written with torch's own
    label smoothing: shifted labels, summed, over the step's token count."""
    logits = outputs["logits"][:, :-1]
    total = nn.functional.cross_entropy(
        logits.flatten(0, 1), labels[:, 1:].flatten(), reduction="sum", label_smoothing=0.1
    )
    return total / num_items_in_batch


def _subclass_loss(outputs, labels, num_items_in_batch=None):
    """A subclass's ``compute_loss``: the mean over this micro-batch's tokens of the squared
    log-probability of each target (the Trainer divides it by the accumulation steps)."""
    logp = outputs["logits"][:, :-1].log_softmax(-1)
    targets = labels[:, 1:]
    keep = targets.ne(-100)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked.square() * keep).sum() / keep.sum()


def _hand(samples, loss_fn, per_batch_mean: bool) -> list[dict]:
    """Plain SGD over the Trainer's micro-batches: per step the summed backpropagated loss and
    the gradient's norm."""
    model = _gpt2()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    per_step, seen = BATCH * ACCUMULATE, []
    for s in range(STEPS):
        chunk = samples[s * per_step : (s + 1) * per_step]
        tokens = sum(int(c["labels"][1:].ne(-100).sum()) for c in chunk)
        total = 0.0
        for k in range(ACCUMULATE):
            part = chunk[k * BATCH : (k + 1) * BATCH]
            ids, labels = (torch.stack([c[key] for c in part]) for key in ("input_ids", "labels"))
            outputs = model(input_ids=ids)
            loss = loss_fn(outputs, labels, num_items_in_batch=tokens)
            if per_batch_mean:
                loss = loss / ACCUMULATE
            loss.backward()
            total += float(loss.detach())
        grad = dict(model.named_parameters())[GRAD].grad.double()
        seen.append({"loss": total, "norm": float(grad.norm())})
        opt.step()
        opt.zero_grad()
    return seen


def _trainer(model, cb, tmp_path, label_smoothing=0.0, compute_loss_func=None, subclass_loss=None):
    """A Trainer over the samples in order, plain SGD, no clipping, with the loss options users pass."""
    from transformers import Trainer

    samples = _samples()

    class InOrder(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return torch.utils.data.SequentialSampler(samples)

    if subclass_loss is not None:

        class InOrder(InOrder):  # type: ignore[no-redef]
            loss_is_scaled_for_ga = False  # a per-micro-batch mean: the Trainer divides it by the steps

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                labels = inputs.pop("labels")  # the model gets none: it returns no loss
                outputs = model(**inputs)
                loss = subclass_loss(outputs, labels)
                return (loss, outputs) if return_outputs else loss

    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    args = _trainer_args(tmp_path, STEPS, BATCH, ACCUMULATE, label_smoothing_factor=label_smoothing)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return InOrder(
        model=model,
        args=args,
        train_dataset=samples,
        callbacks=[cb],
        optimizers=(opt, sched),
        compute_loss_func=compute_loss_func,
    )


def _trained(tmp_path, **options) -> dict:
    """Train through the Trainer with the callback; the run's records."""
    from nnspec.integrations.transformers import NnspecCallback

    model, run = _gpt2(), str(tmp_path / "gpt2")
    with NnspecCallback(spec(VIEWS, loss=None), run=run, record_every=1) as cb:
        trainer = _trainer(model, cb, tmp_path, **options)
        trainer.train()
    _no_hooks(model)
    assert "training_step" not in vars(trainer)  # the wrapper is gone with the run
    return _records(run)


def _check(got: dict, seen: list[dict]) -> None:
    assert got["finished"] == "1"
    assert sorted(got["loss"]) == list(range(STEPS)), got["loss"]
    for s, h in enumerate(seen):
        assert got["loss"][s] == pytest.approx(h["loss"], rel=1e-5), (s, got["loss"], seen)
        assert got["records"][(f"grad {GRAD} | norm", s, "value")] == pytest.approx(h["norm"], rel=1e-5)


def test_compute_loss_func_is_the_recorded_loss(tmp_path):
    got = _trained(tmp_path, compute_loss_func=_tempered)
    _check(got, _hand(_samples(), _tempered, per_batch_mean=False))


def test_label_smoothing_is_the_recorded_loss(tmp_path):
    got = _trained(tmp_path, label_smoothing=0.1)
    _check(got, _hand(_samples(), _smoothed, per_batch_mean=False))


def test_a_subclass_compute_loss_is_the_recorded_loss(tmp_path):
    got = _trained(tmp_path, subclass_loss=_subclass_loss)
    _check(got, _hand(_samples(), _subclass_loss, per_batch_mean=True))
