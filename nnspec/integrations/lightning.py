"""``NnspecCallback`` for PyTorch Lightning (``lightning``): the spec's views over steps,
recorded at every ``record_every``-th optimizer step of ``Trainer.fit``.

    trainer = lightning.Trainer(max_steps=100, callbacks=[NnspecCallback("spec.yaml", run="runs/exp1")])

Hooks, in Lightning's order for one optimizer step (automatic optimization):
    on_train_batch_start    the recorder's forward hooks armed, on recorded steps only
    on_before_backward      the loss of each micro-batch kept (divided by accumulate_grad_batches
                            by Lightning, so their sum is the step's mean loss)
    on_before_optimizer_step  gradients (before clipping) and parameters read, the step written
    on_train_end / on_exception  the run closed: finished, or unfinished; no hook left
Names in the spec are those of the LightningModule (``self.net = ...`` → ``net.fc1``).
"""

from __future__ import annotations

import math

from lightning.pytorch.callbacks import Callback

from nnspec.errors import SpecError
from nnspec.integrations import messages
from nnspec.integrations.common import Recording


class NnspecCallback(Callback):
    """Records the views over steps of ``spec`` into the run directory ``run``.

    ``record_every``: else the spec's ``train.record_every``, else 10; ``hparams``: stored
    with the run beside the optimizer's arguments and the spec's variables."""

    def __init__(self, spec, run: str, record_every: int | None = None, hparams: dict | None = None):
        self.recording = Recording(spec, run, record_every, hparams)
        self._loss = None  # the losses of this optimizer step's micro-batches, summed

    @property
    def recorder(self):
        return self.recording.recorder

    def on_train_start(self, trainer, pl_module) -> None:
        if not pl_module.automatic_optimization:
            raise SpecError(messages.manual_optimization(), None, messages.manual_optimization_hint())
        steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        if steps is None:
            estimated = trainer.estimated_stepping_batches
            steps = int(estimated) if math.isfinite(estimated) else None
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        self._loss = None
        self.recording.start(pl_module, steps=steps, optimizer=optimizer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.recording.arm(trainer.global_step)  # global_step counts optimizer steps

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        loss = loss.detach()
        self._loss = loss if self._loss is None else self._loss + loss

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        loss, self._loss = self._loss, None
        self.recording.step(trainer.global_step, loss=loss)

    def on_train_end(self, trainer, pl_module) -> None:
        self.recording.close(finished=True)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.recording.close(finished=False)
