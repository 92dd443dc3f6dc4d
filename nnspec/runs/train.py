"""``train:`` in a spec: a small, deterministic training loop on the spec's
input and loss, run before the views so that they show the trained model.
It records the spec's views over steps into a run, with the same Recorder
a user puts in their own loop.

Same spec, same numbers: the shuffling uses its own seeded generator and the
loop runs inside ``torch.random.fork_rng`` seeded with ``train.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nnspec.backends import backend_for
from nnspec.capture import messages as capture_messages
from nnspec.compiler.plan import Plan
from nnspec.errors import ModelError, SpecError
from nnspec.runs import messages
from nnspec.runs.recorder import Recorder
from nnspec.spec.load import Spec, TrainSpec


@dataclass
class TrainResult:
    losses: list = field(default_factory=list)  # (step, loss) of the first and the last step
    run: str = ""  # the run it wrote

    def note(self, t: TrainSpec) -> str:
        first, last = self.losses[0][1], self.losses[-1][1]
        opt = t.optimizer
        return messages.note_trained(t.steps, opt["name"], opt.get("lr"), first, last) + f", run {self.run}"


def make_optimizer(params, options: dict, span=None):
    o = dict(options)
    name = o.pop("name")
    if "betas" in o:
        o["betas"] = tuple(o["betas"])
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    try:
        return cls(params, **o)
    except (TypeError, ValueError) as e:
        raise SpecError(messages.bad_optimizer(name, str(e)), span) from None


def train(model, data, loss_fn, spec: Spec, plan: Plan, hparams: dict | None = None) -> TrainResult:
    """Train ``model`` in place for ``train.steps`` steps, recording the plan's
    captures over steps into the run ``spec.run_dir``; the model's train/eval
    modes come back as they were. The run stores ``hparams`` (the spec's resolved
    ``vars.*``) with the optimizer's arguments, ``steps``, ``batch`` and ``seed``."""
    t = spec.train
    assert t is not None, "train() runs a spec with train:"
    if loss_fn is None:
        raise SpecError(messages.train_needs_loss(), t.span, capture_messages.needs_loss_hint())
    if loss_fn.needs_target and data.y is None:
        raise SpecError(
            capture_messages.loss_needs_target(loss_fn.name), t.span, capture_messages.loss_needs_target_hint()
        )
    be = backend_for(model)
    device = be.device()
    call = be.to_device(data.call)
    y = data.y.to(device) if isinstance(data.y, torch.Tensor) else data.y
    on_device = type(data)(call, y)
    n = on_device.x.shape[0]
    batch = min(t.batch or n, n)
    order = torch.Generator().manual_seed(t.seed)
    result = TrainResult(run=spec.run_dir)
    opt = make_optimizer(be.trainable(), t.optimizer, t.span)
    perm, pos = torch.randperm(n, generator=order), 0
    devices = [device] if device.type == "cuda" else []
    told = {**(hparams or {}), "steps": t.steps, "batch": batch, "seed": t.seed}
    rec = Recorder(
        spec,
        model,
        spec.run_dir,
        t.record_every,
        overwrite=True,
        last_step=t.steps - 1,
        plan=plan,
        hparams=told,
        optimizer=opt,
    )
    with be.guest(train=True), rec, torch.random.fork_rng(devices=devices), torch.enable_grad():
        torch.manual_seed(t.seed)
        for step in range(t.steps):
            if pos + batch > n:
                perm, pos = torch.randperm(n, generator=order), 0
            idx = perm[pos : pos + batch].to(device)
            pos += batch
            opt.zero_grad(set_to_none=True)
            try:
                rows = on_device.rows(idx)
                loss = loss_fn(model(*rows.call.args, **rows.call.kwargs), rows.y, rows.call)
                loss.backward()
            except ModelError as e:
                raise ModelError(e.message, e.span or t.span, e.hint) from e
            except Exception as e:
                raise ModelError(messages.train_step_failed(step, f"{type(e).__name__}: {e}"), t.span) from e
            rec.step(step, loss)
            opt.step()
            if step in (0, t.steps - 1):
                result.losses.append((step, float(loss.detach())))
        opt.zero_grad(set_to_none=True)
    return result
