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


def keras_not_reachable(query: str, kind: str, backend: str) -> str:
    what = "gradients" if kind in ("grad", "output_grad", "input_grad") else "activations"
    return (
        f"view '{query}' needs the {what} of each training step, which Keras on {backend} computes "
        "inside its compiled train step, out of a callback's reach"
    )


def keras_not_reachable_hint() -> str:
    return (
        "run Keras on torch (KERAS_BACKEND=torch) to record them from fit(), or keep to weights, "
        "update_ratio and loss over steps on this backend"
    )
