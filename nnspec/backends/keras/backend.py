"""The Keras 3 backend: a Keras model (Sequential, functional or subclassed) on
whatever backend Keras runs, behind nnspec's backend interface.

Hooks are wrappers around each chosen layer's ``call``, installed for the pass and
removed in ``finally`` (the model's own exception included). Keras has no mode flag:
passes call the model with ``training=False`` (``guest(train=True)``: ``True``).
Tensors handed to nnspec are torch tensors, channels-first (``edge``); parameters
keep Keras' layout ((in, out) for a Dense kernel, (h, w, in, out) for a Conv2D one:
``Param.layout`` says so). Gradients come from the framework's own differentiation:
``torch.autograd`` on the torch backend, ``jax.grad`` on JAX (``native``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch

from nnspec.backends.base import Call, Capabilities, ForwardResult, Module, OnCall, OnEnter, Param, PassFailed
from nnspec.backends.keras import edge, messages, native, tree
from nnspec.backends.keras.trace import KerasTracer
from nnspec.errors import ModelError

Wrapper = Callable[[Callable[..., Any], tuple, dict], Any]


def _is_keras(model: Any) -> bool:
    return type(model).__module__.split(".", 1)[0] in ("keras", "tf_keras") or any(
        c.__module__.startswith("keras.") for c in type(model).__mro__[1:]
    )


class KerasBackend:
    """One Keras model; its layer tree and variables are read once, lazily."""

    name = "keras"

    def __init__(self, model: Any):
        import keras

        self.model = model
        self.keras = keras
        self.kind = keras.backend.backend()  # torch | jax | tensorflow | numpy
        self.capabilities = Capabilities(
            backward=self.kind in ("torch", "jax"),
            attention=False,
            train=False,
            why=(
                ("backward", f"nnspec takes Keras gradients on torch and jax, not on {self.kind}"),
                ("attention", messages.no_attention()),
                ("train", messages.no_train()),
            ),
        )
        self._modules: tuple[Module, ...] | None = None
        self._params: tuple[Param, ...] | None = None
        self._objects: dict[str, Any] = {}
        self._vars: dict[str, Any] = {}
        self._training = False
        self._handed: dict[int, tuple] = {}  # JAX: id(torch tensor handed out) -> what it is
        self._keep: list[Any] = []
        self._grad_pass = False
        self._last_call: tuple[tuple, dict] | None = None
        self._memo: dict[int, tuple[Any, torch.Tensor]] | None = None  # id(array) -> (it, handed), for a pass

    @staticmethod
    def accepts(model: Any) -> bool:
        """A Keras 3 model (on the torch backend also an nn.Module); keras is not imported
        for a model of another kind."""
        if not _is_keras(model):
            return False
        import keras

        return isinstance(model, keras.Layer)

    # -- the model's structure ----------------------------------------------------
    def _index(self) -> None:
        if self._modules is not None:
            return
        for path, layer in tree.walk(self.model):
            self._objects.setdefault(path, layer)
        self._modules = tree.modules(self.model)
        for names, _, _, v in tree.variables(self.model):
            for n in names:
                self._vars[n] = v
        self._params = tree.params(self.model)
        formats = [getattr(layer, "data_format", None) for _, layer in tree.walk(self.model)]
        chosen = next((f for f in formats if f in ("channels_last", "channels_first")), None)
        self._last = (chosen or self.keras.config.image_data_format()) == "channels_last"

    def modules(self) -> tuple[Module, ...]:
        self._index()
        assert self._modules is not None
        return self._modules

    def params(self) -> tuple[Param, ...]:
        self._index()
        assert self._params is not None
        return self._params

    def param_names(self) -> tuple[str, ...]:
        return tuple(p.path for p in self.params())

    def _variable(self, name: str) -> Any:
        self._index()
        if name not in self._vars:
            raise KeyError(name)
        return self._vars[name]

    def variables(self) -> dict[str, Any]:
        """nnspec's parameter names and the Keras variables they name."""
        self._index()
        return dict(self._vars)

    def tensor(self, name: str) -> torch.Tensor:
        """A parameter as a torch tensor in Keras' layout: the live one on the torch
        backend, a copy elsewhere (``get_weights()`` shows the same numbers)."""
        v = self._variable(name)
        if self.kind == "torch":
            return v.value
        t = edge.to_torch(v.value)
        self._handed[id(t)] = ("param", v)
        self._keep.append(t)
        return t

    def module_object(self, path: str) -> Any:
        self._index()
        return self._objects[path]

    def device(self) -> torch.device:
        if self.kind == "torch":
            return next((v.value.device for v in self.model.weights), torch.device("cpu"))
        return torch.device("cpu")

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for p in self.params():
            h.update(f"{p.path}:{p.shape}:{p.dtype};".encode())
        for m in self.modules():
            h.update(f"{m.path}={m.type};".encode())
        return h.hexdigest()[:16]

    def size(self) -> int:
        return sum(p.numel for p in self.params())

    def trainable(self) -> list[Any]:
        return [self.tensor(p.path) for p in self.params() if p.trainable]

    def tensors(self, value: Any) -> list[Any]:
        return [t for t in edge.leaves(value) if isinstance(t, torch.Tensor)]

    # -- the model as a guest -------------------------------------------------------
    @contextmanager
    def guest(self, params_needing_grad: tuple[str, ...] = (), train: bool = False) -> Iterator[None]:
        """``training=train`` for the passes, and (torch backend) grads on the named
        parameters; every flag comes back as found. Keras' ``trainable`` is not touched."""
        flags = [(v.value, v.value.requires_grad) for v in self.model.weights] if self.kind == "torch" else []
        before = self._training
        try:
            self._training = train
            if self.kind == "torch":
                for name in params_needing_grad:
                    t = self._variable(name).value
                    if t.is_floating_point():
                        t.requires_grad_(True)
            yield
        finally:
            self._training = before
            for t, flag in flags:
                t.requires_grad_(flag)
            self._handed.clear()
            self._keep.clear()

    @contextmanager
    def _patched(self, wrappers: dict[str, Wrapper]) -> Iterator[None]:
        """``wrappers[path](call, args, kwargs)`` runs instead of that layer's (or op's)
        ``call`` for the duration; every ``call`` is restored in ``finally``."""
        done: list[tuple[Any, bool, Any]] = []
        try:
            for path, w in wrappers.items():
                obj = self._objects[path]
                had = "call" in vars(obj)
                done.append((obj, had, vars(obj).get("call")))
                bound = obj.call

                def call(*args: Any, _w: Wrapper = w, _b: Any = bound, **kwargs: Any) -> Any:
                    return _w(_b, args, kwargs)

                object.__setattr__(obj, "call", call)
            yield
        finally:
            for obj, had, old in reversed(done):
                if had:
                    object.__setattr__(obj, "call", old)
                else:
                    object.__delattr__(obj, "call")

    def calls(self, wrappers: dict[str, Wrapper]) -> Any:
        """``wrappers[path](call, args, kwargs)`` runs instead of each named layer's
        ``call`` for the duration (a framework callback tapping a compiled step)."""
        self._index()
        return self._patched(wrappers)

    def channels_last(self) -> bool:
        """The model's feature maps are (N, H, W, C): nnspec hands them on as (N, C, H, W)."""
        self._index()
        return self._last

    def _hand(self, value: Any, path: str | None = None) -> Any:
        """``value`` as nnspec takes it: torch tensors, channels-first. On JAX, in a pass
        with gradients, an output's float tensors require grad and are remembered, so
        ``backward`` knows which layer output each one is."""
        flat = edge.leaves(value)

        def one(x: Any) -> torch.Tensor:
            if self._memo is not None and id(x) in self._memo and path is None:
                return self._memo[id(x)][1]  # a layer's input is the output handed on before
            t = edge.hand(x, self._last)
            if self._memo is not None:
                self._memo[id(x)] = (x, t)
            if path is not None and self._grad_pass and self.kind != "torch" and t.is_floating_point():
                t.requires_grad_(True)
                i = next(i for i, y in enumerate(flat) if y is x)
                self._handed[id(t)] = ("out", path, i, tuple(int(d) for d in x.shape))
                self._keep.append(t)
            return t

        return edge.smap(one, value)

    def _restore(self, new: Any, handed: Any, out: Any) -> Any:
        """A callback's replacement of a handed output, back in Keras' layout (torch backend)."""
        if new is handed:
            return out
        if isinstance(new, torch.Tensor):
            return edge.channels_last(new, self._last) if self.kind == "torch" else out
        if isinstance(new, (tuple, list)) and isinstance(handed, (tuple, list)) and len(new) == len(handed):
            parts = [self._restore(n, h, o) for n, h, o in zip(new, handed, out)]
            return type(out)(parts) if isinstance(out, (tuple, list)) else out
        return out

    def _hook(self, after: OnCall | None, before: OnEnter | None, path: str) -> Wrapper:
        def wrap(orig: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
            if before is not None:
                before(self._hand(args), self._hand(kwargs))
            out = orig(*args, **kwargs)
            if after is not None:
                handed = self._hand(out, path)
                new = after(self._hand(args), self._hand(kwargs), handed)
                if new is not None:
                    out = self._restore(new, handed, out)
            return out

        return wrap

    def hooks(self, calls: dict[str, OnCall], enter: dict[str, OnEnter] | None = None) -> Any:
        """``calls[path](args, kwargs, output)`` after each call of the layer at ``path``
        (a returned value replaces the output) and ``enter[path](args, kwargs)`` before
        it, for the duration."""
        self._index()
        enter = enter or {}
        return self._patched({p: self._hook(calls.get(p), enter.get(p), p) for p in {**calls, **enter}})

    def on_grad(self, tensor: Any, fn: Callable[[Any], None]) -> None:
        if self.kind != "torch":
            raise NotImplementedError(messages.no_train())
        tensor.register_hook(fn)

    def paused(self) -> Any:
        return nullcontext()

    # -- the passes --------------------------------------------------------------------
    def to_device(self, x: Any) -> Any:
        if isinstance(x, Call):
            return x.map(self.to_device)
        if self.kind == "torch" and isinstance(x, torch.Tensor):
            return x.to(self.device())
        return x

    def _ops(self) -> dict[str, Any]:
        """The Keras ops of functional graphs that are not layers (``keras.ops.add``), by path."""
        out: dict[str, Any] = {}
        for path, layer in list(self._objects.items()):
            for op in getattr(layer, "operations", None) or ():
                if not isinstance(op, self.keras.Layer):
                    out[f"{path}.{op.name}" if path else op.name] = op
        return out

    def forward(
        self,
        call: Call,
        calls: dict[str, OnCall] | None = None,
        *,
        enter: dict[str, OnEnter] | None = None,
        grad: bool = False,
        trace: bool = False,
        attention: tuple[str, ...] = (),
    ) -> ForwardResult:
        """One pass, ``model(*args, training=False, **kwargs)``, with ``calls`` and
        ``enter`` hooked (and every layer and op traced when ``trace``); PassFailed with
        the layers that ran if the model raises. Every ``call`` comes back as found."""
        self._index()
        calls, enter = calls or {}, enter or {}
        ran: list[str] = []
        ops = self._ops() if trace else {}
        leaf = {m.path: m.leaf for m in self.modules()}
        functional = {p for p, o in self._objects.items() if getattr(o, "operations", None) is not None}
        functional |= {p for p, o in self._objects.items() if type(o).__name__ == "Sequential"}
        tracer = KerasTracer(self.model, [], leaf, functional) if trace else None
        native = call.map(lambda v: edge.to_native(v, self.kind))
        if self.kind != "torch":
            for (name, v), (_, n) in zip(call.values(), native.values()):
                if isinstance(v, torch.Tensor) and v.requires_grad:
                    self._handed[id(v)] = ("input", name, n)
                    self._keep.append(v)
        self._last_call = (native.args, native.kwargs)

        def wrapper(path: str, obj: Any, op: bool) -> Wrapper:
            hooked = self._hook(calls.get(path), enter.get(path), path) if (path in calls or path in enter) else None

            def wrap(orig: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
                if tracer is not None:
                    tracer.enter(path)
                    if not path:  # the root's arguments, as Keras converted them, are the inputs
                        tracer.alias(edge.leaves([v for _, v in native.values()]), edge.leaves((args, kwargs)))
                out = hooked(orig, args, kwargs) if hooked is not None else orig(*args, **kwargs)
                if not op:
                    ran.append(path)
                if tracer is not None:
                    tracer.leave(path, obj, (args, kwargs), out, op)
                return out

            return wrap

        wrappers = {p: wrapper(p, o, False) for p, o in self._objects.items()}
        wrappers |= {p: wrapper(p, o, True) for p, o in ops.items()}
        saved = dict(self._objects)
        self._objects.update(ops)
        self._grad_pass = grad
        self._memo = {}
        try:
            if tracer is not None:
                tracer.inputs(native.values())
            with (
                self._patched(wrappers),
                torch.inference_mode(False),
                torch.set_grad_enabled(grad and self.kind == "torch"),
            ):
                try:
                    result = self.model(*native.args, training=self._training, **native.kwargs)
                except Exception as e:
                    raise PassFailed(e, [p for p in dict.fromkeys(ran) if p]) from e
            return ForwardResult(
                result,
                [p for p in dict.fromkeys(ran) if p],
                tracer.finish(result) if tracer is not None else None,
                {},
            )
        finally:
            self._objects.clear()
            self._objects.update(saved)
            self._grad_pass = False
            self._memo = None

    def compute_loss(self, loss_fn: Any, result: Any, target: Any, call: Call) -> Any:
        """The loss in the framework's arithmetic: nnspec's torch losses on the torch
        backend; on JAX the built-in losses by name in ``keras.ops`` (``native``)."""
        if self.kind == "torch":
            with torch.enable_grad():
                return loss_fn(result, target, call)
        name = getattr(loss_fn, "name", str(loss_fn))
        fn = native.loss_fn(name)
        if fn is None:
            raise ModelError(
                messages.loss_not_on_backend(name, self.kind, native.LOSSES), None, messages.loss_not_on_backend_hint()
            )
        y = edge.to_native(target, self.kind) if target is not None else None
        ids = next((edge.to_native(v, self.kind) for _, v in call.values()
                    if isinstance(v, torch.Tensor) and not v.is_floating_point()), None)  # fmt: skip
        value = fn(native.main_output(result), y, ids)
        if int(np.prod(value.shape)) != 1:
            raise ModelError(messages.loss_not_scalar(name, value.shape))
        return native.NativeLoss(name, fn, y, ids, value)

    def backward(self, loss: Any, wanted: dict) -> dict:
        """Gradients of ``loss`` for exactly the tensors in ``wanted`` (key -> tensor);
        None where a tensor does not reach the loss. No ``.grad`` is touched. A channels-
        last input's gradient comes channels-first, as its activations do."""
        keys = list(wanted)
        try:
            if self.kind == "torch":
                with torch.enable_grad():
                    grads = torch.autograd.grad(loss, [wanted[k] for k in keys], allow_unused=True)
                got = dict(zip(keys, grads))
            else:
                got = self._native_backward(loss, wanted)
        except Exception as e:
            raise PassFailed(e) from e
        for k, g in got.items():
            if g is not None and isinstance(k, tuple) and k[:1] == ("input_grad",):
                got[k] = edge.channels_first(g, self._last)
        return got

    def _native_backward(self, loss: native.NativeLoss, wanted: dict) -> dict:
        assert self._last_call is not None
        params: dict[int, Any] = {}
        inputs: dict[str, Any] = {}
        deltas: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
        what: dict[Any, tuple] = {}
        for k, t in wanted.items():
            info = self._handed.get(id(t))
            if info is None:
                continue
            what[k] = info
            if info[0] == "param":
                params[id(info[1])] = info[1]
            elif info[0] == "input":
                inputs[info[1]] = info[2]
            else:
                deltas.setdefault(info[1], []).append((info[2], info[3]))
        args, kwargs = self._last_call
        gp, gi, gd = native.gradients(self.model, loss, args, kwargs, params, inputs, deltas, self._patched)
        out: dict = {}
        for k in wanted:
            info = what.get(k)
            if info is None:
                out[k] = None
            elif info[0] == "param":
                out[k] = edge.to_torch(gp[id(info[1])])
            elif info[0] == "input":
                out[k] = edge.to_torch(gi[info[1]])
            else:
                out[k] = edge.channels_first(edge.to_torch(gd[(info[1], info[2])]), self._last)
        return out

    def shapes(self, call: Call | None) -> dict:
        """Shapes every layer saw in one pass (for EXPLAIN), as nnspec sees them (channels-first)."""
        shapes: dict = {}

        def seen(path: str) -> OnCall:
            def on_call(args: tuple, kwargs: dict, output: Any) -> None:
                out, inp = self.tensors(output), self.tensors((args, kwargs))
                if out:
                    shapes.setdefault(("activation", path), tuple(out[0].shape))
                    shapes.setdefault(("output_grad", path), tuple(out[0].shape))
                if inp:
                    shapes.setdefault(("input", path), tuple(inp[0].shape))

            return on_call

        if call is not None:
            with self.guest():
                try:
                    self.forward(self.to_device(call), {m.path: seen(m.path) for m in self.modules() if m.path})
                except PassFailed:
                    pass
        for p in self.params():
            shapes[("param", p.path)] = shapes[("grad", p.path)] = p.shape
        first = self.tensors(call.args) if call is not None else []
        if first:
            shapes[("input_grad", "")] = tuple(edge.channels_first(first[0], self._last).shape)
        return shapes

    # -- files ---------------------------------------------------------------------------
    def state(self) -> dict:
        return {p.path: self.tensor(p.path).detach().cpu().clone() for p in self.params()}

    def load_state(self, state: dict) -> None:
        for name, value in state.items():
            self._variable(name).assign(edge.to_native(torch.as_tensor(value), self.kind))

    def example_input(self) -> list[tuple[str, tuple[int, ...], str]]:
        """(argument, shape, dtype) of a functional model's inputs (an unknown batch size: 8)."""
        try:
            inputs = list(self.model.inputs)
        except (AttributeError, ValueError):  # a subclassed model that was never built
            return []
        out = []
        for i, t in enumerate(inputs):
            shape = tuple(8 if d is None else int(d) for d in t.shape)
            out.append((str(i), shape, str(t.dtype)))
        return out

    def first_layer(self) -> tuple[str, dict] | None:
        """The first Embedding or Dense and what its input looks like (for ``nnspec init``)."""
        for _, layer in tree.walk(self.model):
            kind = type(layer).__name__
            if kind == "Embedding":
                return "Embedding", {"vocab": int(layer.input_dim)}
            if kind == "Dense" and getattr(layer, "kernel", None) is not None:
                return "Linear", {"features": int(layer.kernel.shape[0])}
        return None
