"""Messages of building the model, loading inputs and losses: every one a function, kept beside the stage that raises it.

Tests assert against these functions, not against copied strings.
"""

from __future__ import annotations

from nnspec.backends.messages import misfit
from nnspec.text import names


def ragged_tokens(lengths) -> str:
    return f"token sequences must have one length; they have {names(lengths)}"


def unknown_tokens(tokens) -> str:
    return f"tokens not in the vocab: {names(dict.fromkeys(tokens))}"


def no_model() -> str:
    return "the spec names no model"


def no_model_hint() -> str:
    return "add 'model: {factory: pkg.module:callable}' or pass model= to nnspec.render"


def bad_factory(factory: str, why: str) -> str:
    return f"cannot import model factory '{factory}': {why}"


def factory_failed(factory: str, why: str) -> str:
    return f"model factory '{factory}' raised {why}"


def not_a_module(factory: str, got: str) -> str:
    return (
        f"model '{factory}' is a {got}: nnspec reads torch.nn.Module, Keras models and model files "
        "(ONNX, safetensors, state_dict, .pt2, TorchScript)"
    )


def checkpoint_unreadable(path: str, why: str) -> str:
    return f"cannot load checkpoint '{path}': {why}"


def checkpoint_mismatch(path: str, missing, unexpected, shapes) -> str:
    return f"checkpoint '{path}' does not fit the model: " + misfit(missing, unexpected, shapes)


def no_cuda() -> str:
    return "device: cuda was asked for but torch sees no CUDA device"


def unknown_dataset(name: str, known) -> str:
    return f"unknown data set '{name}' (local vega-datasets: {names(known, 20)})"


def unknown_columns(missing, columns) -> str:
    return f"no column {names(missing)} in the data set (columns: {names(columns, 20)})"


def non_numeric_features(cols) -> str:
    return f"features must be numeric; {names(cols)} are not"


def input_file(path: str, why: str) -> str:
    return f"cannot load input file '{path}': {why}"


def unknown_loss(name: str) -> str:
    return f"unknown loss '{name}': use mse, cross_entropy, next_token, model, sum or module:callable"


def loss_failed(name: str, why: str) -> str:
    return f"loss '{name}' failed: {why}"


def no_tensor_output(layer: str) -> str:
    return f"module {layer} returned no tensor"


def note_dropped_rows(n: int) -> str:
    return f"{n} rows with missing values dropped"


def ambiguous_inputs(n: int) -> str:
    return (
        f"inputs= is a tuple of {n}: it could be (input, target) or {n} arguments of the model, "
        "and nnspec does not guess"
    )


def ambiguous_inputs_hint() -> str:
    return (
        "pass inputs=x, target=y for an input and its target; inputs={'input_ids': ids, ...} for "
        "keyword arguments; nnspec.Inputs(args=(a, b), kwargs={...}, target=y) for anything else"
    )


def bad_inputs(got: str) -> str:
    return f"inputs= is a {got}: expected a tensor, a dict of keyword arguments, or nnspec.Inputs"


def note_target_ignored(name: str) -> str:
    arg = f"argument {name}" if name.isdigit() else f"'{name}'"
    return f"the target column of {arg}'s data set is not used: give the target as input.target"


def next_token_needs_ids() -> str:
    return "loss 'next_token' needs token ids: an input_ids argument, an integer input, or input.target"


def next_token_shapes(logits: tuple, ids: tuple) -> str:
    return f"loss 'next_token' needs (B, T, V) logits and (B, T) ids; got logits {logits} and ids {ids}"


def no_model_loss() -> str:
    return "loss 'model': the model returned no 'loss'"


def no_model_loss_hint() -> str:
    return "Hugging Face models compute their loss when given labels: add 'labels' to input.kwargs"


def no_such_output(name: str, available) -> str:
    return f"the model's output has no '{name}'; it has {names(available) if available else 'no tensors'}"
