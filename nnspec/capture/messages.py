"""Messages of running the forward and backward passes: every one a function, kept beside the stage that raises it.

Tests assert against these functions, not against copied strings.
"""

from __future__ import annotations

from nnspec.text import names


def forward_failed(why: str, ran) -> str:
    done = names(ran, 6) if ran else "none"
    return f"the model's forward pass failed: {why} (modules that ran: {done})"


def needs_loss(what: str) -> str:
    return f"{what} need a loss to differentiate, and the spec has no 'loss'"


def needs_loss_hint() -> str:
    return "add 'loss: sum' (gradient of the output's sum) or 'loss: mse' with a target"


def loss_needs_target(name: str) -> str:
    return f"loss '{name}' needs a target, and the input has none"


def loss_needs_target_hint() -> str:
    return "use 'loss: sum', or an input with a target (dataset with 'target', or a file with 'y')"


def attention_not_called(path: str) -> str:
    return f"{path} was not called in the forward pass, so it has no attention weights"


def index_out_of_range(layer: str, shape, index: str) -> str:
    return f"index {index} does not fit {layer} of shape {tuple(shape)}"


def frozen_no_grad(layer: str) -> str:
    return f"{layer} got no gradient (it is not on the loss's path)"


def note_first_output(layer: str, count: int) -> str:
    return f"{layer} returns {count} tensors; the first is shown"


def no_input_grad(dtype: str) -> str:
    return f"input_grads needs a floating-point input; this input is {dtype} (token ids have no gradient)"


def backward_failed(why: str) -> str:
    return f"the backward pass failed: {why}"


def module_not_called(path: str) -> str:
    return f"{path} was not called in this forward pass (a branch not taken?)"
