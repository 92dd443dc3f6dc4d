"""An ONNX graph read as a module tree: which node belongs to which module, and
each module's calls (the runs of its nodes in graph order).

Where a node's path comes from, best first:

1. the torch dynamo exporter's node metadata: ``pkg.torch.onnx.name_scopes``
   (``['', 'layer1', 'layer1.0', 'layer1.0.conv2', 'conv2d_2']``: the module
   paths around the node, then the FX node's own name) and
   ``pkg.torch.onnx.class_hierarchy`` (the class of each, ``torch.nn.modules.conv.Conv2d``);
2. a node name shaped like a scope, as the TorchScript exporter (and tf2onnx)
   write them: ``/layer1/layer1.0/conv1/Conv`` is the module ``layer1.0.conv1``;
3. otherwise the node's own name (or ``<OpType>_<index>``) is a module at the root.

A module path that holds no other module is a leaf: its nodes are its insides
and its output is its last node's. A node directly inside a container (the
residual ``add`` of a block, a ``flatten`` in ``forward``) is a module of its
own, ``<container>.<node name>``, typed by its op (``Add``), as the nodes of
a graph without metadata are. Containers are modules too; their output is the
output of the last node under them. ``Constant`` nodes are constants, not
modules.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

NAME_SCOPES = "pkg.torch.onnx.name_scopes"
CLASSES = "pkg.torch.onnx.class_hierarchy"
REWRITE_RULE = "pkg.onnxscript.rewriter.rule_name"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass
class Node:
    index: int  # position among the graph's (non-Constant) nodes
    proto: Any  # onnx.NodeProto
    scope: tuple[str, ...]  # module paths around it, outermost first (not the root)
    classes: tuple[str, ...]  # their class names, where the exporter wrote them
    op_name: str  # its own name inside its scope (the FX node's name, or the op's)
    owner: str = ""  # the module whose node it is (a leaf module, or its own module)
    meta: dict = field(default_factory=dict)

    @property
    def op_type(self) -> str:
        return str(self.proto.op_type)


@dataclass
class ModuleInfo:
    path: str
    type: str
    types: tuple[str, ...]
    leaf: bool
    calls: list = field(default_factory=list)  # each call: list of Node, in graph order


@dataclass
class Structure:
    nodes: list  # Node, graph order
    modules: dict  # path -> ModuleInfo, root "" first, parents before children
    constants: set  # tensor names no node of the model computes (initializers, Constant outputs)
    has_metadata: bool
    root_type: str


def _short(cls: str) -> str:
    return cls.rsplit(".", 1)[-1]


def safe_name(name: str) -> str:
    return _UNSAFE.sub("_", name).strip("_.") or "node"


def _scoped(name: str) -> tuple[tuple[str, ...], str] | None:
    """``/layer1/layer1.0/conv1/Conv`` -> (("layer1", "layer1.0", "layer1.0.conv1"), "Conv")."""
    if not name.startswith("/") or name.count("/") < 1:
        return None
    parts = [p for p in name.strip("/").split("/") if p]
    if not parts:
        return None
    scope: list[str] = []
    for comp in parts[:-1]:
        comp = safe_name(comp)
        prev = scope[-1] if scope else ""
        scope.append(comp if (not prev or comp.startswith(prev + ".")) else f"{prev}.{comp}")
    return tuple(scope), safe_name(parts[-1])


def _literal(text: str) -> list | None:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, list) else None


def read(graph: Any, initializers: set[str]) -> Structure:
    """The module tree of ``graph`` (an ``onnx.GraphProto``)."""
    nodes: list[Node] = []
    constants = set(initializers)
    root_type = ""
    metadata = False
    for proto in graph.node:
        if proto.op_type == "Constant":
            constants.update(o for o in proto.output if o)
            continue
        meta = {p.key: p.value for p in proto.metadata_props}
        scopes = _literal(meta.get(NAME_SCOPES, ""))
        classes = _literal(meta.get(CLASSES, "")) or []
        i = len(nodes)
        if scopes and len(scopes) >= 2:
            metadata = True
            scope = tuple(safe_name(s) for s in scopes[1:-1])
            cls = tuple(str(c) for c in classes[1:-1]) if len(classes) == len(scopes) else ()
            root_type = root_type or (_short(str(classes[0])) if classes else "")
            nodes.append(Node(i, proto, scope, cls, safe_name(str(scopes[-1])), meta=meta))
            continue
        scoped = _scoped(proto.name)
        if scoped is not None:
            nodes.append(Node(i, proto, scoped[0], (), scoped[1], meta=meta))
        else:
            nodes.append(Node(i, proto, (), (), safe_name(proto.name or f"{proto.op_type}_{i}"), meta=meta))
    containers = {p for n in nodes for p in n.scope[:-1]}
    order: dict[str, ModuleInfo] = {}
    classes_of: dict[str, str] = {}
    ops_of: dict[str, list[str]] = {}
    taken: set[str] = set()
    for n in nodes:
        for k, path in enumerate(n.scope):
            if k < len(n.classes):
                classes_of.setdefault(path, n.classes[k])
            order.setdefault(path, ModuleInfo(path, "", (), path not in containers))
            taken.add(path)
        inner = n.scope[-1] if n.scope else ""
        if inner and inner not in containers:
            n.owner = inner  # a leaf module's inside
        else:
            base = f"{inner}.{n.op_name}" if inner else n.op_name
            path, k = base, 1
            while path in taken:
                k += 1
                path = f"{base}_{k}"
            taken.add(path)
            n.owner = path
            order[path] = ModuleInfo(path, n.op_type, (n.op_type,), True)
        ops_of.setdefault(n.owner, []).append(n.op_type)
    for path, info in order.items():
        if info.type:
            continue  # a node of its own
        known = classes_of.get(path)
        ops = list(dict.fromkeys(ops_of.get(path, ()))) if info.leaf else []
        if known:
            info.type = _short(known)
            info.types = tuple(dict.fromkeys([info.type, "Module", *ops]))
        else:  # no class: a leaf is typed by its (last) op, a scope is a scope
            info.type = ops[-1] if ops else "Scope"
            info.types = tuple(dict.fromkeys([info.type, *ops]))
    root = ModuleInfo("", root_type or (graph.name if metadata and graph.name else "Graph"), (), not nodes)
    root.types = (root.type, "Module") if metadata else (root.type,)
    modules = {"": root, **order}
    _calls(nodes, modules)
    return Structure(nodes, modules, constants, metadata, root.type)


def members(n: Node, path: str) -> bool:
    """Whether node ``n`` is inside the module at ``path``."""
    return not path or n.owner == path or path in n.scope


def _calls(nodes: list[Node], modules: dict[str, ModuleInfo]) -> None:
    """Each module's calls: maximal runs of its nodes, consecutive in graph order
    (a ReLU module used twice gives two calls)."""
    last: dict[str, int] = {}
    for n in nodes:
        paths = ["", *n.scope] + ([n.owner] if n.owner not in n.scope else [])
        for path in paths:
            info = modules[path]
            if last.get(path) == n.index - 1 and info.calls:
                info.calls[-1].append(n)
            else:
                info.calls.append([n])
            last[path] = n.index


def outside_inputs(call: list[Node], constants: set[str]) -> list[str]:
    """The tensors a call reads from outside itself (not constants), in order."""
    made = {o for n in call for o in n.proto.output if o}
    out: list[str] = []
    for n in call:
        for name in n.proto.input:
            if name and name not in made and name not in constants and name not in out:
                out.append(name)
    return out


def outputs(call: list[Node]) -> list[str]:
    """What a call returns: its last node's outputs."""
    return [o for o in call[-1].proto.output if o]
