"""Messages of the ONNX backend: every one a function, asserted by tests."""

from __future__ import annotations

from nnspec.text import names

NO_BACKWARD = "ONNX Runtime runs inference only: open the model it was exported from (its factory) for gradients"
NO_ATTENTION = (
    "an ONNX graph has no attention modules to ask for their weights: "
    "open the model it was exported from (its factory) for attention views"
)
NO_TRAIN = "ONNX Runtime runs inference only: train the model it was exported from (its factory)"


def no_gradients() -> str:
    return NO_BACKWARD


def missing_input(name: str, inputs) -> str:
    return f"the ONNX graph needs input '{name}' and the call has none (the graph's inputs: {names(inputs)})"


def unknown_input(name: str, inputs) -> str:
    return f"the ONNX graph has no input '{name}' (its inputs: {names(inputs)})"


def too_many_inputs(given: int, inputs) -> str:
    return f"{given} positional inputs for an ONNX graph with {len(inputs)} ({names(inputs)})"


def no_such_tensor(name: str) -> str:
    return f"the ONNX file has no initializer named '{name}'"


def state_mismatch(missing, unexpected, shapes) -> str:
    parts = []
    if missing:
        parts.append(f"missing {names(missing)}")
    if unexpected:
        parts.append(f"not in the file {names(unexpected)}")
    for name, got, want in shapes:
        parts.append(f"{name} is {tuple(got)} where the file has {tuple(want)}")
    return "the weights do not fit the ONNX file's initializers: " + "; ".join(parts)


def batchnorm_folded(module: str, into: str) -> str:
    return (
        f"the exporter folded BatchNorm {module} into the convolution before it: "
        f"{into} in the file holds the BatchNorm's scale and shift, it is not the module's own"
    )


def computed_weight(name: str, module: str) -> str:
    return (
        f"{name} is a tensor the exporter computed for {module} (a folded BatchNorm?), "
        "not necessarily the module's own weight"
    )
