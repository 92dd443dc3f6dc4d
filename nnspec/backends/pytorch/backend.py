"""The PyTorch backend: an ``nn.Module`` behind nnspec's backend interface.

Hooks, mode flags and ``requires_grad`` are set only inside ``guest()`` and
``hooks()``, and restored in ``finally`` whatever happens (torchinfo's
``forward_pass`` does the same): after nnspec ran, the model is as it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

from nnspec.backends.base import Call, Capabilities, ForwardResult, Module, OnCall, OnEnter, Param, PassFailed
from nnspec.backends.pytorch import attention as mha
from nnspec.backends.pytorch.trace import Tracer, tensors

_LAYOUTS = {  # what each axis of a weight is, by module class
    "Linear": ("out", "in"),
    "Conv1d": ("out", "in", "w"),
    "Conv2d": ("out", "in", "h", "w"),
    "Conv3d": ("out", "in", "d", "h", "w"),
    "Embedding": ("token", "dim"),
}


def role_of(name: str) -> str:
    """weight, bias or other, from a parameter's own name (``in_proj_weight`` is a weight)."""
    leaf = name.rsplit(".", 1)[-1]
    if "weight" in leaf:
        return "weight"
    if "bias" in leaf:
        return "bias"
    return "other"


class TorchBackend:
    """One ``torch.nn.Module``; module tree and parameters are read once, lazily."""

    name = "pytorch"
    capabilities = Capabilities()

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self._modules: tuple[Module, ...] | None = None
        self._params: tuple[Param, ...] | None = None
        self._tracer: Tracer | None = None
        self._walk: dict[str, torch.nn.Module] | None = None  # path -> module inside guest() or a pass (one walk)

    @staticmethod
    def accepts(model: Any) -> bool:
        return isinstance(model, torch.nn.Module)

    # -- the model's structure ----------------------------------------------------
    def modules(self) -> tuple[Module, ...]:
        if self._modules is None:
            self._modules = tuple(
                Module(
                    path,
                    type(m).__name__,
                    tuple(c.__name__ for c in type(m).__mro__),
                    next(iter(m.children()), None) is None,
                    mha.is_attention(m),
                )
                for path, m in self.model.named_modules()
            )
        return self._modules

    def params(self) -> tuple[Param, ...]:
        """Each tensor once (the model's first name for it), with all its other names."""
        if self._params is None:
            names: dict[int, list[str]] = {}
            first: dict[int, torch.nn.Parameter] = {}
            for name, p in self.model.named_parameters(remove_duplicate=False):
                names.setdefault(id(p), []).append(name)
                first.setdefault(id(p), p)
            types = {m.path: m.type for m in self.modules()}
            out = []
            for key, p in first.items():
                path = names[key][0]
                owner = path.rsplit(".", 1)[0] if "." in path else ""
                leaf = path.rsplit(".", 1)[-1]
                layout = _LAYOUTS.get(types.get(owner, ""), ()) if leaf == "weight" else ()
                out.append(
                    Param(
                        path,
                        owner,
                        role_of(path),
                        tuple(p.shape),
                        str(p.dtype).removeprefix("torch."),
                        p.requires_grad,
                        tuple(names[key]),
                        layout if len(layout) == p.dim() else (),
                    )
                )
            self._params = tuple(out)
        return self._params

    def param_names(self) -> tuple[str, ...]:
        return tuple(p.path for p in self.params())

    def tensor(self, name: str) -> torch.Tensor:
        """A parameter's live tensor, by any of its names: looked up in the modules' own
        dicts, as ``named_parameters`` names it (``get_parameter``'s attribute walk costs
        ~20 µs, a Recorder step asks for every parameter twice); anything else, and any
        name that is not one, through ``get_parameter`` (its error)."""
        *path, attr = name.split(".")
        mod = self.model
        try:
            for atom in path:
                mod = mod._modules[atom]  # type: ignore[assignment]
            p = mod._parameters[attr]
        except (KeyError, AttributeError, TypeError):
            p = None
        return p if p is not None else self.model.get_parameter(name)

    def module_object(self, path: str) -> torch.nn.Module:
        """The framework's own module at ``path`` (a callable: ``function *`` draws its curve)."""
        return self.model.get_submodule(path)

    def device(self) -> torch.device:
        return next((p.device for p in self.model.parameters()), torch.device("cpu"))

    def fingerprint(self) -> str:
        """The architecture, not the weights: parameter names, shapes, dtypes and module types."""
        h = hashlib.sha256()
        for name, p in self.model.named_parameters():
            h.update(f"{name}:{tuple(p.shape)}:{p.dtype};".encode())
        for name, m in self.model.named_modules():
            h.update(f"{name}={type(m).__name__};".encode())
        return h.hexdigest()[:16]

    def size(self) -> int:
        """Number of parameters, each shared tensor once."""
        return sum(p.numel() for p in self.model.parameters())

    def trainable(self) -> list[torch.Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def tensors(self, value: Any) -> list[torch.Tensor]:
        """Every tensor in a module's output or arguments, nested ones too, in order."""
        return tensors(value)

    # -- the model as a guest -----------------------------------------------------------
    @contextmanager
    def guest(self, params_needing_grad: tuple[str, ...] = (), train: bool = False):
        """Eval mode (train mode if ``train``) and grads on the named parameters, for the
        duration; every module's mode and every parameter's flag come back as found."""
        tree = dict(self.model.named_modules())  # one walk, which the passes inside reuse
        modes = [(m, m.training) for m in tree.values()]
        params = {id(p): p for m in tree.values() for p in m._parameters.values() if p is not None}
        flags = [(p, p.requires_grad) for p in params.values()]
        outer, self._walk = self._walk, tree
        try:
            if any(mode != train for _, mode in modes):  # per pass: a model already in that mode is left be
                self.model.train(train)
            for name in params_needing_grad:
                self.tensor(name).requires_grad_(True)
            yield
        finally:
            for m, mode in modes:  # only what changed: Module.__setattr__ costs microseconds a module
                if m.training != mode:
                    m.training = mode
            for p, flag in flags:
                if p.requires_grad != flag:
                    p.requires_grad_(flag)
            self._walk = outer

    @contextmanager
    def hooks(self, calls: dict[str, OnCall], enter: dict[str, OnEnter] | None = None):
        """``calls[path](args, kwargs, output)`` after each call of the module at ``path``
        (what it returns, if not None, replaces the output) and ``enter[path](args, kwargs)``
        before it, for the duration; nnspec's own work in a callback is not traced."""
        handles = []
        try:
            by_path = self._walk if self._walk is not None else dict(self.model.named_modules())
            for path, fn in calls.items():
                module = by_path[path] if path in by_path else self.model.get_submodule(path)
                handles.append(module.register_forward_hook(self._hook(fn), with_kwargs=True))
            for path, before in (enter or {}).items():
                module = by_path[path] if path in by_path else self.model.get_submodule(path)
                handles.append(module.register_forward_pre_hook(self._pre_hook(before), with_kwargs=True))
            yield
        finally:
            for h in handles:
                h.remove()

    # The hooks run once per hooked module per pass: a tracer's pause only when there is one
    # (a context manager per call costs more than the rest of a cheap hook).
    def _hook(self, fn: OnCall):
        def hook(module, args, kwargs, output):
            tracer = self._tracer
            if tracer is None:
                return fn(args, kwargs, output)
            with tracer.paused():
                return fn(args, kwargs, output)

        return hook

    def _pre_hook(self, fn: OnEnter):
        def hook(module, args, kwargs):
            tracer = self._tracer
            if tracer is None:
                fn(args, kwargs)
                return None
            with tracer.paused():
                fn(args, kwargs)
            return None

        return hook

    def on_grad(self, tensor: torch.Tensor, fn: Callable[[torch.Tensor], None]) -> None:
        """``fn(gradient)`` when the backward pass reaches ``tensor`` (an activation)."""
        tensor.register_hook(fn)

    def paused(self):
        return self._tracer.paused() if self._tracer is not None else nullcontext()

    # -- the passes ------------------------------------------------------------------
    def to_device(self, x: Any) -> Any:
        """A tensor, or every tensor of a Call, on the model's device."""
        if isinstance(x, Call):
            return x.map(self.to_device)
        return x.to(self.device()) if isinstance(x, torch.Tensor) else x

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
        """One forward pass, ``model(*call.args, **call.kwargs)``, with ``calls`` and
        ``enter`` hooked; raises PassFailed with the modules that ran if the model raises.
        ``grad`` turns autograd on or off for the pass whatever the caller's mode
        (a render inside ``torch.no_grad()`` still gets its gradients)."""
        ran: list[torch.nn.Module] = []  # named after the pass: a lookup per module call costs
        outer = self._walk
        tree = outer if outer is not None else dict(self.model.named_modules())  # hooks() uses it too

        def track(module, args, output):
            ran.append(module)

        def ran_names() -> list[str]:
            names = {id(m): n for n, m in tree.items()}
            return list(dict.fromkeys(names.get(id(m), type(m).__name__) for m in ran))

        weights: dict = {}
        self._tracer = Tracer(self.model) if trace else None
        self._walk = tree
        handle = torch.nn.modules.module.register_module_forward_hook(track)
        try:
            with (
                self.hooks(calls or {}, enter),
                torch.inference_mode(False),
                torch.set_grad_enabled(grad),
                mha.recording(self.model, list(attention), weights),
            ):
                try:
                    result = (
                        self._tracer.run(self.model, call) if self._tracer else self.model(*call.args, **call.kwargs)
                    )
                except Exception as e:
                    raise PassFailed(e, ran_names()) from e
            return ForwardResult(result, ran_names(), self._tracer.trace if self._tracer else None, weights)
        finally:
            handle.remove()
            self._tracer = None
            self._walk = outer

    def compute_loss(self, loss_fn: Any, result: Any, target: Any, call: Call) -> torch.Tensor:
        """``loss_fn(result, target, call)`` with autograd on (also inside the caller's
        ``torch.no_grad()``); nnspec's built-in losses are torch code."""
        with torch.enable_grad():
            return loss_fn(result, target, call)

    def backward(self, loss: torch.Tensor, wanted: dict) -> dict:
        """Gradients of ``loss`` for exactly the tensors in ``wanted`` (key -> tensor);
        None where a tensor does not reach the loss. No ``.grad`` is touched."""
        keys = list(wanted)
        try:
            with torch.enable_grad():
                grads = torch.autograd.grad(loss, [wanted[k] for k in keys], allow_unused=True)
        except Exception as e:
            raise PassFailed(e) from e
        return dict(zip(keys, grads))

    def shapes(self, call: Call | None) -> dict:
        """Output and input shapes of every module from one no-grad forward (for EXPLAIN);
        what it could not see stays out (EXPLAIN shows '?')."""
        shapes: dict = {}

        def seen(path: str, module: torch.nn.Module):
            def on_call(args, kwargs, output):
                out, inp = tensors(output), tensors((args, kwargs))
                if out:
                    t = out[0]
                    shapes.setdefault(("activation", path), tuple(t.shape))
                    shapes.setdefault(("output_grad", path), tuple(t.shape))
                    attn = mha.probe_shape(module, args, kwargs, output)
                    if attn is not None:
                        shapes.setdefault(("attention", path), attn)
                if inp:
                    shapes.setdefault(("input", path), tuple(inp[0].shape))

            return on_call

        if call is not None:
            calls = {path: seen(path, m) for path, m in self.model.named_modules() if path}
            with self.guest():
                try:
                    self.forward(self.to_device(call), calls)
                except PassFailed:
                    pass
        for p in self.params():
            shapes[("param", p.path)] = shapes[("grad", p.path)] = p.shape
        first = tensors(call.args) if call is not None else []
        if first:
            shapes[("input_grad", "")] = tuple(first[0].shape)
        return shapes

    # -- files ---------------------------------------------------------------------------
    def state(self) -> dict:
        return self.model.state_dict()

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state)

    def first_layer(self) -> tuple[str, dict] | None:
        """The first Embedding, Linear or ConvNd and what its input looks like (for ``nnspec init``)."""
        for m in self.model.modules():
            if isinstance(m, torch.nn.Embedding):
                return "Embedding", {"vocab": m.num_embeddings}
            if isinstance(m, torch.nn.Linear):
                return "Linear", {"features": m.in_features}
            if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Conv3d):
                return type(m).__name__, {"channels": m.in_channels}
        return None
