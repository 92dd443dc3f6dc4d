"""``NnspecCallback`` for Keras 3 ``Model.fit``: the spec's views over steps, recorded
at every ``record_every``-th training step (batch, counted across epochs from 0).

    with NnspecCallback("spec.yaml", run="runs/exp1") as cb:   # the with: a raising fit() closes the run
        model.fit(x, y, epochs=2, batch_size=32, callbacks=[cb])

On the torch backend everything is recorded. For the duration of ``fit`` three calls
of the model and its optimizer are wrapped (instance attributes, removed at the end):
    model.train_step      the recorder's forward hooks armed on a recorded step; an
                          exception closes the run unfinished and removes every hook
    model._compute_loss   the step's loss kept (before any loss scaling)
    optimizer.apply       gradients (``.grad`` after ``backward()``) and parameters read,
                          the step written, then the update applied
On JAX (``integrations.keras_jax``) the train step is one compiled function: for the
duration of ``fit`` ``model.train_function`` is replaced by one that runs Keras' own
compiled step on steps not recorded, and on a recorded step Keras' ``train_step``
compiled a second time with taps that hand activations, output gradients, gradients
and the loss to the host as the step runs. Everything is recorded on both backends.
"""

from __future__ import annotations

import keras

from nnspec.errors import SpecError
from nnspec.integrations import messages
from nnspec.integrations.common import Recording
from nnspec.runs.recorder import recording_plan


class NnspecCallback(keras.callbacks.Callback):
    """Records the views over steps of ``spec`` into the run directory ``run``.

    ``record_every``: else the spec's ``train.record_every``, else 10; ``hparams``: stored
    with the run beside the spec's variables."""

    def __init__(self, spec, run: str, record_every: int | None = None, hparams: dict | None = None):
        super().__init__()
        self.recording = Recording(spec, run, record_every, hparams)
        self._patches: list = []  # (object, attribute, what its instance held before, or _NONE)
        self._step = 0
        self._loss = None

    @property
    def recorder(self):
        return self.recording.recorder

    # -- fit's callbacks ---------------------------------------------------------------
    def on_train_begin(self, logs=None):
        model = self.model
        kind = keras.backend.backend()
        if kind not in ("torch", "jax"):
            raise SpecError(messages.keras_backend_unsupported(kind), None, messages.keras_backend_unsupported_hint())
        params = self.params or {}
        steps = params["epochs"] * params["steps"] if params.get("epochs") and params.get("steps") else None
        self._step, self._loss = 0, None
        rec = self.recording.start(model, steps=steps, plan=recording_plan(self.recording.spec, model))
        if kind == "jax":
            from nnspec.integrations.keras_jax import JaxSteps

            steps_fn = JaxSteps(model, rec, rec.backend, on_error=lambda: self.close(finished=False))
            self._patch(model, "train_function", steps_fn.function())
            return
        self._patch(model, "train_step", self._train_step(model.train_step))
        self._patch(model, "_compute_loss", self._compute_loss(model._compute_loss))
        self._patch(model.optimizer, "apply", self._apply(model.optimizer.apply))

    def on_train_end(self, logs=None):
        self.close(finished=True)

    # -- the with block and the end --------------------------------------------------------
    def close(self, finished: bool = True) -> None:
        """Every wrapper removed and the run closed (``finished=False``: it says it is unfinished)."""
        try:
            self._unpatch()
        finally:
            self.recording.close(finished=finished)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(finished=exc_type is None)
        return False

    # -- torch: the wrapped calls ------------------------------------------------------------
    def _train_step(self, original):
        def train_step(*args, **kwargs):
            self.recording.arm(self._step)
            self._loss = None
            try:
                return original(*args, **kwargs)
            except BaseException:
                self.close(finished=False)
                raise

        return train_step

    def _compute_loss(self, original):
        def compute_loss(*args, **kwargs):
            loss = original(*args, **kwargs)
            self._loss = loss.detach() if hasattr(loss, "detach") else loss
            return loss

        return compute_loss

    def _apply(self, original):
        def apply(*args, **kwargs):
            step, self._step = self._step, self._step + 1
            self.recording.step(step, loss=self._loss)
            return original(*args, **kwargs)

        return apply

    def _patch(self, obj, name: str, fn) -> None:
        self._patches.append((obj, name, vars(obj).get(name, _NONE)))
        object.__setattr__(obj, name, fn)

    def _unpatch(self) -> None:
        while self._patches:
            obj, name, before = self._patches.pop()
            if before is _NONE:
                object.__delattr__(obj, name)
            else:
                object.__setattr__(obj, name, before)


_NONE = object()
