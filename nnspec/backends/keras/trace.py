"""The graph of one forward pass of a Keras model, as nnspec's ``Trace``.

Every layer's ``call`` (and, in a functional model, every Keras op of its graph, such
as ``keras.ops.add``) is wrapped for the pass: a leaf layer becomes a module node,
an op an op node, and each array it returns is tagged (by identity) with its node,
so edges follow the data: a residual ``Add`` has both its inputs. A functional or
sequential model gives every edge this way, on any Keras backend. A subclassed
model computes between its layers in backend code nnspec does not see: an array no
node made is taken to come from the node recorded last, and the trace says how many
edges it guessed so (``Trace.note``).
"""

from __future__ import annotations

from typing import Any

from nnspec.backends.keras.edge import leaves, shape
from nnspec.backends.pytorch.trace import Trace

ACTIVATIONS = frozenset({"relu", "gelu", "sigmoid", "tanh", "silu", "elu", "selu", "softplus", "leaky_relu"})


class KerasTracer:
    def __init__(self, model: Any, layers: list[tuple[str, Any]], leaf: dict[str, bool], functional: set[str]):
        self.model = model
        self.layers = layers  # (path, layer or op) to record; ops have "op" in self.ops
        self.leaf = leaf
        self.functional = functional  # container paths whose inner edges Keras gives exactly
        self.trace = Trace(captured_by="one forward pass with every Keras layer call (and functional op) wrapped")
        self.tags: dict[int, int] = {}  # id(array) -> node id
        self.keep: list[Any] = []  # the tagged arrays, alive for the pass (ids stay unique)
        self.stack: list[str] = []
        self.call_of: dict[str, list[int]] = {}
        self.guessed = 0

    def _tag(self, value: Any, node_id: int) -> None:
        for t in leaves(value):
            self.tags[id(t)] = node_id
            self.keep.append(t)

    def alias(self, before: list[Any], after: list[Any]) -> None:
        """``after[i]`` stands for ``before[i]`` (an argument Keras converted on the way in)."""
        for a, b in zip(before, after):
            if id(a) in self.tags and id(b) not in self.tags:
                self._tag(b, self.tags[id(a)])

    def _sources(self, args: Any) -> list[int]:
        found: list[int] = []
        unknown = False
        for t in leaves(args):
            n = self.tags.get(id(t))
            if n is None:
                unknown = True
            elif n not in found:
                found.append(n)
        if unknown and not found and self.trace.nodes:
            found = [self.trace.nodes[-1].id]
            if not self.stack or self.stack[-1] not in self.functional:
                self.guessed += 1
        return found

    def _calls(self, scope: list[str]) -> tuple[int, ...]:
        out = []
        for k in range(1, len(scope) + 1):
            prefix = ".".join(scope[:k])
            running = self.call_of.get(prefix)
            out.append(running[-1] if running else max(self.trace.calls.get(prefix, 1), 1))
        return tuple(out)

    def inputs(self, named: list[tuple[str, Any]]) -> None:
        positional = sum(1 for n, _ in named if n.isdigit())
        for name, value in named:
            if not leaves(value):
                continue
            if name.isdigit():
                name = "input" if positional == 1 else f"input {name}"
            node = self.trace.add("input", name, "input", (), shape(value))
            self._tag(value, node.id)

    def enter(self, path: str) -> None:
        self.stack.append(path)
        self.trace.calls[path] = self.trace.calls.get(path, 0) + 1
        self.call_of.setdefault(path, []).append(self.trace.calls[path])

    def leave(self, path: str, obj: Any, args: Any, output: Any, op: bool) -> None:
        self.stack.pop()
        self.trace.module_io.setdefault(path, (shape(args), shape(output)))
        if path and (op or self.leaf.get(path, False)):
            scope = path.split(".")
            if op:
                scope, name = scope[:-1], getattr(obj, "name", type(obj).__name__)
                node = self.trace.add("op", name, type(obj).__name__.lower(), scope, shape(output), self._calls(scope))
            else:
                node = self.trace.add("module", path, type(obj).__name__, scope, shape(output), self._calls(scope))
                act = getattr(getattr(obj, "activation", None), "__name__", None)
                if act in ACTIVATIONS:
                    self.trace.functions.add(act)
            self.trace.edges.extend((s, node.id) for s in self._sources(args))
            self._tag(output, node.id)
        running = self.call_of.get(path)
        if running:
            running.pop()

    def finish(self, result: Any) -> Trace:
        out = self.trace.add("output", "output", "output", (), shape(result))
        self.trace.edges.extend((s, out.id) for s in self._sources(result))
        self.keep.clear()
        self.tags.clear()
        if self.guessed:
            from nnspec.backends.keras import messages

            self.trace.note = messages.note_guessed_edges(self.guessed)
        return self.trace
