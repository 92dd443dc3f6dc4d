"""Exported PyTorch programs (``torch.export.save``, ``.pt2``) and TorchScript files
(``torch.jit.save``) behind the PyTorch backend.

``.pt2``: ``torch.export.load`` then ``torch.export.unflatten`` gives a module tree with
the original model's paths, whose modules (``InterpreterModule``) run the program's
graph and take forward hooks: every view works, as on the eager model (gradients by
autograd through the program's ATen ops). The program's own metadata
(``node.meta["nn_module_stack"]``) names each module's original class, so
``type(Conv2d)`` selects, and ``summary`` and ``graph`` show, the real classes. The
graph was fixed when the program was exported: train or eval mode, dropout and
batch-norm behaviour are the ones it was exported with.

TorchScript: ``torch.jit.load`` gives a ``RecursiveScriptModule``; its modules,
parameters and class names (``original_name``) are read as for any module, and its
structure comes from the TorchScript graph (module calls and ops, no shapes). A
ScriptModule takes no forward hooks, so views that need a forward pass fail at compile
time, saying so.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from nnspec.backends import messages
from nnspec.backends.base import Capabilities, Module
from nnspec.backends.pytorch.backend import TorchBackend
from nnspec.backends.pytorch.trace import PASSTHROUGH, Trace
from nnspec.errors import ModelError

_MISSING = {
    "forward": "forward pass (activations, gradients, trace)", "backward": "gradients",
    "trace": "eager trace", "attention": "attention weights", "train": "training steps",
}  # fmt: skip
STATIC = "the TorchScript graph (module calls and ops as scripted, no shapes: nothing ran)"


@dataclass
class ExportedModel:
    """What ``load`` returns: the module nnspec runs and what the file says of it."""

    kind: str  # pt2 | torchscript
    module: torch.nn.Module  # the unflattened program, or the RecursiveScriptModule
    types: dict[str, str] = field(default_factory=dict)  # module path -> qualified original class name
    path: str = ""
    program: Any = None  # the ExportedProgram (pt2)


def load(path: str, factory_model: Any = None) -> ExportedModel:
    """The program in the file at ``path`` (a .pt2 or a TorchScript file)."""
    from nnspec.backends.files import sniff

    kind = sniff(path)
    if factory_model is not None:
        raise ModelError(messages.whole_program(path, kind or "program"), None, messages.whole_program_hint())
    if kind == "pt2":
        program = torch.export.load(path)
        module = torch.export.unflatten(program)
        return ExportedModel("pt2", module, _program_types(program), path, program)
    if kind == "torchscript":
        script = torch.jit.load(path, map_location="cpu")
        types = {p: str(getattr(m, "original_name", type(m).__name__)) for p, m in script.named_modules()}
        return ExportedModel("torchscript", script, types, path)
    raise ModelError(messages.unreadable_file(path, kind or "program", "it is no .pt2 or TorchScript file"))


def _program_types(program: Any) -> dict[str, str]:
    """Module path -> the original class (qualified name), from every node's module stack."""
    types: dict[str, str] = {}
    for node in program.graph.nodes:
        for path, cls in (node.meta.get("nn_module_stack") or {}).values():
            name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
            types.setdefault(str(path), name)
    return types


def _bases(qualified: str) -> tuple[str, ...]:
    """The class and its bases, when its module is already imported (nothing is imported
    to find out: a class from elsewhere keeps its own name only)."""
    module, _, name = qualified.rpartition(".")
    obj: Any = sys.modules.get(module)
    for part in name.split("."):
        obj = getattr(obj, part, None)
    if isinstance(obj, type):
        return tuple(c.__name__ for c in obj.__mro__)
    return (name.rsplit(".", 1)[-1],)


class ExportedBackend(TorchBackend):
    """An ``ExportedModel``: the PyTorch backend on its module, with the original class names."""

    name = "exported"

    def __init__(self, model: ExportedModel):
        super().__init__(model.module)
        self.source = model
        if model.kind == "pt2":
            self.capabilities = Capabilities(attention=False, why=(("attention", messages.exported_attention()),))
        if model.kind == "torchscript":
            self.name = "torchscript"
            self.capabilities = Capabilities(
                forward=False,
                backward=False,
                trace=False,
                attention=False,
                train=False,
                why=tuple((what, messages.torchscript_no_hooks(shown)) for what, shown in _MISSING.items()),
            )

    @staticmethod
    def accepts(model: Any) -> bool:
        return isinstance(model, ExportedModel)

    def modules(self) -> tuple[Module, ...]:
        if self._modules is None:
            out = []
            for path, m in self.model.named_modules():
                qualified = self.source.types.get(path)
                types = _bases(qualified) if qualified else (type(m).__name__,)
                if qualified and self.source.kind == "torchscript":
                    types = (qualified,)  # original_name is the class name alone
                leaf = next(iter(m.children()), None) is None
                out.append(Module(path, types[0], types, leaf))
            self._modules = tuple(out)
        return self._modules

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for p in self.params():
            h.update(f"{p.path}:{p.shape}:{p.dtype};".encode())
        for m in self.modules():
            h.update(f"{m.path}={m.type};".encode())
        return h.hexdigest()[:16]

    def tensor(self, name: str) -> torch.Tensor:
        if self.source.kind == "torchscript":  # get_parameter is not supported on ScriptModules
            return dict(self.model.named_parameters())[name]
        return super().tensor(name)

    def module_object(self, path: str) -> torch.nn.Module:
        if self.source.kind == "torchscript":
            return dict(self.model.named_modules())[path]
        return super().module_object(path)

    def example_input(self) -> list[tuple[str, tuple[int, ...], str]]:
        """(argument name, shape, dtype) of the inputs the program was exported with: it
        takes those shapes (a dimension not exported as dynamic is fixed)."""
        program = self.source.program
        if program is None or program.example_inputs is None:
            return []
        args, kwargs = program.example_inputs
        out = [(str(i), tuple(a.shape), str(a.dtype).removeprefix("torch.")) for i, a in enumerate(args)]
        out += [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in kwargs.items()]
        return [o for o in out if o[1] is not None]

    def first_layer(self) -> tuple[str, dict] | None:
        """The first Embedding, Linear or ConvNd by its original class, and its input size."""
        shapes = {p.path: p.shape for p in self.params()}
        for m in self.modules():
            weight = shapes.get(f"{m.path}.weight" if m.path else "weight")
            if weight is None or len(weight) < 2:
                continue
            if m.type == "Embedding":
                return "Embedding", {"vocab": weight[0]}
            if m.type == "Linear":
                return "Linear", {"features": weight[1]}
            if m.type in ("Conv1d", "Conv2d", "Conv3d"):
                return m.type, {"channels": weight[1]}
        return None

    def structure(self, what: str = "summary") -> Trace | None:
        """A TorchScript model's structure without running it: module calls and ops from
        its graph, as the eager trace records them (leaf modules and ops, data-flow
        edges), with no shapes. None for a .pt2 (its eager trace is the real one)."""
        if self.source.kind != "torchscript":
            return None
        trace = Trace()
        trace.captured_by = STATIC  # the static structure says what it is
        for m in self.modules():
            trace.module_io[m.path] = (None, None)  # nothing ran: no shapes, and not "not run"
        _Scripted(self.model, {m.path: m for m in self.modules()}, trace).run()
        return trace


class _Scripted:
    """Walks a ScriptModule's graph, inlining calls of modules that have children."""

    def __init__(self, script: Any, modules: dict[str, Module], trace: Trace):
        self.objects = dict(script.named_modules())
        self.modules = modules
        self.trace = trace

    def run(self) -> None:
        graph = self.objects[""].graph
        inputs = list(graph.inputs())[1:]  # the first is self
        env: dict[int, list[int]] = {}
        for i, v in enumerate(inputs):
            name = "input" if len(inputs) == 1 else f"input {i}"
            env[v.unique()] = [self.trace.add("input", name, "input", ()).id]
        mods = {graph.inputs().__next__().unique(): ""}
        outs = self._block(graph, "", env, mods)
        node = self.trace.add("output", "output", "output", ())
        self.trace.edges.extend((s, node.id) for s in outs)

    def _sources(self, values, env) -> list[int]:
        seen: list[int] = []
        for v in values:
            for s in env.get(v.unique(), []):
                if s not in seen:
                    seen.append(s)
        return seen

    def _block(self, block, path: str, env: dict, mods: dict) -> list[int]:
        for n in block.nodes():
            self._node(n, path, env, mods)
        return self._sources(list(block.outputs()), env)

    def _node(self, n, path: str, env: dict, mods: dict) -> None:
        kind = n.kind()
        ins = list(n.inputs())
        outs = list(n.outputs())
        if kind == "prim::GetAttr":
            owner = mods.get(ins[0].unique())
            if owner is not None:
                child = f"{owner}.{n.s('name')}" if owner else n.s("name")
                if child in self.modules:
                    mods[outs[0].unique()] = child
            return
        if kind == "prim::CallMethod" and ins and ins[0].unique() in mods and n.s("name") == "forward":
            target = mods[ins[0].unique()]
            sources = self._sources(ins[1:], env)
            self.trace.calls[target] = self.trace.calls.get(target, 0) + 1
            module = self.modules[target]
            if module.leaf:
                node = self.trace.add("module", target, module.type, target.split("."), None, self._calls(target))
                self.trace.edges.extend((s, node.id) for s in sources)
                for o in outs:
                    env[o.unique()] = [node.id]
                return
            graph = self.objects[target].graph
            inner: dict[int, list[int]] = {}
            params = list(graph.inputs())
            for v, arg in zip(params[1:], ins[1:]):
                inner[v.unique()] = env.get(arg.unique(), [])
            result = self._block(graph, target, inner, {params[0].unique(): target})
            for o in outs:
                env[o.unique()] = result
            return
        blocks = list(n.blocks())
        sources = self._sources(ins, env)
        for b in blocks:  # prim::If, prim::Loop: what runs inside, then the node's outputs
            sources += [s for s in self._block(b, path, env, mods) if s not in sources]
        name = kind.split("::", 1)[-1].rstrip("_")
        if not sources:
            return  # a constant: not part of the data flow
        if not kind.startswith("aten::") or (name in PASSTHROUGH and len(sources) == 1) or blocks:
            for o in outs:  # constructs, unpacking, control flow: the data passes through
                env[o.unique()] = sources
            return
        scope = path.split(".") if path else []
        node = self.trace.add("op", name, name, scope, None, self._calls(path) if path else ())
        self.trace.edges.extend((s, node.id) for s in sources)
        for o in outs:
            env[o.unique()] = [node.id]

    def _calls(self, path: str) -> tuple:
        parts = path.split(".")
        return tuple(max(self.trace.calls.get(".".join(parts[:k]), 1), 1) for k in range(1, len(parts) + 1))
