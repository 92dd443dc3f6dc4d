"""A Keras model's layer tree and variables, as nnspec's ``Module``s and ``Param``s.

Paths are dotted Keras layer names: ``dense``, ``conv2d_1``, and inside a nested
model or a layer that holds layers, ``encoder.dense``. A layer reached twice (a
shared layer) is one module under its first path; its variables carry every name.
"""

from __future__ import annotations

from typing import Any

from nnspec.backends.base import Module, Param

# what each axis of a kernel is, by layer class (a Keras kernel is (…, in, out))
LAYOUTS: dict[str, tuple[str, ...]] = {
    "Dense": ("in", "out"),
    "Conv1D": ("w", "in", "out"),
    "Conv2D": ("h", "w", "in", "out"),
    "Conv3D": ("d", "h", "w", "in", "out"),
    "Embedding": ("token", "dim"),
}
_WEIGHTS = ("kernel", "embeddings", "gamma")
_BIASES = ("bias", "beta")


def role_of(name: str) -> str:
    """weight (kernels, embeddings, gammas), bias (biases, betas) or other (moving statistics)."""
    if any(w in name for w in _WEIGHTS):
        return "weight"
    if any(b in name for b in _BIASES):
        return "bias"
    return "other"


def children(layer: Any) -> list[Any]:
    """The layers ``layer`` holds directly, in order (a model's input layers left out)."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return []
    return [c for c in flatten(include_self=False, recursive=False) if type(c).__name__ != "InputLayer"]


def walk(model: Any) -> list[tuple[str, Any]]:
    """(path, layer) of every layer reached, the root ``""`` first, shared layers at each path."""
    out: list[tuple[str, Any]] = []
    active: set[int] = set()

    def visit(path: str, layer: Any) -> None:
        out.append((path, layer))
        if id(layer) in active:  # a layer that holds itself: stop
            return
        active.add(id(layer))
        for c in children(layer):
            visit(f"{path}.{c.name}" if path else c.name, c)
        active.discard(id(layer))

    visit("", model)
    return out


def own_variables(layer: Any) -> list[Any]:
    """The variables a layer made itself (not its sublayers'), as ``layer.weights`` counts them."""
    return list(getattr(layer, "_trainable_variables", [])) + list(getattr(layer, "_non_trainable_variables", []))


def modules(model: Any) -> tuple[Module, ...]:
    seen: set[int] = set()
    out = []
    for path, layer in walk(model):
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        out.append(
            Module(path, type(layer).__name__, tuple(c.__name__ for c in type(layer).__mro__), not children(layer))
        )
    return tuple(out)


def variables(model: Any) -> list[tuple[list[str], str, Any, Any]]:
    """(names, owner path, layer, variable) for each variable once, in the model's order."""
    names: dict[int, list[str]] = {}
    first: dict[int, tuple[str, Any, Any]] = {}
    for path, layer in walk(model):
        taken: set[str] = set()
        for v in own_variables(layer):
            leaf = v.name
            k = 2
            while leaf in taken:  # two variables of one layer with one name
                leaf, k = f"{v.name}_{k}", k + 1
            taken.add(leaf)
            name = f"{path}.{leaf}" if path else leaf
            if name not in names.setdefault(id(v), []):
                names[id(v)].append(name)
            first.setdefault(id(v), (path, layer, v))
    return [(names[k], *first[k]) for k in first]


def params(model: Any) -> tuple[Param, ...]:
    out = []
    for names, owner, layer, v in variables(model):
        leaf = names[0].rsplit(".", 1)[-1]
        mro = [c.__name__ for c in type(layer).__mro__]
        layout = next((LAYOUTS[c] for c in mro if c in LAYOUTS), ()) if leaf in ("kernel", "embeddings") else ()
        shape = tuple(int(d) for d in v.shape)
        out.append(
            Param(
                names[0],
                owner,
                role_of(leaf),
                shape,
                str(v.dtype),
                bool(v.trainable),
                tuple(names),
                layout if len(layout) == len(shape) else (),
            )
        )
    return tuple(out)
