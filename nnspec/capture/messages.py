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
    return (
        f"{path} has no attention weights: either it was not called in the forward pass, or it computed "
        "no attention nnspec can read (a call of F.scaled_dot_product_attention, or a softmax over the last "
        "dimension of a 4-D (batch, head, query, key) score tensor)"
    )


def index_out_of_range(layer: str, shape, index: str) -> str:
    return f"index {index} does not fit {layer} of shape {tuple(shape)}"


def frozen_no_grad(layer: str) -> str:
    return f"{layer} got no gradient (it is not on the loss's path)"


def note_chosen(layer: str, label: str | None, available, what: str) -> str:
    others = [a for a in available if a != label]
    shown = f"{what} {label}" if label else f"the first {what}"
    more = f"; choose another with @{others[0]}" if others else ""
    return f"{layer}: {shown} is shown of {names(available)}{more}"


def no_such_part(layer: str, name: str, available, what: str) -> str:
    has = f"it has {names(available)}" if available else f"its {what} has no named parts"
    return f"{layer} has no {what} '{name}': {has}"


def no_input_grad(dtypes: str) -> str:
    return f"input_grads needs a floating-point input; the model's inputs are {dtypes} (token ids have no gradient)"


def no_input_grad_hint() -> str:
    return "take the gradient of the embedding's output instead: output_grads of <the embedding module>"


def bad_loss_value(name: str, value) -> str:
    what = f"a tensor of shape {tuple(value.shape)}" if hasattr(value, "shape") else type(value).__name__
    if hasattr(value, "requires_grad") and not value.requires_grad and getattr(value, "numel", lambda: 0)() == 1:
        what = "a number that does not depend on the model's parameters"
    return f"loss '{name}' gave {what}; gradients need one number computed from the model's output"


def backward_failed(why: str) -> str:
    return f"the backward pass failed: {why}"


def module_not_called(path: str) -> str:
    return f"{path} was not called in this forward pass (a branch not taken?)"
