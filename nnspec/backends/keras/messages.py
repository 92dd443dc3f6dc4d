"""Messages of the Keras backend: every one a function, asserted by tests."""

from __future__ import annotations

from nnspec.text import names


def no_keras_backend(why: str) -> str:
    return f"Keras cannot start: its backend is not installed ({why})"


def no_keras_backend_hint() -> str:
    return "set KERAS_BACKEND=torch or KERAS_BACKEND=jax before running nnspec (Keras defaults to tensorflow)"


def weights_need_model(path: str) -> str:
    return f"'{path}' holds Keras weights only: it needs the model they belong to"


def weights_need_model_hint() -> str:
    return "give the model a factory too: model: {factory: file.py:fn, file: weights.weights.h5}"


def not_keras_model(path: str, kind: str) -> str:
    return f"'{path}' holds Keras weights, but the factory's model is a {kind}, not a Keras model"


def loss_not_on_backend(loss: str, backend: str, known) -> str:
    return (
        f"loss '{loss}' is torch code and Keras here runs on {backend}: nnspec computes "
        f"{names(known)} in Keras' own arithmetic there"
    )


def loss_not_on_backend_hint() -> str:
    return "use one of those losses, or run Keras on torch (KERAS_BACKEND=torch)"


def loss_not_scalar(loss: str, shape) -> str:
    return f"loss '{loss}' gave a value of shape {tuple(shape)}, not one number"


def no_attention() -> str:
    return "nnspec does not read the attention weights of Keras layers yet"


def no_train() -> str:
    return (
        "nnspec's train: loop is torch code that calls the model as a torch module; "
        "train a Keras model with its own fit() (in the factory), then draw it"
    )


def note_guessed_edges(n: int) -> str:
    return (
        f"{n} edge(s) guessed from the order of layer calls: this subclassed Keras model computes "
        "between its layers in code nnspec does not see (a functional model gives every edge)"
    )
