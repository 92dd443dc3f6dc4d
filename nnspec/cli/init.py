"""``nnspec init --factory pkg.module:callable``: a starter spec for a model,
with selectors for its real layers, that renders without edits.

    model ─build─▶ its layers ─guess an input (or --input-shape)─▶ one probe forward
          ─▶ views: graph, summary, weights (heatmap + distributions),
             activation stats, dead ReLUs, gradient flow, activation functions,
             attention; expect: no NaN weights

A Hugging Face model (one with a ``config`` and a ``main_input_name``) is
called with keyword arguments, as its own code calls it: token ids and an
attention mask for a text model, ``pixel_values`` of the configured image size
for a vision model, ``decoder_input_ids`` (and ``labels``, for the model's own
loss) for an encoder-decoder; a causal language model gets the next-token
loss. The probe runs the spec's own input, loss, attention and activation
functions once, so a view the model cannot serve is left out, not written broken.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass, field
from typing import Any

from nnspec.backends import backend_for
from nnspec.backends.base import Backend, PassFailed, module_at, own_params, walk
from nnspec.cli import messages
from nnspec.errors import NnspecError, SpecError
from nnspec.inputs import messages as inputs_messages
from nnspec.inputs.model import import_callable

SCHEMA_FILE = "nnspec.schema.json"
# layers whose weights get a histogram (Conv1D: Hugging Face GPT-2's (in, out) linear layer)
_KNOWN = {"Linear", "Conv1d", "Conv2d", "Conv3d", "Embedding", "Conv1D"}
_MATRIX = ("Linear", "Conv1D")  # a layer whose weight is one matrix: the heatmap
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # a string YAML reads back as written
_YAML_WORDS = {"yes", "no", "on", "off", "true", "false", "null", "y", "n"}
BATCH, SEQ = 2, 16  # a Hugging Face model's probe batch: 2 sequences of (at most) 16 tokens

LOSS_NOTES = {
    "sum": "gradients of the output's sum; use mse or cross_entropy with a target",
    "next_token": "cross entropy of each position's scores with the next token of input_ids",
    "model": "the loss the model computes itself from labels",
}


@dataclass
class Guess:
    """What the starter spec calls the model with: ``input:`` as written, and its loss."""

    input: dict
    loss: str = "sum"
    functions: bool = False  # `function *` finds the activations the model calls
    attention: list[str] = field(default_factory=list)  # modules whose attention weights the probe read


def starter(factory: str | None, out: str, input_shape: list[int] | None = None, file: str | None = None) -> str:
    """The spec's text for the model ``factory`` makes (or the model ``file`` holds),
    to be written at ``out``."""
    import torch

    base_dir = os.path.dirname(os.path.abspath(out))
    if file is not None:
        from nnspec.backends.files import open_file

        model = open_file(os.path.abspath(file), None, file)
        source = ("file", os.path.relpath(os.path.abspath(file), base_dir))
    else:
        assert factory is not None
        make = import_callable(factory, os.getcwd())
        torch.manual_seed(0)
        try:
            model = make()
        except Exception as e:  # the user's factory may raise anything
            raise SpecError(inputs_messages.bad_factory(factory, f"{type(e).__name__}: {e}")) from e
        source = ("factory", _factory_ref(factory, base_dir))
    be = backend_for(model)
    if be is None:
        raise SpecError(inputs_messages.not_a_module(factory or file or "", type(model).__name__))
    guess = None
    if be.capabilities.forward:  # a weights-only file has no forward pass: no input, no activations
        guess = (None if input_shape else hugging_face_input(model)) or Guess(_input(be, input_shape))
        _probe(be, guess, factory or file or "")
    return _text(source, be, guess)


def hugging_face_input(model: Any) -> Guess | None:
    """Keyword inputs for a Hugging Face model, from its config; None for any other model."""
    config = getattr(model, "config", None)
    main = getattr(model, "main_input_name", None)
    if config is None or not isinstance(main, str):
        return None
    try:
        accepts = set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        accepts = set()
    kwargs: dict[str, dict] = {}
    if main == "pixel_values":
        size = getattr(config, "image_size", 224)
        h, w = (size, size) if isinstance(size, int) else tuple(size)[:2]
        kwargs["pixel_values"] = {"random": {"shape": [BATCH, getattr(config, "num_channels", 3), h, w], "seed": 0}}
        return Guess({"kwargs": kwargs})
    vocab = getattr(config, "vocab_size", None)
    if main != "input_ids" or not isinstance(vocab, int):
        return None  # audio and the like: the first layer tells, or --input-shape
    positions = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions")]
    longest = next((n for n in positions if isinstance(n, int)), SEQ)  # T5's relative positions: any length
    shape = [BATCH, min(SEQ, longest)]

    def ids(seed: int) -> dict:
        return {"random": {"shape": shape, "dist": "randint", "high": vocab, "seed": seed}}

    kwargs["input_ids"] = ids(0)
    if "attention_mask" in accepts:
        kwargs["attention_mask"] = {"ones": shape}
    loss = "sum"
    if getattr(config, "is_encoder_decoder", False):
        kwargs["decoder_input_ids"] = ids(1)
        if "labels" in accepts and _has_lm_head(model):
            kwargs["labels"] = ids(2)
            loss = "model"
    elif _has_lm_head(model):
        loss = "next_token"
    return Guess({"kwargs": kwargs}, loss)


def _has_lm_head(model: Any) -> bool:
    """A language model's head: scores over the vocabulary for each position."""
    names = [c.__name__ for c in type(model).__mro__]
    return any(n.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for n in names)


def _input(be: Backend, shape) -> dict:
    if shape:
        return {"random": {"shape": list(shape), "seed": 0}}
    known: list = getattr(be, "example_input", lambda: [])()  # a file that says what it takes (ONNX, .pt2)
    if known:
        return _known_input(be, known)
    first = be.first_layer()  # type: ignore[attr-defined]
    if first is None:
        raise SpecError(messages.init_no_input(), None, messages.init_input_hint())
    kind, info = first
    if kind == "Embedding":
        return {"random": {"shape": [4, 16], "seed": 0, "dist": "randint", "high": info["vocab"]}}
    if kind == "Linear":
        return {"random": {"shape": [8, info["features"]], "seed": 0}}
    spatial = {"Conv1d": [64], "Conv2d": [32, 32], "Conv3d": [16, 16, 16]}[kind]
    return {"random": {"shape": [8, info["channels"], *spatial], "seed": 0}}


def _known_input(be: Backend, known: list[tuple[str, tuple[int, ...], str]]) -> dict:
    """Random inputs of the shapes and kinds the file declares: one positional argument
    as a single source, else each argument by name (or position)."""
    first = be.first_layer()  # type: ignore[attr-defined]
    vocab = first[1]["vocab"] if first and first[0] == "Embedding" else 2

    def source(shape: tuple[int, ...], dtype: str, seed: int) -> dict:
        if "int" in dtype:
            return {"random": {"shape": list(shape), "seed": seed, "dist": "randint", "high": vocab}}
        if "bool" in dtype:
            return {"ones": list(shape)}
        return {"random": {"shape": list(shape), "seed": seed}}

    if len(known) == 1 and known[0][0] == "0":
        return source(known[0][1], known[0][2], 0)
    if all(name.isdigit() for name, _, _ in known):
        return {"args": [source(s, d, i) for i, (_, s, d) in enumerate(known)]}
    return {"kwargs": {name: source(s, d, i) for i, (name, s, d) in enumerate(known)}}


def _probe(be: Backend, guess: Guess, factory: str) -> None:
    """One forward pass on the guessed input (an error if the model does not run on it),
    tracing it and reading attention; then the loss, which falls back to ``sum`` if the
    guessed one does not fit the output. Fills in ``guess.functions`` and ``guess.attention``."""
    from nnspec.execute.functions import used_functions
    from nnspec.inputs.batch import load_input, make_loss
    from nnspec.spec.load import load_spec

    spec = load_spec({"nnspec": 1, "input": guess.input, "views": [{"query": "summary"}]})
    assert spec.input is not None
    batch = load_input(spec.input, os.getcwd())
    call = be.to_device(batch.call)  # type: ignore[attr-defined]
    caps = be.capabilities
    attention = tuple(m.path for m in walk(be.modules()) if m.attention) if caps.attention else ()
    try:
        with be.guest():
            result = be.forward(call, trace=caps.trace, attention=attention)
    except PassFailed as e:
        raise SpecError(
            messages.init_forward_failed(factory, _described(batch), str(e)),
            None,
            messages.init_input_hint(),
        ) from None
    try:  # activation modules are looked up as the framework's own callables
        guess.functions = result.trace is not None and bool(used_functions(be.model, result.trace))
    except (AttributeError, KeyError, TypeError):
        guess.functions = False
    guess.attention = [p for p in attention if p in result.attention][:1]
    try:
        loss = be.compute_loss(make_loss(guess.loss, os.getcwd()), result.result, batch.y, batch.call)
        ok = getattr(loss, "numel", lambda: 0)() == 1
    except NnspecError:
        ok = False
    except Exception:  # a backend that computes losses its own way may raise its framework's errors
        ok = False
    if not ok:
        guess.loss = "sum"


def _described(batch) -> str:
    """The probe's input, for an error: its shape, or each argument's."""
    if len(batch.call.args) == 1 and not batch.call.kwargs and hasattr(batch.x, "shape"):
        return messages.init_random_batch(tuple(batch.x.shape))
    return messages.init_random_inputs(batch.describe())


def _factory_ref(factory: str, base_dir: str) -> str:
    """A ``file.py:callable`` factory is written relative to the spec's folder."""
    mod, _, attr = factory.rpartition(":")
    if mod.endswith(".py"):
        return f"{os.path.relpath(os.path.abspath(mod), base_dir)}:{attr}"
    return factory


def _text(source: tuple[str, str], be: Backend, guess: Guess | None) -> str:
    """The starter spec: views for what the backend can do, each compiled against the
    model before it is written, so none is written broken."""
    caps = be.capabilities
    leaves = [m for m in walk(be.modules()) if m.leaf]
    weighted = [m for m in leaves if any(n == "weight" for n, _ in own_params(be, m.path))]
    types = sorted({m.type for m in weighted if set(m.types) & _KNOWN})
    matrix = next((m.path for m in weighted if set(m.types) & set(_MATRIX) and not _shared(be, m.path)), None)
    if matrix is None:  # another framework's layers, or a file of tensors: the first unshared 2-D weight
        matrix = next(
            (p.path for p in be.params() if p.role == "weight" and len(p.shape) == 2 and len(p.names) == 1), None
        )
    relus = any("ReLU" in m.types for m in leaves)
    views = [("Layer summary", "summary")]
    if caps.trace:
        views.insert(0, ("Architecture", "graph"))
    if matrix:
        views.append((f"{matrix} weights", f"weights of {matrix} | heatmap"))
    if types:
        sel = ", ".join(f"type({t})" for t in types)
        views.append(("Weight distributions", f"weights of {sel} | histogram(bins=40)"))
    elif any(p.role == "weight" for p in be.params()):
        views.append(("Weight distributions", "weights of * | histogram(bins=40)"))
    views.append(("Statistics of every parameter", "params of * | stats | table"))
    if guess is not None:
        # a Dropout in eval mode hands its input on: its bar would repeat the layer before it
        dropout = " except type(Dropout)" if any("Dropout" in m.types for m in leaves) else ""
        views.append(("Activation statistics per layer", f"activations of *{dropout} | stats | bar(y=std)"))
        if relus:
            views.append(
                ("Dead ReLU units (never > 0 over the batch)", "activations of type(ReLU) | dead_fraction | bar")
            )
        if caps.backward:  # by name where the framework names weights so, else every parameter
            sel = "*.weight" if any(p.path.endswith(".weight") for p in be.params()) else "*"
            views.append(("Gradient flow (mean |grad| per weight)", f"grads of {sel} | abs | mean | bar"))
        if guess.functions:
            views.append(("Activation functions and their derivatives", "function *"))
        for path in guess.attention:
            views.append((f"Attention of {path}, per head", f"attention of {path}"))
    views = _compilable(views, be, guess)
    kind, ref = source
    lines = [
        f"# yaml-language-server: $schema={SCHEMA_FILE}",
        f"# Starter spec for {ref} ({be.size():,} parameters), written by nnspec init.",  # type: ignore[attr-defined]
        "# Render: nnspec render THIS_FILE    Check: nnspec check THIS_FILE",
        "nnspec: 1",
        f"title: {_quote(module_at(be, '').type + ' — a first look')}",
        "model:",
        f"  {kind}: {_quote(ref)}",
    ]
    if kind == "factory":
        lines.append("  seed: 0")
    if guess is not None:
        if caps.backward:
            lines.append(f"loss: {guess.loss:<30} # {LOSS_NOTES[guess.loss]}")
        lines += ["input:", *_input_lines(guess.input)]
    lines.append("views:")
    for title, query in views:
        lines += [f"  - title: {_quote(title)}", f"    query: {_quote(query)}"]
    lines += ["expect:", '  - "params of * | nan_count == 0"']
    return "\n".join(lines) + "\n"


def _compilable(views: list[tuple[str, str]], be: Backend, guess: Guess | None) -> list[tuple[str, str]]:
    """The views that compile against the model (a selector that matches nothing, a view
    the backend cannot serve): a starter spec never carries a broken view."""
    from nnspec.compiler.compile import compile_plan
    from nnspec.compiler.plan import Available
    from nnspec.spec.load import load_spec

    spec = load_spec({"nnspec": 1, "views": [{"title": t, "query": q} for t, q in views]})
    plan = compile_plan(spec, be, available=Available(has_input=guess is not None))
    return [tv for tv, vp in zip(views, plan.views) if vp.error is None]


def _shared(be: Backend, path: str) -> bool:
    """Whether the module's weight is a tensor other modules hold too (a tied head)."""
    return any(n == "weight" and len(p.names) > 1 for n, p in own_params(be, path))


def _input_lines(inp: dict) -> list[str]:
    """``input:``'s body: one source on a line, or each keyword argument's on its own."""
    if "kwargs" in inp:
        return ["  kwargs:"] + [f"    {name}: {_flow(source)}" for name, source in inp["kwargs"].items()]
    if "args" in inp:
        return ["  args:"] + [f"    - {_flow(source)}" for source in inp["args"]]
    return [f"  {key}: {_flow(value)}" for key, value in inp.items()]


def _flow(value: Any) -> str:
    """YAML flow style: ``{random: {shape: [2, 16], seed: 0}}``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        return value if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS else _quote(value)
    return str(value)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write(factory: str | None, out: str, input_shape=None, force: bool = False, file: str | None = None) -> list[str]:
    """Write the starter spec (and the JSON Schema beside it, if absent); never overwrite unasked."""
    import json

    from nnspec.output.files import write_atomic
    from nnspec.spec.load import schema

    if os.path.exists(out) and not force:
        raise SpecError(messages.init_exists(out), None, messages.init_exists_hint())
    text = starter(factory, out, input_shape, file)
    written = [write_atomic(out, text)]
    schema_path = os.path.join(os.path.dirname(os.path.abspath(out)), SCHEMA_FILE)
    if not os.path.exists(schema_path):
        written.append(write_atomic(schema_path, json.dumps(schema(), indent=2) + "\n"))
    return written
