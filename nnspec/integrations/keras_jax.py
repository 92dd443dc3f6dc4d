"""Keras ``fit`` on JAX: a recorded step runs through a second compiled train step
that hands its values to the host.

Keras on JAX compiles the whole train step (forward, ``jax.value_and_grad``, the
optimizer's ``stateless_apply``) into one XLA function, so gradients and activations
never reach Python, and while ``fit`` runs the model's own variables are emptied (the
state travels from step to step as arrays). ``JaxSteps`` replaces ``model.train_function``
for the duration of ``fit`` with one that, per step:

    not recorded    Keras' own compiled function, untouched (no tap, no copy)
    recorded        Keras' own ``train_step``, compiled a second time with taps traced in
                    (``jax.debug.callback``: the values reach the recorder on the host
                    while the step runs):
                      each wanted layer's call   its output (and inputs) → the recorder's hooks
                      its output's gradient      an identity whose custom VJP hands the
                                                 cotangent to the host (output_grads)
                      compute_loss_and_updates   the step's loss, before any loss scaling
                      optimizer.stateless_apply  the gradients, before the update
                    the parameters are the state ``fit`` passes in (before the update)

The recording step does not donate its input state (the parameters it reads stay
valid), so on a recorded step the state is held twice. A user's own ``train_step``
is what both functions run; its taps need it to call the layers and
``self.optimizer.stateless_apply`` as Keras' does.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from typing import Any

import jax
import numpy as np

from nnspec.backends.keras import edge
from nnspec.compiler.plan import HOOK_KINDS


class JaxSteps:
    """``model.train_function`` while ``fit`` runs with a recorder on the JAX backend."""

    def __init__(self, model, recorder, backend, on_error: Callable[[], None]):
        self.model, self.rec, self.be = model, recorder, backend
        self.on_error = on_error
        self.step = 0
        self.keras = model.train_function  # (state, iterator) -> (logs, state): Keras' own
        names = _names(backend)
        self.trainable = [names.get(id(v)) for v in model.trainable_variables]
        self.frozen = [names.get(id(v)) for v in model.non_trainable_variables]
        self.updates = any(c.kind == "update" for c in recorder.captures)
        self.wanted = {k: {c.target for c in recorder.captures if c.kind == k} for k in HOOK_KINDS}
        self.last = backend.channels_last()

        def step(state, data):  # a function of its own: JAX's trace cache holds this instance's taps
            return model.train_step(state, data)

        self.recording = step if model.run_eagerly or not model.jit_compile else jax.jit(step)
        self._taps: tuple[dict, dict, dict] = ({}, {}, {})
        self._loss: Any = None
        self._grads: list | None = None

    def function(self):
        """The replacement: Keras' own per-execution loop over ``one`` step at a time."""
        return self.model._make_function(self.one)

    def one(self, state, data):
        try:
            return self._one(state, data)
        except BaseException:
            self.on_error()
            raise

    def _one(self, state, data):
        step, rec = self.step, self.rec
        self.step += 1
        due = rec.due(step)
        closes = self.updates and step > 0 and rec.due(step - 1)  # update_ratio of the step before
        if not (due or closes):
            return self.keras(state, iter((data,)))
        given = self._params(state)
        if not due:
            rec.step(step, tensors=given)
            return self.keras(state, iter((data,)))
        self._taps, self._loss, self._grads = rec.taps(), None, None
        with self._tapped():
            logs, new = self.recording(state, data)
        jax.effects_barrier()  # every callback of the step has run
        grads: list = self._grads or []
        for name, g in zip(self.trainable, grads):
            if name is not None and name in given:
                given[name] = (given[name][0], g)
        rec.step(step, loss=self._loss, tensors=given)
        return logs, new

    def _params(self, state) -> dict:
        """name -> (value, None) from ``fit``'s state: trainable and non-trainable variables."""
        trainable, frozen = state[0], state[1]
        out = {}
        for names, values in ((self.trainable, trainable), (self.frozen, frozen)):
            for name, v in zip(names, values):
                if name is not None:
                    out[name] = (edge.to_torch(np.asarray(v)), None)
        return out

    # -- the taps, traced into the recording step ----------------------------------------
    @contextmanager
    def _tapped(self):
        model, opt = self.model, self.model.optimizer
        swapped = [
            (model, "compute_loss_and_updates", self._loss_tap(model.compute_loss_and_updates)),
            (opt, "stateless_apply", self._grads_tap(opt.stateless_apply)),
        ]
        had = [(obj, name, vars(obj).get(name, _NONE)) for obj, name, _ in swapped]
        try:
            for obj, name, fn in swapped:
                object.__setattr__(obj, name, fn)
            with self.be.calls({p: self._layer_tap(p) for p in set().union(*self.wanted.values())}):
                yield
        finally:
            for obj, name, before in reversed(had):
                if before is _NONE:
                    object.__delattr__(obj, name)
                else:
                    object.__setattr__(obj, name, before)

    def _loss_tap(self, original):
        def compute_loss_and_updates(*args, **kwargs):
            loss, aux = original(*args, **kwargs)
            jax.debug.callback(self._got_loss, aux[0])  # aux[0]: the loss before loss scaling
            return loss, aux

        return compute_loss_and_updates

    def _grads_tap(self, original):
        def stateless_apply(optimizer_variables, grads, trainable_variables):
            jax.debug.callback(self._got_grads, list(grads))
            return original(optimizer_variables, grads, trainable_variables)

        return stateless_apply

    def _layer_tap(self, path: str):
        def call(orig, args, kwargs):
            if path in self.wanted["input"]:
                _send(partial(self._got_inputs, path), (args, kwargs))
            out = orig(*args, **kwargs)
            if path in self.wanted["output_grad"]:
                out = _cotangent_tap(out, partial(self._got_output_grads, path))
            if path in self.wanted["activation"]:
                _send(partial(self._got_output, path), out)
            return out

        return call

    # -- on the host, while the step runs ---------------------------------------------------
    def _torch(self, value):
        return edge.smap(lambda a: edge.hand(np.asarray(a), self.last), value)

    def _got_loss(self, loss) -> None:
        self._loss = float(np.asarray(loss))

    def _got_grads(self, grads) -> None:
        self._grads = [None if g is None else edge.to_torch(np.asarray(g)) for g in grads]

    def _got_inputs(self, path: str, value) -> None:
        args, kwargs = value
        self._taps[1][path](self._torch(tuple(args)), self._torch(dict(kwargs)))

    def _got_output(self, path: str, value) -> None:
        self._taps[0][path]((), {}, self._torch(value))

    def _got_output_grads(self, path: str, value) -> None:
        self._taps[2][path](self._torch(value))


_NONE = object()


def _names(backend) -> dict[int, str]:
    """id of a Keras variable -> nnspec's (first) name for it."""
    out: dict[int, str] = {}
    for name, v in backend.variables().items():
        out.setdefault(id(v), name)
    return out


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not hasattr(x, "assign")


def _send(fn: Callable[[Any], None], value) -> None:
    """``fn(value)`` on the host with the arrays of ``value`` (a nested structure) concrete;
    what is not an array (flags, None) travels in the structure as it was traced."""
    leaves, tree = jax.tree_util.tree_flatten(value)
    at = [i for i, x in enumerate(leaves) if _is_array(x)]

    def host(*arrays):
        rebuilt = list(leaves)
        for i, a in zip(at, arrays):
            rebuilt[i] = a
        fn(jax.tree_util.tree_unflatten(tree, rebuilt))

    jax.debug.callback(host, *[leaves[i] for i in at])


def _cotangent_tap(value, fn: Callable[[Any], None]):
    """``value`` unchanged, through an identity whose backward hands ``fn`` the gradient
    of each floating array of ``value`` (None where an array is not floating)."""
    leaves, tree = jax.tree_util.tree_flatten(value)
    at = [i for i, x in enumerate(leaves) if _is_array(x) and jax.numpy.issubdtype(x.dtype, jax.numpy.floating)]
    if not at:
        return value

    def host(*grads):
        rebuilt: list = [None] * len(leaves)
        for i, g in zip(at, grads):
            rebuilt[i] = g
        fn(jax.tree_util.tree_unflatten(tree, rebuilt))

    @jax.custom_vjp
    def identity(*xs):
        return xs

    def forward(*xs):
        return xs, None

    def backward(_, grads):
        jax.debug.callback(host, *grads)
        return tuple(grads)

    identity.defvjp(forward, backward)
    passed = identity(*[leaves[i] for i in at])
    out = list(leaves)
    for i, y in zip(at, passed):
        out[i] = y
    return jax.tree_util.tree_unflatten(tree, out)
