"""Messages of the framework callbacks: every one a function, asserted by tests."""

from __future__ import annotations


def not_started(framework: str) -> str:
    return f"the nnspec callback has no run yet: {framework} has not started training with it"


def manual_optimization() -> str:
    return (
        "the nnspec Lightning callback records automatic optimization (loss from training_step, "
        "one optimizer step per step); this LightningModule sets automatic_optimization = False"
    )


def manual_optimization_hint() -> str:
    return "call rec.step(step, loss=loss) of an nnspec.Recorder yourself after manual_backward()"


def keras_backend_unsupported(backend: str) -> str:
    return f"the nnspec Keras callback records fit() on the torch and jax backends; this Keras runs on {backend}"


def keras_backend_unsupported_hint() -> str:
    return "set KERAS_BACKEND=torch or KERAS_BACKEND=jax before importing keras"
