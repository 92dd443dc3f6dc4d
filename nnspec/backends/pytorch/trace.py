"""An eager trace of one forward pass: which modules and functional ops ran,
on what, with which shapes.

Module hooks see every module call; a ``TorchFunctionMode`` sees every
functional op (``x + y``, ``torch.cat``, ``F.gelu``, ``x.view``) called outside
a leaf module, as torchview does. Unlike ``torch.fx`` or ``torch.export``
this works on any model that runs, control flow and all: it records what
this forward pass did. Each output tensor is tagged with the node that made
it, so edges follow the data, residual connections included.

Every call is its own node: a module called twice (Hugging Face ViT's
``dropout``, a ReLU reused three times in a ResNet bottleneck) gives two nodes,
and each node records which call of each enclosing module made it
(``TNode.calls``), so collapsing to a depth keeps calls apart. An in-place op
(``out += identity``, ``ReLU(inplace=True)``) returns the tensor it modified:
its node takes the edge from the tensor's previous producer and becomes the
tensor's producer.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode

from nnspec.backends.base import Call
from nnspec.query.catalog import FUNCTIONS

TAG = "_nnspec_node"
# ops that only move, copy or reshape data, named as op_name gives them: the edge passes through them
PASSTHROUGH = {
    "contiguous", "to", "float", "double", "half", "bfloat16", "type_as", "detach", "clone",
    "dropout", "requires_grad", "cpu", "cuda", "getitem", "setitem", "size", "dim",
    "numel", "format", "repr", "len", "bool", "eq", "ne", "item", "tolist",
    "is_floating_point", "get",
    "view", "view_as", "reshape", "reshape_as", "transpose", "permute", "flatten", "unflatten",
    "squeeze", "unsqueeze", "expand", "expand_as", "t", "movedim", "split", "chunk", "unbind",
}  # fmt: skip
ACTIVATION_OPS = frozenset(FUNCTIONS)  # the catalog's activation functions, called as functions


def op_name(func) -> str:
    name = getattr(func, "__name__", str(func))
    if isinstance(func, torch._ops.OpOverload):  # an exported program's aten.flatten.using_ints: flatten
        name = func.overloadpacket.__name__
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name[:1] in ("i", "r") and name[1:] in ("add", "sub", "mul", "truediv", "matmul", "pow"):
            name = name[1:]
    return name.rstrip("_") or name


@dataclass
class TNode:
    id: int
    kind: str  # input | module | op | output
    name: str  # module path, op name, "input" or "output"
    type: str  # module class name or op name
    scope: tuple  # path components of the module whose forward ran it (a module: its own path)
    shape: tuple | None = None
    calls: tuple = ()  # per scope prefix (scope[:1], scope[:2], …): which call of that module made it (1, 2, …)


@dataclass
class Trace:
    nodes: list = field(default_factory=list)
    edges: list = field(default_factory=list)  # (source id, target id)
    module_io: dict = field(default_factory=dict)  # path -> (input shape, output shape), first call
    calls: dict = field(default_factory=dict)  # path -> number of calls
    functions: set = field(default_factory=set)  # activation functions called as functions
    captured_by: str = ""  # what a static structure was read from (a file's graph); "" for an eager trace
    note: str = ""  # what the card should say about how the edges were found, if anything

    def add(self, kind, name, type_, scope, shape=None, calls=()) -> TNode:
        node = TNode(len(self.nodes), kind, name, type_, tuple(scope), shape, tuple(calls))
        self.nodes.append(node)
        return node


def tensors(value) -> list:
    """Every tensor in a module's output or arguments (tuples, lists, dicts, nested), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors(v)]
    return []


def _shape(value):
    ts = tensors(value)
    return tuple(ts[0].shape) if ts else None


class _Mode(TorchFunctionMode):
    def __init__(self, tracer: Tracer):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.tracer.op(func, args, kwargs or {}, out)
        return out


class Tracer:
    """Hooks on every module plus the function mode, for one forward pass."""

    def __init__(self, model):
        self.model = model
        self.trace = Trace()
        self.stack: list[str] = []
        self.call_of: dict[str, list[int]] = {}  # path -> the call numbers of its calls now running
        self.pause = 0
        self.leaf = {p: next(iter(m.children()), None) is None for p, m in model.named_modules()}
        self.names = {id(m): p for p, m in model.named_modules()}

    def _producers(self, value) -> list[int]:
        seen = []
        for t in tensors(value):
            node = getattr(t, TAG, None)
            if node is not None and node not in seen:
                seen.append(node)
        return seen

    def _tag(self, value, node: TNode) -> None:
        for t in tensors(value):
            if isinstance(t, torch.nn.Parameter):
                continue  # the user's parameters stay untouched (and count as constants)
            try:
                setattr(t, TAG, node.id)
            except (AttributeError, RuntimeError):
                pass

    def _inside_leaf(self) -> bool:
        return bool(self.stack) and self.leaf.get(self.stack[-1], False)

    @contextmanager
    def paused(self):
        """nnspec's own work inside hooks (indexing, reductions) is not the model's."""
        self.pause += 1
        try:
            yield
        finally:
            self.pause -= 1

    def op(self, func, args, kwargs, out) -> None:
        if self.pause or self._inside_leaf() or not tensors(out):
            return
        name = op_name(func)
        sources = self._producers((args, kwargs))
        if not sources:
            return  # a constant (arange, zeros, a parameter alone): not part of the data flow
        if name in ACTIVATION_OPS:
            self.trace.functions.add(name)
        if name in PASSTHROUGH and len(sources) == 1:
            self._tag(out, self.trace.nodes[sources[0]])
            return
        scope = self.stack[-1].split(".") if self.stack and self.stack[-1] else []
        node = self.trace.add("op", name, name, scope, _shape(out), self._calls(scope))
        self.trace.edges.extend((s, node.id) for s in sources)
        self._tag(out, node)

    def _calls(self, scope) -> tuple:
        """Which call of each module enclosing ``scope`` is running (its latest when none is)."""
        out = []
        for k in range(1, len(scope) + 1):
            prefix = ".".join(scope[:k])
            running = self.call_of.get(prefix)
            out.append(running[-1] if running else max(self.trace.calls.get(prefix, 1), 1))
        return tuple(out)

    def _pre(self, module, args, kwargs):
        path = self.names.get(id(module), "")
        self.stack.append(path)
        self.trace.calls[path] = self.trace.calls.get(path, 0) + 1
        self.call_of.setdefault(path, []).append(self.trace.calls[path])

    def _post(self, module, args, kwargs, output):
        path = self.stack.pop() if self.stack else self.names.get(id(module), "")
        self.trace.module_io.setdefault(path, (_shape((args, kwargs)), _shape(output)))
        if path and self.leaf.get(path, False):
            scope = path.split(".")
            node = self.trace.add("module", path, type(module).__name__, scope, _shape(output), self._calls(scope))
            # read before tagging: an in-place module (ReLU(inplace=True)) returns its input,
            # whose previous producer feeds it
            self.trace.edges.extend((s, node.id) for s in self._producers((args, kwargs)))
            self._tag(output, node)
        running = self.call_of.get(path)
        if running:
            running.pop()

    def run(self, fn, call):
        """``fn(*call.args, **call.kwargs)`` (the forward pass) with the trace recording.

        Each argument holding tensors gets its own input node, named by its
        keyword (``input_ids``, ``attention_mask``); a lone positional argument
        is ``input``, several are ``input 0``, ``input 1``… A bare value is
        taken as the one positional argument."""
        if not isinstance(call, Call):
            call = Call((call,))
        positional = len(call.args)
        for name, value in call.values():
            if not tensors(value):
                continue
            if name.isdigit() and name not in call.kwargs:
                name = "input" if positional == 1 else f"input {name}"
            node = self.trace.add("input", name, "input", (), _shape(value))
            self._tag(value, node)
        handles = []
        try:
            for m in self.model.modules():
                # with_kwargs: modules called as block(hidden_states=x) still get their edges
                handles.append(m.register_forward_pre_hook(self._pre, with_kwargs=True))
                handles.append(m.register_forward_hook(self._post, with_kwargs=True))
            with _Mode(self):
                result = fn(*call.args, **call.kwargs)
        finally:
            for h in handles:
                h.remove()
            for _, value in call.values():
                _untag(value)
        out = self.trace.add("output", "output", "output", (), _shape(result))
        self.trace.edges.extend((s, out.id) for s in self._producers(result))
        _untag(result)
        return result


def _untag(value) -> None:
    for t in tensors(value):
        if TAG in getattr(t, "__dict__", {}):
            delattr(t, TAG)


def paused(tracer: Tracer | None):
    return tracer.paused() if tracer is not None else nullcontext()
