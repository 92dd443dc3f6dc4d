"""``nnspec init --factory pkg.module:callable``: a starter spec for a model,
with selectors for its real layers, that renders without edits.

    model ─build─▶ its layers ─guess an input (or --input-shape)─▶ one probe forward
          ─▶ views: graph, summary, weights (heatmap + distributions),
             activation stats, dead ReLUs, gradient flow; expect: no NaN weights
"""

from __future__ import annotations

import os

import torch
from torch import nn

from . import messages
from .errors import SpecError
from .modelload import import_callable

SCHEMA_FILE = "nnspec.schema.json"
_KNOWN = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)


def starter(factory: str, out: str, input_shape: list[int] | None = None) -> str:
    """The spec's text for the model ``factory`` makes, to be written at ``out``."""
    base_dir = os.path.dirname(os.path.abspath(out))
    make = import_callable(factory, os.getcwd())
    torch.manual_seed(0)
    try:
        model = make()
    except Exception as e:  # the user's factory may raise anything
        raise SpecError(messages.bad_factory(factory, f"{type(e).__name__}: {e}")) from e
    if not isinstance(model, nn.Module):
        raise SpecError(messages.bad_factory(factory, f"it returned a {type(model).__name__}, not an nn.Module"))
    inp = _input(model, input_shape)
    _probe(model, inp, factory)
    ref = _factory_ref(factory, base_dir)
    return _text(ref, model, inp)


def _input(model: nn.Module, shape) -> dict:
    if shape:
        return {"random": {"shape": list(shape), "seed": 0}}
    first = next((m for m in model.modules() if isinstance(m, _KNOWN)), None)
    if isinstance(first, nn.Embedding):
        return {"random": {"shape": [4, 16], "seed": 0, "dist": "randint", "high": first.num_embeddings}}
    if isinstance(first, nn.Linear):
        return {"random": {"shape": [8, first.in_features], "seed": 0}}
    if isinstance(first, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        spatial = {nn.Conv1d: [64], nn.Conv2d: [32, 32], nn.Conv3d: [16, 16, 16]}[type(first)]
        return {"random": {"shape": [8, first.in_channels, *spatial], "seed": 0}}
    raise SpecError(messages.init_no_input(), None, messages.init_input_hint())


def _probe(model: nn.Module, inp: dict, factory: str) -> None:
    from .inputs import load_input
    from .spec import InputSpec

    x = load_input(InputSpec("random", inp), os.getcwd()).x
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    except Exception as e:
        raise SpecError(
            messages.init_forward_failed(factory, tuple(x.shape), f"{type(e).__name__}: {e}"),
            None,
            messages.init_input_hint(),
        ) from None


def _factory_ref(factory: str, base_dir: str) -> str:
    """A ``file.py:callable`` factory is written relative to the spec's folder."""
    mod, _, attr = factory.rpartition(":")
    if mod.endswith(".py"):
        return f"{os.path.relpath(os.path.abspath(mod), base_dir)}:{attr}"
    return factory


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n and not list(m.children())]


def _text(factory: str, model: nn.Module, inp: dict) -> str:
    leaves = _leaves(model)
    weighted = [(n, m) for n, m in leaves if isinstance(getattr(m, "weight", None), torch.Tensor)]
    types = sorted({type(m).__name__ for n, m in weighted if isinstance(m, _KNOWN)})
    matrix = next((n for n, m in weighted if isinstance(m, nn.Linear)), None)
    relus = any(isinstance(m, nn.ReLU) for _, m in leaves)
    n_params = sum(p.numel() for p in model.parameters())
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
        f"title: {_quote(type(model).__name__ + ' — a first look')}",
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

    from .output.files import write_atomic
    from .spec import schema

    if os.path.exists(out) and not force:
        raise SpecError(messages.init_exists(out), None, messages.init_exists_hint())
    text = starter(factory, out, input_shape)
    written = [write_atomic(out, text)]
    schema_path = os.path.join(os.path.dirname(os.path.abspath(out)), SCHEMA_FILE)
    if not os.path.exists(schema_path):
        written.append(write_atomic(schema_path, json.dumps(schema(), indent=2) + "\n"))
    return written
