"""Stage: backends. Everything that touches a framework goes through one interface
(``nnspec.backends.base.Backend``); PyTorch is the first backend.

>>> be = backend_for(model)          # doctest: +SKIP
>>> [m.path for m in be.modules()]   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from nnspec.backends.base import Backend


def _lazy(module: str, name: str) -> Callable[[], Any]:
    """A loader of the backend class ``module.name``: None when that module is not
    there. Its ``accepts(model)`` must not import its framework for a model of another
    kind (a Keras backend looks at ``type(model).__module__`` first)."""

    def load() -> Any:
        try:
            return getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as e:
            if e.name and (e.name == module or module.startswith(e.name + ".")):
                return None  # a backend this install does not have
            raise

    return load


# (name, loader of the backend class): the first whose class accepts the model wraps it,
# so the specific come before the general (a Keras 3 model on the torch backend is also
# an nn.Module; an exported program unflattens into one). Loaders import lazily, so a
# framework is imported only when a model of its kind comes.
BACKENDS: tuple[tuple[str, Callable[[], Any]], ...] = (
    ("keras", _lazy("nnspec.backends.keras.backend", "KerasBackend")),
    ("onnx", _lazy("nnspec.backends.onnx.backend", "OnnxBackend")),
    ("weights", _lazy("nnspec.backends.weights.backend", "WeightsBackend")),
    ("exported", _lazy("nnspec.backends.pytorch.exported", "ExportedBackend")),
    ("pytorch", _lazy("nnspec.backends.pytorch.backend", "TorchBackend")),
)


def backend_for(model: Any) -> Backend:
    """The backend for ``model`` (a model already wrapped is returned as it is), or None."""
    if hasattr(model, "capabilities") and hasattr(model, "modules") and hasattr(model, "model"):
        return model
    for _, load in BACKENDS:
        cls = load()
        if cls is not None and cls.accepts(model):
            return cls(model)
    return None  # type: ignore[return-value]


def model_of(model_or_backend: Any) -> Any:
    """The framework's own model object behind a backend (or the object itself)."""
    be = backend_for(model_or_backend)
    return be.model if be is not None else model_or_backend
