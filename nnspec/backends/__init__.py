"""Stage: backends. Everything that touches a framework goes through one interface
(``nnspec.backends.base.Backend``); PyTorch is the first backend.

>>> be = backend_for(model)          # doctest: +SKIP
>>> [m.path for m in be.modules()]   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from nnspec.backends.base import Backend


def _pytorch():
    from nnspec.backends.pytorch.backend import TorchBackend

    return TorchBackend


# (name, loader of the backend class): the first whose class accepts the model wraps it.
# Loaders import lazily, so a framework is imported only when a model of its kind comes.
BACKENDS = (("pytorch", _pytorch),)


def backend_for(model: Any) -> Backend:
    """The backend for ``model`` (a model already wrapped is returned as it is), or None."""
    if hasattr(model, "capabilities") and hasattr(model, "modules") and hasattr(model, "model"):
        return model
    for _, load in BACKENDS:
        cls = load()
        if cls.accepts(model):
            return cls(model)
    return None  # type: ignore[return-value]


def model_of(model_or_backend: Any) -> Any:
    """The framework's own model object behind a backend (or the object itself)."""
    be = backend_for(model_or_backend)
    return be.model if be is not None else model_or_backend
