"""What every framework callback shares: one ``Recorder`` whose hooks the callback
arms itself, at the first forward pass of a recorded step, and closes at the end of
training or when training raises (the run then says it is unfinished)."""

from __future__ import annotations

from nnspec.runs.recorder import Recorder
from nnspec.spec.load import Spec, load_spec


class Recording:
    """The spec and run of a callback; ``start`` creates the Recorder once the model is known."""

    def __init__(self, spec, run: str, record_every: int | None = None, hparams: dict | None = None):
        self.spec = spec if isinstance(spec, Spec) else load_spec(spec)  # a bad spec fails before training
        self.run = run
        self.record_every = record_every
        self.hparams = hparams
        self.recorder: Recorder | None = None

    def start(self, model, steps: int | None = None, optimizer=None, plan=None) -> Recorder:
        self.close(finished=False)  # a second fit() on the same callback: the first run is left as it was
        self.recorder = Recorder(
            self.spec,
            model,
            self.run,
            record_every=self.record_every,
            steps=steps,
            hparams=self.hparams,
            optimizer=optimizer,
            plan=plan,
            arm=False,
        )
        return self.recorder

    def arm(self, step: int) -> None:
        if self.recorder is not None:
            self.recorder.arm(step)

    def step(self, step: int, loss=None) -> None:
        if self.recorder is not None:
            self.recorder.step(step, loss=loss)

    def close(self, finished: bool = True) -> None:
        rec, self.recorder = self.recorder, None
        if rec is not None:
            rec.close(finished=finished)
