"""``nnspec init --factory pkg.module:callable``: a starter spec for a model,
with selectors for its real layers, that renders without edits.

    model ─build─▶ its layers ─guess an input (or --input-shape)─▶ one probe forward
          ─▶ views: graph, summary, weights (heatmap + distributions),
             activation stats, dead ReLUs, gradient flow; expect: no NaN weights
"""

from __future__ import annotations

import os

from nnspec.backends import backend_for
from nnspec.backends.base import Backend, PassFailed, module_at, own_params, walk
from nnspec.cli import messages
from nnspec.errors import SpecError
from nnspec.inputs import messages as inputs_messages
from nnspec.inputs.model import import_callable

SCHEMA_FILE = "nnspec.schema.json"
_KNOWN = {"Linear", "Conv1d", "Conv2d", "Conv3d", "Embedding"}  # layers whose weights get a histogram


def starter(factory: str, out: str, input_shape: list[int] | None = None) -> str:
    """The spec's text for the model ``factory`` makes, to be written at ``out``."""
    import torch

    base_dir = os.path.dirname(os.path.abspath(out))
    make = import_callable(factory, os.getcwd())
    torch.manual_seed(0)
    try:
        model = make()
    except Exception as e:  # the user's factory may raise anything
        raise SpecError(inputs_messages.bad_factory(factory, f"{type(e).__name__}: {e}")) from e
    be = backend_for(model)
    if be is None:
        raise SpecError(inputs_messages.bad_factory(factory, f"it returned a {type(model).__name__}, not an nn.Module"))
    inp = _input(be, input_shape)
    _probe(be, inp, factory)
    ref = _factory_ref(factory, base_dir)
    return _text(ref, be, inp)


def _input(be: Backend, shape) -> dict:
    if shape:
        return {"random": {"shape": list(shape), "seed": 0}}
    first = be.first_layer()
    if first is None:
        raise SpecError(messages.init_no_input(), None, messages.init_input_hint())
    kind, info = first
    if kind == "Embedding":
        return {"random": {"shape": [4, 16], "seed": 0, "dist": "randint", "high": info["vocab"]}}
    if kind == "Linear":
        return {"random": {"shape": [8, info["features"]], "seed": 0}}
    spatial = {"Conv1d": [64], "Conv2d": [32, 32], "Conv3d": [16, 16, 16]}[kind]
    return {"random": {"shape": [8, info["channels"], *spatial], "seed": 0}}


def _probe(be: Backend, inp: dict, factory: str) -> None:
    from nnspec.inputs.batch import load_input
    from nnspec.spec.load import InputSpec

    x = load_input(InputSpec("random", inp), os.getcwd()).x
    try:
        with be.guest():
            be.forward(be.to_device(x))
    except PassFailed as e:
        raise SpecError(
            messages.init_forward_failed(factory, tuple(x.shape), str(e)),
            None,
            messages.init_input_hint(),
        ) from None


def _factory_ref(factory: str, base_dir: str) -> str:
    """A ``file.py:callable`` factory is written relative to the spec's folder."""
    mod, _, attr = factory.rpartition(":")
    if mod.endswith(".py"):
        return f"{os.path.relpath(os.path.abspath(mod), base_dir)}:{attr}"
    return factory


def _text(factory: str, be: Backend, inp: dict) -> str:
    leaves = [m for m in walk(be.modules()) if m.leaf]
    weighted = [m for m in leaves if any(n == "weight" for n, _ in own_params(be, m.path))]
    types = sorted({m.type for m in weighted if set(m.types) & _KNOWN})
    matrix = next((m.path for m in weighted if "Linear" in m.types), None)
    relus = any("ReLU" in m.types for m in leaves)
    n_params = be.size()
    r = inp["random"]
    extra = "".join(f", {k}: {v}" for k, v in r.items() if k not in ("shape", "seed"))
    views = [
        ("Architecture", "graph"),
        ("Layer summary", "summary"),
    ]
    if matrix:
        views.append((f"{matrix} weights", f"weights of {matrix} | heatmap"))
    if types:
        sel = ", ".join(f"type({t})" for t in types)
        views.append(("Weight distributions", f"weights of {sel} | histogram(bins=40)"))
    views.append(("Activation statistics per layer", "activations of * | stats | bar(y=std)"))
    if relus:
        views.append(("Dead ReLU units (never > 0 over the batch)", "activations of type(ReLU) | dead_fraction | bar"))
    views.append(("Gradient flow (mean |grad| per weight)", "grads of *.weight | abs | mean | bar"))
    lines = [
        f"# yaml-language-server: $schema={SCHEMA_FILE}",
        f"# Starter spec for {factory} ({n_params:,} parameters), written by nnspec init.",
        "# Render: nnspec render THIS_FILE    Check: nnspec check THIS_FILE",
        "nnspec: 1",
        f"title: {_quote(module_at(be, '').type + ' — a first look')}",
        "model:",
        f"  factory: {_quote(factory)}",
        "  seed: 0",
        "loss: sum                        # gradients of the output's sum; use mse or cross_entropy with a target",
        "input:",
        f"  random: {{shape: {r['shape']}, seed: 0{extra}}}",
        "views:",
    ]
    for title, query in views:
        lines += [f"  - title: {_quote(title)}", f"    query: {_quote(query)}"]
    lines += ["expect:", '  - "weights of * | nan_count == 0"']
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write(factory: str, out: str, input_shape=None, force: bool = False) -> list[str]:
    """Write the starter spec (and the JSON Schema beside it, if absent); never overwrite unasked."""
    import json

    from nnspec.output.files import write_atomic
    from nnspec.spec.load import schema

    if os.path.exists(out) and not force:
        raise SpecError(messages.init_exists(out), None, messages.init_exists_hint())
    text = starter(factory, out, input_shape)
    written = [write_atomic(out, text)]
    schema_path = os.path.join(os.path.dirname(os.path.abspath(out)), SCHEMA_FILE)
    if not os.path.exists(schema_path):
        written.append(write_atomic(schema_path, json.dumps(schema(), indent=2) + "\n"))
    return written
