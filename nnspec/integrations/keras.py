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
On JAX the train step is one compiled function: its gradients and activations never
reach Python, so views over steps of gradients or activations fail at ``on_train_begin``
(located at their query). Weights and ``update_ratio`` are read at the start of each
recorded step (``Callback.model`` brings JAX's state back into the model), and the loss
from Keras' own loss tracker (its running sum before and after the step, float32).
"""

from __future__ import annotations

import keras

from nnspec.compiler.plan import HOOK_KINDS
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
        self._tracked: tuple[float, float] | None = None  # JAX: the loss tracker's (total, count) before a step

    @property
    def recorder(self):
        return self.recording.recorder

    # -- fit's callbacks ---------------------------------------------------------------
    def on_train_begin(self, logs=None):
        model = self.model
        kind = keras.backend.backend()
        plan = recording_plan(self.recording.spec, model)
        if kind != "torch":
            _refuse_unreachable(plan, kind)
        params = self.params or {}
        steps = params["epochs"] * params["steps"] if params.get("epochs") and params.get("steps") else None
        self._step, self._loss, self._tracked = 0, None, None
        self.recording.start(model, steps=steps, plan=plan)
        if kind == "torch":
            self._patch(model, "train_step", self._train_step(model.train_step))
            self._patch(model, "_compute_loss", self._compute_loss(model._compute_loss))
            self._patch(model.optimizer, "apply", self._apply(model.optimizer.apply))

    def on_train_batch_begin(self, batch, logs=None):
        rec = self.recording.recorder
        if rec is None or keras.backend.backend() == "torch":
            return
        step = self._step
        updates = any(c.kind == "update" for c in rec.captures) and step > 0 and rec.due(step - 1)
        if not (rec.due(step) or updates):
            self._step += 1
            return
        model = self.model  # on JAX: the state of the compiled loop written back into the model
        self._tracked = _tracker(model) if rec.due(step) else None
        rec.step(step, loss_later=True)
        self._step += 1

    def on_train_batch_end(self, batch, logs=None):
        rec = self.recording.recorder
        if rec is None or self._tracked is None:
            return
        (total0, count0), self._tracked = self._tracked, None
        total, count = _tracker(self.model)
        rec.step_loss(self._step - 1, (total - total0) / (count - count0) if count > count0 else None)

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


def _refuse_unreachable(plan, kind: str) -> None:
    """The first view over steps that needs what a compiled train step keeps to itself."""
    for vp in plan.views:
        for c in vp.captures if vp.error is None and vp.query.over_steps else ():
            if c.kind in HOOK_KINDS or c.kind == "grad":
                raise SpecError(
                    messages.keras_not_reachable(vp.view.query, c.kind, kind),
                    vp.view.query_span,
                    messages.keras_not_reachable_hint(),
                )


def _tracker(model) -> tuple[float, float]:
    """(total, count) of Keras' own loss tracker: the losses of this epoch, summed by batch size."""
    tracker = next(m for m in model.metrics if m.name == "loss")
    total, count = (float(keras.ops.convert_to_numpy(v.value)) for v in tracker.variables)
    return total, count
