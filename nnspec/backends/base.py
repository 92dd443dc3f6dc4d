"""The backend interface: everything nnspec asks of a framework, in one place.

A backend wraps one model. The rest of nnspec reads the model only through it:

    modules()      the module tree: paths, class names (with bases), leaf or not
    params()       parameters by path: role, shape, layout, trainable, every name it has
    tensor(name)   a parameter's live tensor, by any of its names
    hooks(calls)   capture callbacks on chosen modules (after a call, or before it), for a
                   forward pass someone runs
    forward(call)  one forward pass, model(*args, **kwargs) (optionally traced, optionally
                   reading attention)
    compute_loss   the loss of a forward pass's result, in the framework's own arithmetic
    backward(...)  at most one backward pass, for chosen tensors only
    guest()        the context that leaves the model exactly as found
    capabilities   what this backend can do; a view that needs more fails alone, saying why

Nothing here imports a framework: the PyTorch backend lives in
``nnspec.backends.pytorch``; Keras and ONNX backends fit the same interface
(a Keras kernel is (in, out) and channels-last: ``Param.layout`` says so; ONNX
Runtime has no backward: ``Capabilities.backward`` is False with the reason).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

ROLES = ("weight", "bias", "other")


@dataclass(frozen=True, slots=True)
class Module:
    """One node of the module tree (the root has path ``""``)."""

    path: str
    type: str  # class name
    types: tuple[str, ...]  # the class and its bases, for type(Name) selectors
    leaf: bool  # has no child modules
    attention: bool = False  # the backend can read this module's attention weights


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter tensor; a tied or shared tensor is one Param with several names."""

    path: str  # its first name in the model's order
    module: str  # path of the module that owns it under that name
    role: str  # weight | bias | other
    shape: tuple[int, ...]
    dtype: str
    trainable: bool
    names: tuple[str, ...]  # every name it has, ``path`` first
    layout: tuple[str, ...] = ()  # what each axis is, e.g. ("out", "in") for a torch Linear weight

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"parameter role {self.role!r}: expected one of {', '.join(ROLES)}")

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do; ``why`` says, for each thing it cannot, the reason."""

    forward: bool = True
    backward: bool = True
    trace: bool = True
    attention: bool = True
    train: bool = True  # a spec's train: loop (an optimizer over its trainable tensors)
    why: tuple[tuple[str, str], ...] = ()

    def reason(self, what: str) -> str:
        return dict(self.why).get(what, f"this backend cannot run {what}")


# A capture callback: (args, kwargs, output) of one module call; it may return a
# replacement for the output (the PyTorch backend returns a copy where a later
# in-place operation would change what a gradient is taken of), or None.
OnCall = Callable[[tuple, dict, Any], Any]
# A capture callback before a module runs: (args, kwargs); it sees the inputs
# before the module (an in-place ReLU, say) can overwrite them.
OnEnter = Callable[[tuple, dict], None]


@dataclass
class Call:
    """How the model is called: ``model(*args, **kwargs)``."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def values(self) -> list[tuple[str, Any]]:
        """(name, value) of every argument: ``"0"``, ``"1"``… for positional ones."""
        return [(str(i), a) for i, a in enumerate(self.args)] + list(self.kwargs.items())

    def map(self, fn: Callable[[Any], Any]) -> Call:
        """The same call with ``fn`` applied to every argument."""
        return Call(tuple(fn(a) for a in self.args), {k: fn(v) for k, v in self.kwargs.items()})


@dataclass
class ForwardResult:
    result: Any  # what the model returned
    ran: list[str] = field(default_factory=list)  # module paths in call order, each once
    trace: Any = None  # the eager trace, when asked for
    attention: dict = field(default_factory=dict)  # path -> weights (B, H, L, S), when asked for


class PassFailed(Exception):
    """The model's own forward or backward raised; ``ran`` names the modules that ran."""

    def __init__(self, error: BaseException, ran: list[str] | None = None):
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
        self.ran = ran or []


class Backend(Protocol):
    name: str
    model: Any
    capabilities: Capabilities

    def modules(self) -> tuple[Module, ...]: ...
    def params(self) -> tuple[Param, ...]: ...
    def tensor(self, name: str) -> Any: ...
    def param_names(self) -> tuple[str, ...]: ...
    def module_object(self, path: str) -> Any: ...
    def device(self) -> Any: ...
    def fingerprint(self) -> str: ...
    def guest(self, params_needing_grad: tuple[str, ...] = (), train: bool = False) -> AbstractContextManager: ...
    def hooks(self, calls: dict[str, OnCall], enter: dict[str, OnEnter] | None = None) -> AbstractContextManager: ...
    def on_grad(self, tensor: Any, fn: Callable[[Any], None]) -> None: ...
    def forward(
        self,
        call: Call,
        calls: dict[str, OnCall] | None = None,
        *,
        enter: dict[str, OnEnter] | None = None,
        grad: bool = False,
        trace: bool = False,
        attention: tuple[str, ...] = (),
    ) -> ForwardResult: ...
    def compute_loss(self, loss_fn: Any, result: Any, target: Any, call: Call) -> Any: ...
    def backward(self, loss: Any, wanted: dict) -> dict: ...
    def paused(self) -> AbstractContextManager: ...
    def to_device(self, x: Any) -> Any: ...
    def trainable(self) -> list[Any]: ...
    def size(self) -> int: ...
    def tensors(self, value: Any) -> list[Any]: ...
    def shapes(self, call: Call | None) -> dict: ...
    def state(self) -> dict: ...
    def load_state(self, state: dict) -> None: ...


def walk(modules: tuple[Module, ...]) -> Iterator[Module]:
    """Every module but the root, in the model's order."""
    return (m for m in modules if m.path)


def module_at(be: Backend, path: str) -> Module:
    """The module at ``path`` ("" is the root)."""
    for m in be.modules():
        if m.path == path:
            return m
    raise KeyError(path)


def params_under(be: Backend, path: str) -> list[tuple[str, Param]]:
    """(name relative to ``path``, Param) of every tensor the module at ``path`` holds,
    its children's included, each tensor once (a tied one under its first name there)."""
    return list(_index(be)[0].get(path, ()))


def own_params(be: Backend, path: str) -> list[tuple[str, Param]]:
    """(own name, Param) of the parameters the module at ``path`` holds itself, under
    every name (a tied tensor shows under each module that holds it)."""
    return list(_index(be)[1].get(path, ()))


_INDEXES: dict[int, tuple[tuple[Param, ...], dict, dict]] = {}


def _index(be: Backend) -> tuple[dict[str, list[tuple[str, Param]]], dict[str, list[tuple[str, Param]]]]:
    """``params_under`` and ``own_params`` of every module path, from one walk over the
    parameters' names (asked per module, a walk each is quadratic: seconds on a large
    model). Kept per ``params()`` tuple, which a backend builds once."""
    params = be.params()
    hit = _INDEXES.get(id(params))
    if hit is not None and hit[0] is params:
        return hit[1], hit[2]
    under: dict[str, list[tuple[str, Param]]] = {}
    own: dict[str, list[tuple[str, Param]]] = {}
    for p in params:
        placed: set[str] = set()
        for name in p.names:
            parts = name.split(".")
            for i in range(len(parts)):
                path = ".".join(parts[:i])
                if path not in placed:  # the first of its names under that module
                    placed.add(path)
                    under.setdefault(path, []).append((".".join(parts[i:]), p))
            own.setdefault(".".join(parts[:-1]), []).append((parts[-1], p))
    if len(_INDEXES) >= 8:
        _INDEXES.clear()
    _INDEXES[id(params)] = (params, under, own)
    return under, own
