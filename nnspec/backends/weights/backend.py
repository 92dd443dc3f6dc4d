"""The weights backend: a weights-only file (safetensors, a sharded index, a torch
state_dict) behind nnspec's backend interface.

A file without code has tensors and names, nothing more:

    modules()   the dotted prefixes of the tensor names (``encoder.layer.0``), root first;
                a module's type is unknown: "tensors" for a prefix that holds tensors
                itself, "group" for one that only holds other prefixes, the file's kind
                for the root; a leaf has no child prefixes (as a torch module has no
                children)
    params()    every tensor: role by its name (weight, bias, other: ``running_mean``
                is other), shape and dtype from the header, layout unknown; trainable
                is a guess (a floating tensor that is not a normalisation's running
                statistic), since a file does not say
    tensor()    reads that one tensor from the file, when a view asks for it

No forward pass, backward pass, trace, attention or training: views that need one
fail at compile time, alone, with ``capabilities.why``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from nnspec.backends import messages
from nnspec.backends.base import Call, Capabilities, ForwardResult, Module, OnCall, OnEnter, Param, PassFailed
from nnspec.backends.weights.files import WeightsFile

_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")  # a BatchNorm's buffers
_MISSING = ("forward", "backward", "trace", "attention", "train")
_WHAT = {"forward": "forward pass", "backward": "backward pass", "trace": "traced forward pass",
         "attention": "attention pass", "train": "training step"}  # fmt: skip


def role_of(name: str) -> str:
    """weight, bias or other, from a tensor's own name (as the PyTorch backend reads it)."""
    leaf = name.rsplit(".", 1)[-1]
    if "weight" in leaf:
        return "weight"
    if "bias" in leaf:
        return "bias"
    return "other"


def _owner(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


class WeightsBackend:
    """One ``WeightsFile``; its modules and params come from the header alone."""

    name = "weights"
    capabilities = Capabilities(
        forward=False,
        backward=False,
        trace=False,
        attention=False,
        train=False,
        why=tuple((what, messages.weights_only(_WHAT[what])) for what in _MISSING),
    )

    def __init__(self, model: WeightsFile):
        self.model = model
        self._modules: tuple[Module, ...] | None = None
        self._params: tuple[Param, ...] | None = None

    @staticmethod
    def accepts(model: Any) -> bool:
        return isinstance(model, WeightsFile)

    # -- structure, from the names ------------------------------------------------------
    def modules(self) -> tuple[Module, ...]:
        if self._modules is None:
            order: dict[str, None] = {"": None}
            holds: set[str] = set()
            for name in self.model.entries:
                owner = _owner(name)
                holds.add(owner)
                parts = owner.split(".") if owner else []
                for i in range(1, len(parts) + 1):
                    order.setdefault(".".join(parts[:i]), None)
            parents = {_owner(p) for p in order if p}
            out = []
            for path in order:
                kind = self.model.kind if not path else ("tensors" if path in holds else "group")
                out.append(Module(path, kind, (kind,), path not in parents))
            self._modules = tuple(out)
        return self._modules

    def params(self) -> tuple[Param, ...]:
        """Each tensor once (a state_dict's tied tensors: one Param with every name)."""
        if self._params is None:
            out: list[Param] = []
            seen: set[str] = set()
            for name, e in self.model.entries.items():
                if name in seen:
                    continue
                names = e.names or (name,)
                seen.update(names)
                leaf = name.rsplit(".", 1)[-1]
                floating = e.dtype.startswith(("float", "bfloat", "complex"))
                out.append(
                    Param(
                        name, _owner(name), role_of(name), e.shape, e.dtype, floating and leaf not in _STATISTICS, names
                    )
                )
            self._params = tuple(out)
        return self._params

    def param_names(self) -> tuple[str, ...]:
        return tuple(p.path for p in self.params())

    def tensor(self, name: str) -> Any:
        """The tensor by any of its names, read from the file now."""
        if name not in self.model.entries:
            raise KeyError(name)
        return self.model.tensor(name)

    def module_object(self, path: str) -> Any:
        raise KeyError(f"'{path}' is a prefix of tensor names in a weights file, not a module that runs")

    def structure(self, what: str = "summary") -> Any:
        """The module tree as a trace with no pass, for ``summary``: module nodes, no
        edges, no shapes. None for ``graph``: a weights file has no data flow to draw."""
        from nnspec.backends.pytorch.trace import Trace

        if what != "summary":
            return None
        trace = Trace()
        trace.captured_by = "the tensor names of a weights file (nothing ran)"
        for m in self.modules():
            trace.module_io[m.path] = (None, None)  # nothing ran: no shapes, and not "not run"
            if m.path and m.leaf:
                trace.add("module", m.path, m.type, m.path.split("."))
        return trace

    def device(self) -> Any:
        import torch

        return torch.device("cpu")

    def fingerprint(self) -> str:
        """The architecture, not the weights: tensor names, shapes and dtypes."""
        h = hashlib.sha256()
        for p in self.params():
            h.update(f"{p.path}:{p.shape}:{p.dtype};".encode())
        return h.hexdigest()[:16]

    def size(self) -> int:
        return sum(p.numel for p in self.params())

    def trainable(self) -> list[Any]:
        return []

    def tensors(self, value: Any) -> list[Any]:
        return []

    def first_layer(self) -> tuple[str, dict] | None:
        return None

    # -- no code to run -------------------------------------------------------------------
    def guest(self, params_needing_grad: tuple[str, ...] = (), train: bool = False):
        return nullcontext()

    def paused(self):
        return nullcontext()

    def hooks(self, calls: dict[str, OnCall], enter: dict[str, OnEnter] | None = None):
        if calls or enter:
            raise PassFailed(RuntimeError(self.capabilities.reason("forward")))
        return nullcontext()

    def on_grad(self, tensor: Any, fn: Callable[[Any], None]) -> None:
        raise PassFailed(RuntimeError(self.capabilities.reason("backward")))

    def to_device(self, x: Any) -> Any:
        return x

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
        raise PassFailed(RuntimeError(self.capabilities.reason("forward")))

    def compute_loss(self, loss_fn: Any, result: Any, target: Any, call: Call) -> Any:
        raise PassFailed(RuntimeError(self.capabilities.reason("forward")))

    def backward(self, loss: Any, wanted: dict) -> dict:
        raise PassFailed(RuntimeError(self.capabilities.reason("backward")))

    def shapes(self, call: Call | None) -> dict:
        """Parameter shapes from the header (EXPLAIN); nothing runs."""
        return {("param", p.path): p.shape for p in self.params()}

    def state(self) -> dict:
        return self.model.state()

    def load_state(self, state: dict) -> None:
        raise PassFailed(RuntimeError("a weights file is read, never written, by nnspec"))
