"""The edge between Keras and nnspec: Keras' arrays become torch tensors in nnspec's
convention, and back.

On the torch backend a Keras tensor is a torch tensor already (no copy); on JAX (or
TensorFlow) it is copied once into a CPU torch tensor. A channels-last feature map
(N, H, W, C) is handed on as the view (N, C, H, W), as torch lays it out, so that
``channels`` and ``images`` draw one map per channel and ``[0, 3]`` is channel 3
whichever framework made it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_FIRST = {4: (0, 3, 1, 2), 5: (0, 4, 1, 2, 3)}  # channels-last -> channels-first
_LAST = {4: (0, 2, 3, 1), 5: (0, 2, 3, 4, 1)}  # and back


def is_array(x: Any) -> bool:
    """A tensor of any framework (torch, jax, tf, numpy), not a Keras variable or a scalar."""
    if isinstance(x, torch.Tensor):
        return True
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__array__") and not hasattr(x, "assign")


def leaves(value: Any) -> list[Any]:
    """Every array in a (nested) tuple, list or dict, in order."""
    if is_array(value):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in leaves(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in leaves(v)]
    return []


def smap(fn: Any, value: Any) -> Any:
    """``fn`` applied to every array of a nested structure (tuples, lists, dicts rebuilt)."""
    if is_array(value):
        return fn(value)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(smap(fn, v) for v in value)
    if isinstance(value, list):
        return [smap(fn, v) for v in value]
    if isinstance(value, dict):
        return {k: smap(fn, v) for k, v in value.items()}
    return value


def to_torch(x: Any) -> torch.Tensor:
    """A torch tensor of ``x`` (itself when it is one)."""
    if isinstance(x, torch.Tensor):
        return x
    return torch.from_numpy(np.array(x, copy=True))


def to_native(x: Any, backend: str) -> Any:
    """What Keras on ``backend`` takes: torch tensors as they are on torch, arrays elsewhere."""
    if not isinstance(x, torch.Tensor) or backend == "torch":
        return x
    a = x.detach().cpu().numpy()
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.asarray(a)
    return a


def channels_first(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(N, H, W, C) as (N, C, H, W), contiguous (reductions over a strided view are slow)."""
    return t.permute(*_FIRST[t.dim()]).contiguous() if channels_last and t.dim() in _FIRST else t


def hand(x: Any, last: bool) -> torch.Tensor:
    """``x`` as a channels-first torch tensor, in one copy at most (none for a torch
    tensor already channels-first)."""
    if isinstance(x, torch.Tensor):
        return channels_first(x, last)
    a = np.asarray(x)  # a CPU jax array: no copy
    if last and a.ndim in _FIRST:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(_FIRST[a.ndim])))
    return torch.from_numpy(np.array(a, copy=True))


def channels_last(t: torch.Tensor, was_last: bool) -> torch.Tensor:
    return t.permute(*_LAST[t.dim()]) if was_last and t.dim() in _LAST else t


def native_first(x: Any, last: bool) -> Any:
    """A channels-last native array as channels-first (for losses and gradients on JAX)."""
    if not last or len(x.shape) not in _FIRST:
        return x
    import keras

    return keras.ops.transpose(x, _FIRST[len(x.shape)])


def shape(value: Any) -> tuple[int, ...] | None:
    ts = leaves(value)
    return tuple(int(d) for d in ts[0].shape) if ts else None
