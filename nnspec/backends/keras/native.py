"""Losses and gradients in Keras' own arithmetic, for Keras on JAX.

nnspec's built-in losses are torch code; here the same losses (by name) are written
with ``keras.ops``, and gradients come from ``jax.value_and_grad`` over one
functional pass, ``model.stateless_call(trainable, non_trainable, x)``. The
gradient of a layer's output is taken as the gradient of a zero added to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nnspec.backends.keras.edge import leaves

LOSSES = ("mse", "cross_entropy", "next_token", "sum")


def main_output(result: Any) -> Any:
    """The model's main output: itself, ``logits`` of a dict, else its first array."""
    if isinstance(result, dict) and "logits" in result:
        return result["logits"]
    ts = leaves(result)
    return ts[0] if ts else result


def _ce(ops: Any, logits: Any, y: Any) -> Any:
    y = ops.cast(y, "int32")
    if len(logits.shape) > 2 and tuple(y.shape) == tuple(logits.shape[:-1]):
        logits, y = ops.reshape(logits, (-1, logits.shape[-1])), ops.reshape(y, (-1,))
    elif len(logits.shape) > 2:  # classes on axis 1, as torch has them
        logits = ops.reshape(ops.moveaxis(logits, 1, -1), (-1, logits.shape[1]))
        y = ops.reshape(y, (-1,))
    keep = ops.cast(ops.not_equal(y, -100), "float32")
    logp = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    picked = ops.take_along_axis(logp, ops.expand_dims(ops.maximum(y, 0), -1), axis=-1)[:, 0]
    return -ops.sum(picked * keep) / ops.maximum(ops.sum(keep), 1.0)


def loss_fn(name: str) -> Callable[[Any, Any, Any], Any] | None:
    """``fn(output, target, token_ids)`` in keras.ops for a built-in loss, else None."""
    import keras

    ops = keras.ops
    if name == "mse":
        return lambda out, y, ids: ops.mean(ops.square(out - ops.cast(ops.reshape(y, out.shape), out.dtype)))
    if name == "cross_entropy":
        return lambda out, y, ids: _ce(ops, out, y)
    if name == "next_token":
        return lambda out, y, ids: _ce(ops, out[:, :-1], (y if y is not None else ids)[:, 1:])
    if name == "sum":
        return lambda out, y, ids: ops.sum(ops.cast(out, "float32"))
    return None


@dataclass
class NativeLoss:
    """A loss computed in Keras' arithmetic: what ``backward`` differentiates again."""

    name: str
    fn: Callable[[Any, Any, Any], Any]
    target: Any  # native array or None
    ids: Any  # token ids for next_token without a target
    value: Any = None
    extra: dict = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.value)


def gradients(
    model: Any,
    loss: NativeLoss,
    args: tuple,
    kwargs: dict,
    params: dict[int, Any],
    inputs: dict[str, Any],
    deltas: dict[str, list[tuple[int, tuple[int, ...]]]],
    patch: Callable[[dict[str, Callable[..., Any]]], Any],
) -> tuple[dict[int, Any], dict[str, Any], dict[tuple[str, int], Any]]:
    """Gradients of ``loss`` for the variables ``params`` (id -> variable), the call's
    arguments ``inputs`` (name -> array) and the outputs ``deltas`` (path -> [(flat
    index, shape)]), from ``jax.grad`` over one stateless pass with ``training=False``.
    ``patch({path: wrapper})`` wraps those layers' calls for the pass."""
    import jax
    import jax.numpy as jnp

    trainable, frozen = list(model.trainable_variables), list(model.non_trainable_variables)
    named = {str(i): a for i, a in enumerate(args)} | kwargs
    zeros = {(p, i): jnp.zeros(s) for p, outs in deltas.items() for i, s in outs}
    live: dict[tuple[str, int], Any] = {}

    def adder(path: str) -> Callable[..., Any]:
        def wrap(orig: Callable[..., Any], a: tuple, k: dict) -> Any:
            out = orig(*a, **k)
            flat = leaves(out)
            for i, _ in deltas[path]:
                if (path, i) in live and i < len(flat):
                    out = _swap(out, flat[i], flat[i] + live[(path, i)])
            return out

        return wrap

    def f(pv: dict[int, Any], iv: dict[str, Any], dv: dict[tuple[str, int], Any]) -> Any:
        live.clear()
        live.update(dv)
        tv = [pv.get(id(v), v.value) for v in trainable]
        nv = [pv.get(id(v), v.value) for v in frozen]
        values = {n: iv.get(n, a) for n, a in named.items()}
        a = tuple(values[str(i)] for i in range(len(args)))
        k = {n: values[n] for n in kwargs}
        out, _ = model.stateless_call(tv, nv, *a, training=False, **k)
        return jnp.reshape(loss.fn(main_output(out), loss.target, loss.ids), ())

    pv = {k: v.value for k, v in params.items()}
    with patch({p: adder(p) for p in deltas}):
        gp, gi, gd = jax.grad(f, argnums=(0, 1, 2))(pv, inputs, zeros)
    return gp, gi, gd


def _swap(value: Any, old: Any, new: Any) -> Any:
    if value is old:
        return new
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_swap(v, old, new) for v in value)
    if isinstance(value, list):
        return [_swap(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _swap(v, old, new) for k, v in value.items()}
    return value
