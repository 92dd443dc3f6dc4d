"""The ONNX backend: an ONNX file, run by ONNX Runtime, behind nnspec's backend interface.

- modules: the graph's nodes grouped into the torch module paths the exporter
  wrote (``nnspec.backends.onnx.graph``), containers included;
- params: the initializers (floating point and 8-bit ones; integer shapes and
  axes are constants), named as in the file; a name no selector can spell
  (``onnx::Conv_40``) gets the name of the module that uses it first
  (``layer1.0.conv1.weight``) and keeps the file's as a second name;
- forward: one ``session.run`` with every node output a callback needs added to
  the graph's outputs (a session per set of outputs, cached), then the callbacks
  in graph order, with torch tensors, as if hooks had fired;
- no backward pass, no attention weights, no training: ``capabilities`` says why.

This module imports onnx and onnxruntime only when a model comes (``accepts``
looks at the class name), so a torch model never loads them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch

from nnspec.backends.base import Call, Capabilities, ForwardResult, Module, OnCall, OnEnter, Param, PassFailed
from nnspec.backends.onnx import graph as G
from nnspec.backends.onnx import messages
from nnspec.backends.pytorch.trace import Trace, tensors
from nnspec.errors import ModelError

# ONNX TensorProto data types read as parameters: float, uint8, int8, float16, double, bfloat16
_PARAM_TYPES = {1, 2, 3, 10, 11, 16}
# op -> {input index: role} of the inputs that are a layer's parameters
_INPUT_ROLES: dict[str, dict[int, str]] = {
    "Conv": {1: "weight", 2: "bias"},
    "ConvTranspose": {1: "weight", 2: "bias"},
    "Gemm": {1: "weight", 2: "bias"},
    "MatMul": {1: "weight"},
    "Gather": {0: "weight"},
    "BatchNormalization": {1: "weight", 2: "bias", 3: "other", 4: "other"},
    "LayerNormalization": {1: "weight", 2: "bias"},
    "InstanceNormalization": {1: "weight", 2: "bias"},
    "GroupNormalization": {1: "weight", 2: "bias"},
    "LSTM": {1: "weight", 2: "weight", 3: "bias"},
    "GRU": {1: "weight", 2: "weight", 3: "bias"},
    "RNN": {1: "weight", 2: "weight", 3: "bias"},
}
_SPATIAL = {3: ("w",), 4: ("h", "w"), 5: ("d", "h", "w")}
# ops that only move or reshape their first input: the graph's edge passes through them
_PASSTHROUGH = {"Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Dropout", "Transpose", "Expand"}


def _role_by_name(name: str) -> str | None:
    leaf = name.rsplit(".", 1)[-1]
    if "weight" in leaf:
        return "weight"
    if "bias" in leaf:
        return "bias"
    return None


def _attr(node: Any, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _layout(op: str, index: int, node: Any, rank: int) -> tuple[str, ...]:
    if op == "Conv" and index == 1 and rank in _SPATIAL:
        return ("out", "in", *_SPATIAL[rank])
    if op == "ConvTranspose" and index == 1 and rank in _SPATIAL:
        return ("in", "out", *_SPATIAL[rank])
    if op == "Gemm" and index == 1 and rank == 2:
        return ("out", "in") if _attr(node, "transB", 0) else ("in", "out")
    if op == "MatMul" and index == 1 and rank == 2:
        return ("in", "out")
    if op == "Gather" and index == 0 and rank == 2:
        return ("token", "dim")
    return ()


def _to_torch(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(value))
    return value


class OnnxBackend:
    """One ONNX model (an ``OnnxModel`` from ``files.load``, or an ``onnx.ModelProto``)."""

    name = "onnx"
    capabilities = Capabilities(
        forward=True,
        backward=False,
        trace=True,
        attention=False,
        train=False,
        why=(
            ("backward", messages.NO_BACKWARD),
            ("attention", messages.NO_ATTENTION),
            ("train", messages.NO_TRAIN),
        ),
    )

    def __init__(self, model: Any):
        if not hasattr(model, "proto"):  # a bare ModelProto
            from nnspec.backends.onnx.files import OnnxModel

            model = OnnxModel(model)
        self.model = model
        self._read()
        self._armed: list[tuple[dict, dict]] = []

    def _read(self) -> None:
        g = self.model.proto.graph
        self._inits = {i.name: i for i in g.initializer}
        self.structure = G.read(g, set(self._inits))
        self._inputs = [i.name for i in g.input if i.name not in self._inits]
        self._input_types = {i.name: i.type.tensor_type.elem_type for i in g.input}
        self._outputs = [o.name for o in g.output]
        self._cache: dict[str, torch.Tensor] = {}
        self._params: tuple[Param, ...] | None = None
        self._notes: dict[str, list[str]] = {}
        self._alias: dict[str, str] = {}

    @staticmethod
    def accepts(model: Any) -> bool:
        cls = type(model)
        if cls.__name__ == "OnnxModel" and cls.__module__ == "nnspec.backends.onnx.files":
            return True
        return cls.__name__ == "ModelProto" and cls.__module__.startswith("onnx")

    # -- the model's structure ------------------------------------------------------
    def modules(self) -> tuple[Module, ...]:
        return tuple(Module(m.path, m.type, m.types, m.leaf) for m in self.structure.modules.values())

    def params(self) -> tuple[Param, ...]:
        """The initializers that are parameters, in the file's order."""
        if self._params is None:
            self._params = self._read_params()
        return self._params

    def _read_params(self) -> tuple[Param, ...]:
        from onnx import helper

        uses: dict[str, list[tuple[G.Node, int]]] = {}
        for n in self.structure.nodes:
            for k, name in enumerate(n.proto.input):
                if name in self._inits:
                    uses.setdefault(name, []).append((n, k))
        modules = self.structure.modules
        out: list[Param] = []
        taken = set(self._inits)
        for name, init in self._inits.items():
            first = uses.get(name, [])
            n, k = first[0] if first else (None, -1)
            by_input = _INPUT_ROLES.get(n.op_type, {}).get(k) if n is not None else None
            if init.data_type not in _PARAM_TYPES and by_input is None:
                continue  # an integer shape, axes or index: a constant
            role = _role_by_name(name) or by_input or "other"
            shape = tuple(int(d) for d in init.dims)
            layout = _layout(n.op_type, k, n.proto, len(shape)) if n is not None else ()
            prefix = name.rsplit(".", 1)[0] if "." in name else ""
            module = prefix if prefix and prefix in modules else (n.owner if n is not None else "")
            names = [name]
            if G.safe_name(name) != name:  # no selector can spell it: the module's name for it first
                alias = f"{module}.{role}" if module and role != "other" else G.safe_name(name)
                if alias not in taken:
                    taken.add(alias)
                    names.insert(0, alias)
                    self._alias[alias] = name
            dtype = helper.tensor_dtype_to_np_dtype(init.data_type).name
            out.append(Param(names[0], module, role, shape, dtype, False, tuple(names), layout))
        self._find_folds(uses)
        return tuple(out)

    def _find_folds(self, uses: dict) -> None:
        """Notes on weights the exporter folded a BatchNorm into."""
        s = self.structure
        bn_nodes = {n.owner for n in s.nodes if n.op_type == "BatchNormalization"}
        for n in s.nodes:
            if n.op_type not in ("Conv", "ConvTranspose", "Gemm") or len(n.proto.input) < 2:
                continue
            weight = n.proto.input[1]
            if weight not in self._inits:
                continue
            module = s.modules.get(n.owner)
            rule = str(n.meta.get(G.REWRITE_RULE, ""))
            bn_class = module is not None and "BatchNorm" in module.type and n.owner not in bn_nodes
            if "BatchNorm" in rule or bn_class:
                for name in n.proto.input[1:3]:
                    if name in self._inits:
                        self._notes.setdefault(self._shown(name), []).append(messages.batchnorm_folded(n.owner, name))
            elif not s.has_metadata and "::" in weight:
                self._notes.setdefault(self._shown(weight), []).append(messages.computed_weight(weight, n.owner))

    def _shown(self, file_name: str) -> str:
        return next((a for a, f in self._alias.items() if f == file_name), file_name)

    def param_notes(self, name: str) -> tuple[str, ...]:
        """What a view of the parameter ``name`` should say: a BatchNorm folded into it."""
        self.params()
        return tuple(self._notes.get(self._alias.get(name, name), ()) or self._notes.get(name, ()))

    def folded(self) -> dict[str, list[str]]:
        """Parameter name -> notes, for every weight an exporter folded a BatchNorm into."""
        self.params()
        return dict(self._notes)

    def param_names(self) -> tuple[str, ...]:
        return tuple(p.path for p in self.params())

    def tensor(self, name: str) -> torch.Tensor:
        """An initializer as a torch tensor (CPU), by any of its names."""
        file_name = self._alias.get(name, name)
        if file_name not in self._cache:
            if file_name not in self._inits:
                raise ModelError(messages.no_such_tensor(name))
            from onnx import numpy_helper

            array = numpy_helper.to_array(self._inits[file_name], base_dir=self._base_dir())
            self._cache[file_name] = torch.from_numpy(np.array(array))
        return self._cache[file_name]

    def _base_dir(self) -> str:
        import os

        return os.path.dirname(self.model.path) if self.model.path else ""

    def module_object(self, path: str) -> None:
        """No callable module behind an ONNX node (``function *`` skips it)."""
        return None

    def device(self) -> torch.device:
        return torch.device("cpu")

    def fingerprint(self) -> str:
        """The architecture, not the weights: nodes' ops and modules, initializers' names and shapes."""
        h = hashlib.sha256()
        for n in self.structure.nodes:
            h.update(f"{n.op_type}@{n.owner};".encode())
        for name, init in self._inits.items():
            h.update(f"{name}:{tuple(init.dims)}:{init.data_type};".encode())
        return h.hexdigest()[:16]

    def size(self) -> int:
        return sum(p.numel for p in self.params())

    def trainable(self) -> list[torch.Tensor]:
        return []  # ONNX Runtime does not train

    def tensors(self, value: Any) -> list[torch.Tensor]:
        return tensors(value)

    # -- the model as a guest: nothing to set or restore -------------------------------
    @contextmanager
    def guest(self, params_needing_grad: tuple[str, ...] = (), train: bool = False):
        yield

    @contextmanager
    def hooks(self, calls: dict[str, OnCall], enter: dict[str, OnEnter] | None = None):
        """The callbacks fire in every ``forward`` inside the block."""
        armed = (dict(calls), dict(enter or {}))
        self._armed.append(armed)
        try:
            yield
        finally:
            self._armed.remove(armed)

    def on_grad(self, tensor: Any, fn: Callable[[Any], None]) -> None:
        raise ModelError(messages.no_gradients())

    def paused(self):
        return nullcontext()

    # -- the passes ---------------------------------------------------------------------
    def to_device(self, x: Any) -> Any:
        """The tensors stay torch tensors on the CPU; they become numpy at the session's edge."""
        if isinstance(x, Call):
            return x.map(self.to_device)
        return x.detach().cpu() if isinstance(x, torch.Tensor) else x

    def _feeds(self, call: Call) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Graph input -> array, and graph input -> the argument's name in a trace."""
        from onnx import helper

        if not isinstance(call, Call):
            call = Call((call,))
        if len(call.args) > len(self._inputs):
            raise ValueError(messages.too_many_inputs(len(call.args), self._inputs))
        given: dict[str, Any] = dict(zip(self._inputs, call.args))
        shown = {
            name: ("input" if len(call.args) == 1 else f"input {i}")
            for i, name in enumerate(self._inputs[: len(call.args)])
        }
        for k, v in call.kwargs.items():
            if k not in self._inputs:
                raise ValueError(messages.unknown_input(k, self._inputs))
            given[k] = v
            shown[k] = k
        for name in self._inputs:
            if name not in given:
                raise ValueError(messages.missing_input(name, self._inputs))
        feeds = {}
        for name, v in given.items():
            a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            elem = self._input_types.get(name, 0)
            if elem:
                want = helper.tensor_dtype_to_np_dtype(elem)
                if a.dtype != want:
                    a = a.astype(want)
            feeds[name] = a
        return feeds, shown

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
        """One ``session.run``; ``calls[path](args, kwargs, output)`` and ``enter[path](args,
        kwargs)`` then fire for each call of those modules, in graph order, with torch
        tensors (a returned value is ignored: nothing runs after). The model's own
        failure (a missing input, a shape ONNX Runtime refuses) raises PassFailed."""
        calls, enter = dict(calls or {}), dict(enter or {})
        for c, e in self._armed:
            calls.update({p: f for p, f in c.items() if p not in calls})
            enter.update({p: f for p, f in e.items() if p not in enter})
        mods = self.structure.modules
        wanted: list[str] = []
        for path in calls:
            for run in mods[path].calls if path in mods else ():
                wanted += G.outputs(run)
        for path in enter:
            for run in mods[path].calls if path in mods else ():
                wanted += G.outside_inputs(run, self.structure.constants)
        if trace:
            wanted += [o for n in self.structure.nodes for o in n.proto.output if o]
        try:
            feeds, shown = self._feeds(call)
            skip = set(self._outputs) | set(feeds) | self.structure.constants
            extra = tuple(dict.fromkeys(w for w in wanted if w not in skip))
            session = self.model.session(frozenset(extra))
            names = [o.name for o in session.get_outputs()]
            got = session.run(names, feeds)
        except Exception as e:
            raise PassFailed(e, []) from e
        values: dict[str, Any] = {n: _to_torch(v) for n, v in zip(names, got)}
        values.update({n: _to_torch(v) for n, v in feeds.items()})
        result: Any = values[self._outputs[0]] if len(self._outputs) == 1 else {o: values[o] for o in self._outputs}
        self._fire(calls, enter, values)
        done = self._trace(values, shown) if trace else None
        return ForwardResult(result, self._ran(), done, {})

    def _events(self, paths: set[str], what: str) -> list[tuple]:
        out = []
        for path in paths:
            info = self.structure.modules.get(path)
            if info is None:
                continue
            depth = path.count(".") + 1 if path else 0
            for run in info.calls:
                if what == "enter":
                    out.append((run[0].index, 0, depth, path, run))
                else:
                    out.append((run[-1].index, 1, -depth, path, run))
        return out

    def _fire(self, calls: dict, enter: dict, values: dict) -> None:
        consts = self.structure.constants
        events = self._events(set(enter), "enter") + self._events(set(calls), "call")
        for _, phase, _, path, run in sorted(events, key=lambda e: e[:3]):
            args = tuple(values[n] for n in G.outside_inputs(run, consts) if n in values)
            if phase == 0:
                enter[path](args, {})
            else:
                outs = [values[o] for o in G.outputs(run) if o in values]
                calls[path](args, {}, outs[0] if len(outs) == 1 else tuple(outs))

    def _ran(self) -> list[str]:
        """Module paths in the order they finished (a module once)."""
        ends = sorted(
            ((info.calls[0][-1].index, -(path.count(".") + 1 if path else 0), path)
             for path, info in self.structure.modules.items() if info.calls),
        )  # fmt: skip
        return [p for _, _, p in ends]

    def _trace(self, values: dict, shown: dict[str, str]) -> Trace:
        """The graph as nnspec's trace: a node per call of a leaf module, an op node per
        node of its own, edges by tensor names."""
        s = self.structure
        t = Trace()
        t.captured_by = "the file's ONNX graph, shapes from one ONNX Runtime run"
        producer: dict[str, int] = {}

        def shape(name: str) -> tuple | None:
            v = values.get(name)
            return tuple(v.shape) if isinstance(v, torch.Tensor) else None

        for name in self._inputs:
            if name in shown:
                producer[name] = t.add("input", shown[name], "input", (), shape(name)).id
        run_of: dict[int, tuple[str, int]] = {}  # node index -> (leaf path, call number)
        for path, info in s.modules.items():
            if path and info.leaf:
                for k, run in enumerate(info.calls, 1):
                    for n in run:
                        run_of[n.index] = (path, k)
        call_no: dict[tuple[str, int], int] = {}
        for path, info in s.modules.items():
            for k, run in enumerate(info.calls, 1):
                for n in run:
                    call_no[(path, n.index)] = k

        def calls_of(parts: tuple, index: int) -> tuple:
            return tuple(call_no.get((".".join(parts[:k]), index), 1) for k in range(1, len(parts) + 1))

        flat = not any(n.scope for n in s.nodes)  # no scopes at all: every node is a module
        done: set[int] = set()
        for n in s.nodes:
            if n.index in done:
                continue
            path, _ = run_of[n.index]
            info = s.modules[path]
            run = next(r for r in info.calls if n in r)
            done.update(m.index for m in run)
            sources = list(dict.fromkeys(producer[i] for i in G.outside_inputs(run, s.constants) if i in producer))
            outs = G.outputs(run)
            kind = "module"
            parts = tuple(path.split("."))
            if n.owner not in n.scope and not flat:  # an op in a container's forward
                first = n.proto.input[0] if n.proto.input else ""
                if n.op_type in _PASSTHROUGH and first in producer:
                    for o in outs:
                        producer[o] = producer[first]
                    continue
                kind, parts = "op", (tuple(n.scope[-1].split(".")) if n.scope else ())
            if not sources:
                continue  # computed from constants only
            name = path if kind == "module" else n.op_type
            type_ = info.type if kind == "module" else n.op_type
            node = t.add(kind, name, type_, parts, shape(outs[0]) if outs else None, calls_of(parts, n.index))
            t.edges.extend((src, node.id) for src in sources)
            for m in run:
                for o in m.proto.output:
                    if o:
                        producer[o] = node.id
        out = t.add("output", "output", "output", (), shape(self._outputs[0]) if self._outputs else None)
        t.edges.extend((producer[o], out.id) for o in dict.fromkeys(self._outputs) if o in producer)
        for path, info in s.modules.items():
            t.calls[path] = len(info.calls) or 1
            if info.calls:
                run = info.calls[0]
                ins = G.outside_inputs(run, s.constants)
                outs = G.outputs(run)
                t.module_io[path] = (shape(ins[0]) if ins else None, shape(outs[0]) if outs else None)
        if self._inputs and self._outputs:
            t.module_io[""] = (shape(self._inputs[0]), shape(self._outputs[0]))
        return t

    def compute_loss(self, loss_fn: Any, result: Any, target: Any, call: Call) -> Any:
        raise ModelError(messages.no_gradients())

    def backward(self, loss: Any, wanted: dict) -> dict:
        raise ModelError(messages.no_gradients())

    def shapes(self, call: Call | None) -> dict:
        """Output and input shapes of every module from one run (for EXPLAIN)."""
        shapes: dict = {}

        def seen(path: str):
            def on_call(args, kwargs, output):
                out = tensors(output)
                if out:
                    shapes.setdefault(("activation", path), tuple(out[0].shape))
                if args:
                    shapes.setdefault(("input", path), tuple(args[0].shape))

            return on_call

        if call is not None:
            try:
                self.forward(self.to_device(call), {m.path: seen(m.path) for m in self.modules() if m.path})
            except PassFailed:
                pass
        for p in self.params():
            shapes[("param", p.path)] = p.shape
        return shapes

    # -- files ----------------------------------------------------------------------------
    def state(self) -> dict:
        return {p.path: self.tensor(p.path) for p in self.params()}

    def load_state(self, state: dict) -> None:
        """Replace the initializers by tensors of the same names and shapes."""
        from onnx import helper, numpy_helper

        own = {p.path: p for p in self.params()}
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [
            (k, tuple(v.shape), own[k].shape) for k, v in state.items() if k in own and tuple(v.shape) != own[k].shape
        ]
        if missing or unexpected or shapes:
            raise ModelError(messages.state_mismatch(missing, unexpected, shapes))
        for k, v in state.items():
            file_name = self._alias.get(k, k)
            init = self._inits[file_name]
            a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            init.CopyFrom(numpy_helper.from_array(a.astype(helper.tensor_dtype_to_np_dtype(init.data_type)), file_name))
        self.model.forget_sessions()
        self._cache.clear()

    def example_input(self) -> list[tuple[str, tuple[int, ...], str]]:
        """(input name, shape, dtype) of the graph's inputs; a symbolic dimension is taken as 2."""
        from onnx import helper

        inits = {i.name for i in self.model.proto.graph.initializer}
        out = []
        for v in self.model.proto.graph.input:
            if v.name in inits:
                continue
            t = v.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 2 for d in t.shape.dim)
            out.append((v.name, dims, str(helper.tensor_dtype_to_np_dtype(t.elem_type))))
        return out

    def first_layer(self) -> tuple[str, dict] | None:
        """The first Conv, Gemm/MatMul or Gather of a parameter, and what its input looks like."""
        for n in self.structure.nodes:
            ins = list(n.proto.input)
            if n.op_type == "Conv" and len(ins) > 1 and ins[1] in self._inits:
                dims = list(self._inits[ins[1]].dims)
                if 3 <= len(dims) <= 5:
                    return f"Conv{len(dims) - 2}d", {"channels": int(dims[1]) * _attr(n.proto, "group", 1)}
            if n.op_type in ("Gemm", "MatMul") and len(ins) > 1 and ins[1] in self._inits:
                dims = list(self._inits[ins[1]].dims)
                if len(dims) == 2:
                    trans = n.op_type == "Gemm" and _attr(n.proto, "transB", 0)
                    return "Linear", {"features": int(dims[1] if trans else dims[0])}
            if n.op_type == "Gather" and ins and ins[0] in self._inits and len(self._inits[ins[0]].dims) == 2:
                return "Embedding", {"vocab": int(self._inits[ins[0]].dims[0])}
        return None
