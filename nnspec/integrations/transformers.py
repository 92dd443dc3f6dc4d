"""``NnspecCallback`` for the Hugging Face ``Trainer``: the spec's views over steps,
recorded at every ``record_every``-th optimizer step.

    with NnspecCallback("spec.yaml", run="runs/exp1") as cb:   # the with: a raising train() closes the run
        Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()

Steps are optimizer steps (``state.global_step``, from 0): under
``gradient_accumulation_steps=k`` one step is k micro-batches, and the gradients read
are the accumulated ones.

    on_step_begin          on a recorded step: the recorder's forward hooks armed, and one
                           on the model's own call that keeps each micro-batch's ``loss``
    on_pre_optimizer_step  gradients (after the Trainer's clipping, as the optimizer sees
                           them) and parameters read; the step written with its loss
    on_train_end           the run closed, finished
A ``TrainerCallback`` sees no exception: leaving the ``with`` block by one closes the
run unfinished and removes every hook (or call ``cb.close(finished=False)``).

The loss is the one the Trainer backpropagates: the model's ``outputs.loss`` per
micro-batch, summed when the Trainer passed ``num_items_in_batch`` (the model
normalised by the tokens of the whole step), else averaged over the micro-batches,
as ``Trainer.training_step`` does. A ``compute_loss_func`` or label smoothing makes a
loss the model does not return: then the step's loss is not recorded.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from nnspec.backends.outputs import choose
from nnspec.integrations.common import Recording


class NnspecCallback(TrainerCallback):
    """Records the views over steps of ``spec`` into the run directory ``run``.

    ``record_every``: else the spec's ``train.record_every``, else 10; ``hparams``: stored
    with the run beside the optimizer's arguments and the spec's variables."""

    def __init__(self, spec, run: str, record_every: int | None = None, hparams: dict | None = None):
        self.recording = Recording(spec, run, record_every, hparams)
        self._losses: list = []  # (loss, normalised over the whole step) per micro-batch
        self._loss_hook: Any = None  # the hook on the model's own call, on a recorded step

    @property
    def recorder(self):
        return self.recording.recorder

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        steps = state.max_steps if state.max_steps and state.max_steps > 0 else None
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer holds the torch one
        self.recording.start(model, steps=steps, optimizer=inner)

    def on_step_begin(self, args, state, control, **kwargs):
        rec = self.recording.recorder
        if rec is None or not rec.due(state.global_step):
            return
        self._losses = []
        rec.arm(state.global_step)
        if self._loss_hook is None:
            self._loss_hook = rec.backend.hooks({"": self._keep_loss})
            self._loss_hook.__enter__()

    def _keep_loss(self, args, kwargs, output) -> None:
        loss, _ = choose(output, "loss")
        if loss is not None:
            self._losses.append((loss.detach(), "num_items_in_batch" in kwargs))

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._unhook()
        losses, self._losses = self._losses, []
        self.recording.step(state.global_step, loss=_step_loss(losses))

    def on_train_end(self, args, state, control, **kwargs):
        self.close(finished=True)

    def close(self, finished: bool = True) -> None:
        """Every hook removed and the run closed (``finished=False``: it says it is unfinished)."""
        try:
            self._unhook()
        finally:
            self.recording.close(finished=finished)

    def _unhook(self) -> None:
        hook, self._loss_hook = self._loss_hook, None
        if hook is not None:
            hook.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(finished=exc_type is None)
        return False


def _step_loss(losses: list):
    """The loss the Trainer backpropagated over the step's micro-batches."""
    if not losses:
        return None
    total = sum(loss for loss, _ in losses)
    return total if all(whole for _, whole in losses) else total / len(losses)
