"""``NnspecCallback`` for the Hugging Face ``Trainer``: the spec's views over steps,
recorded at every ``record_every``-th optimizer step.

    with NnspecCallback("spec.yaml", run="runs/exp1") as cb:   # the with: a raising train() closes the run
        Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()

Steps are optimizer steps (``state.global_step``, from 0): under
``gradient_accumulation_steps=k`` one step is k micro-batches, and the gradients read
are the accumulated ones.

    on_train_begin         the run opened; the Trainer's ``training_step`` wrapped to keep its loss
    on_step_begin          on a recorded step: the recorder's forward hooks armed
    on_pre_optimizer_step  gradients (after the Trainer's clipping, as the optimizer sees
                           them) and parameters read; the step written with its loss
    on_train_end           the run closed, finished; ``training_step`` as it was
A ``TrainerCallback`` sees no exception: leaving the ``with`` block by one closes the
run unfinished and removes every hook and wrapper (or call ``cb.close(finished=False)``).

The loss is the one the Trainer backpropagates: what ``Trainer.training_step`` returns
for each micro-batch (``compute_loss``'s loss, whether the model's ``outputs.loss``, a
``compute_loss_func``'s, label smoothing's or a subclass's own, divided by the
micro-batches unless it was normalised over the whole step), summed over the step's
micro-batches, which is what the Trainer adds to the loss it logs. A callback gets no
handle on its Trainer, so ``on_train_begin`` finds the ``Trainer`` running it among its
callers (the one whose callbacks hold this one); driven by anything else, the
callback records no loss.
"""

from __future__ import annotations

import sys
from typing import Any

from transformers import Trainer, TrainerCallback

from nnspec.integrations.common import Recording


class NnspecCallback(TrainerCallback):
    """Records the views over steps of ``spec`` into the run directory ``run``.

    ``record_every``: else the spec's ``train.record_every``, else 10; ``hparams``: stored
    with the run beside the optimizer's arguments and the spec's variables."""

    def __init__(self, spec, run: str, record_every: int | None = None, hparams: dict | None = None):
        self.recording = Recording(spec, run, record_every, hparams)
        self._losses: list | None = None  # training_step's losses of this step's micro-batches; None: not recorded
        self._wrapped: _WrappedStep | None = None

    @property
    def recorder(self):
        return self.recording.recorder

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        steps = state.max_steps if state.max_steps and state.max_steps > 0 else None
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer holds the torch one
        self.recording.start(model, steps=steps, optimizer=inner)
        self._unwrap()
        trainer = _calling_trainer(self)
        if trainer is not None:
            self._wrapped = _WrappedStep(trainer, self._keep_loss)

    def on_step_begin(self, args, state, control, **kwargs):
        rec = self.recording.recorder
        self._losses = None
        if rec is None or not rec.due(state.global_step):
            return
        self._losses = []
        rec.arm(state.global_step)

    def _keep_loss(self, loss) -> None:
        """One micro-batch's backpropagated loss (``training_step``'s value), on a recorded step."""
        if self._losses is not None and loss is not None:
            self._losses.append(loss.detach())

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        losses, self._losses = self._losses, None
        self.recording.step(state.global_step, loss=sum(losses) if losses else None)

    def on_train_end(self, args, state, control, **kwargs):
        self.close(finished=True)

    def close(self, finished: bool = True) -> None:
        """``training_step`` as it was, every hook removed and the run closed (``finished=False``:
        it says it is unfinished)."""
        try:
            self._unwrap()
        finally:
            self._losses = None
            self.recording.close(finished=finished)

    def _unwrap(self) -> None:
        wrapped, self._wrapped = self._wrapped, None
        if wrapped is not None:
            wrapped.restore()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(finished=exc_type is None)
        return False


class _WrappedStep:
    """``trainer.training_step`` replaced, on that instance only, by one that hands each
    micro-batch's returned loss to ``keep``; ``restore`` puts back what was there."""

    def __init__(self, trainer: Trainer, keep):
        self.trainer = trainer
        self.had_own = "training_step" in vars(trainer)  # an instance attribute already (someone patched it)
        self.own: Any = vars(trainer).get("training_step")
        inner = trainer.training_step

        def training_step(*args, **kwargs):
            loss = inner(*args, **kwargs)
            keep(loss)
            return loss

        self.wrapper = training_step
        trainer.training_step = training_step  # type: ignore[method-assign]

    def restore(self) -> None:
        if vars(self.trainer).get("training_step") is not self.wrapper:
            return  # replaced again since: leave the newer one
        if self.had_own:
            self.trainer.training_step = self.own  # type: ignore[method-assign]
        else:
            del self.trainer.training_step


def _calling_trainer(callback) -> Trainer | None:
    """The ``Trainer`` among the callers whose callbacks include ``callback``, else None."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Trainer) and any(
            cb is callback for cb in getattr(candidate.callback_handler, "callbacks", ())
        ):
            return candidate
        frame = frame.f_back
    return None
