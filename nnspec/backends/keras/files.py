"""Keras model files: a whole model (``.keras`` zip, legacy ``.h5``), or weights only
(``.weights.h5``) loaded into the model a factory built. Keras runs on whatever
backend the user chose (``KERAS_BACKEND``); nnspec never sets it."""

from __future__ import annotations

from typing import Any

from nnspec.errors import ModelError


def import_keras() -> Any:
    """keras, or a ModelError saying how to choose a backend Keras can start."""
    from nnspec.backends.keras import messages

    try:
        import keras
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("tensorflow", "jax", "jaxlib", "torch"):
            raise ModelError(messages.no_keras_backend(str(e)), None, messages.no_keras_backend_hint()) from None
        raise
    return keras


def _weights_only(path: str) -> bool:
    """An HDF5 file of weights alone (``save_weights``: ``.weights.h5``), not a whole model."""
    import h5py

    with h5py.File(path, "r") as f:
        return "model_config" not in f.attrs


def load(path: str, factory_model: Any = None) -> Any:
    """The model in a ``.keras`` or whole-model ``.h5`` file, or the factory's model with
    the weights of a ``.weights.h5`` file."""
    from nnspec.backends.keras import messages

    keras = import_keras()
    if path.endswith(".keras") or not _weights_only(path):
        return keras.saving.load_model(path, compile=False)
    if factory_model is None:
        raise ModelError(messages.weights_need_model(path), None, messages.weights_need_model_hint())
    if not isinstance(factory_model, keras.Layer):
        raise ModelError(messages.not_keras_model(path, type(factory_model).__name__))
    factory_model.load_weights(path)
    return factory_model
