"""The batch a spec's forward pass runs on, and the loss its gradients come from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nnspec.backends.base import Call
from nnspec.errors import ModelError, SpecError
from nnspec.inputs import messages
from nnspec.paths import check_regular, resolve_path
from nnspec.spec import messages as spec_messages
from nnspec.spec.load import InputSpec


@dataclass
class Inputs:
    """What a model is called with, named explicitly (``nnspec.Inputs``):
    ``model(*args, **kwargs)``, and the ``target`` a loss compares with."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    target: Any = None


@dataclass
class Batch:
    """How the model is called (``call``), an optional target ``y``, and notes for the dashboard."""

    call: Call
    y: Any = None
    notes: list = field(default_factory=list)
    classes: tuple = ()
    features: tuple = ()
    tokens: tuple = ()

    @classmethod
    def of(cls, x: Any, y: Any = None, **rest: Any) -> Batch:
        """A batch of one positional argument."""
        return cls(Call((x,)), y, **rest)

    @property
    def x(self) -> Any:
        """The main input: the first tensor argument, positional ones first (None without one)."""
        from nnspec.backends.pytorch.trace import tensors

        found = tensors([self.call.args, self.call.kwargs])
        return found[0] if found else None

    def describe(self) -> str:
        """``input (2, 16)`` or ``input_ids (2, 16), attention_mask (2, 16)``, for the footer."""
        parts = []
        for name, value in self.call.values():
            label = (
                "input" if name == "0" and len(self.call.args) == 1 else ("input " + name if name.isdigit() else name)
            )
            shape = getattr(value, "shape", None)
            parts.append(f"{label} {tuple(shape)}" if shape is not None else f"{label} {type(value).__name__}")
        return ", ".join(parts) or "no input"

    def rows(self, idx: Any) -> Batch:
        """The rows ``idx`` of every argument (and the target) whose first axis is the batch."""
        n = _rows(self.x)

        def take(v: Any) -> Any:
            return v[idx] if n is not None and _rows(v) == n else v

        y = self.y[idx] if self.y is not None and _rows(self.y) == n else self.y
        return Batch(self.call.map(take), y, self.notes, self.classes, self.features, self.tokens)


def _rows(v: Any) -> int | None:
    shape = getattr(v, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) > 0 else None


def as_batch(inputs: Any, target: Any = None) -> Batch:
    """``inputs=`` of the Python API: a tensor (one positional argument), a mapping
    (``model(**inputs)``), an ``Inputs``, or a Batch. Nothing is guessed: a bare tuple
    could be (input, target) or two arguments, so it is an error with a hint."""
    if isinstance(inputs, Batch):
        return (
            inputs
            if target is None
            else Batch(inputs.call, target, inputs.notes, inputs.classes, inputs.features, inputs.tokens)
        )
    if isinstance(inputs, Inputs):
        return Batch(Call(tuple(inputs.args), dict(inputs.kwargs)), inputs.target if target is None else target)
    if isinstance(inputs, Mapping):
        return Batch(Call((), {str(k): v for k, v in inputs.items()}), target)
    if isinstance(inputs, (tuple, list)):
        raise SpecError(messages.ambiguous_inputs(len(inputs)), None, messages.ambiguous_inputs_hint())
    return Batch(Call((inputs,)), target)


SOURCES = ("random", "dataset", "file", "tokens", "ones", "zeros", "full")


def load_input(inp: InputSpec, base_dir: str) -> Batch:
    """The spec's ``input:``: one source (the model's one positional argument), or
    ``args``/``kwargs`` naming each argument's source, with an optional ``target``."""
    if inp.kind == "call":
        batch = _call(inp, base_dir)
    else:
        batch = _source(inp, base_dir)
    labels = inp.options.get("labels")
    if isinstance(labels, list):  # labels for the positions of a sequence (attention axes, PCA points)
        batch.tokens = tuple(str(t) for t in labels)
    return batch


def _source(inp: InputSpec, base_dir: str) -> Batch:
    loaders = {
        "random": _random, "dataset": _dataset, "file": _file, "tokens": _tokens,
        "ones": _constant, "zeros": _constant, "full": _constant,
    }  # fmt: skip
    return loaders[inp.kind](inp, base_dir)


def _call(inp: InputSpec, base_dir: str) -> Batch:
    """Each argument from its own source; the first ``tokens`` source labels the positions."""
    args, kwargs, notes, tokens = [], {}, [], ()
    named = [(str(i), s) for i, s in enumerate(inp.args)] + list(inp.kwargs)
    for name, sub in named:
        part = _source(sub, base_dir)
        value = part.x
        if sub.kind == "dataset" or part.y is not None:
            notes.append(messages.note_target_ignored(name))
        if name.isdigit():
            args.append(value)
        else:
            kwargs[name] = value
        notes.extend(part.notes)
        tokens = tokens or part.tokens
    y = None
    if inp.target is not None:
        y = _source(inp.target, base_dir).x
    return Batch(Call(tuple(args), kwargs), y, notes, tokens=tokens)


def _constant(inp: InputSpec, base_dir: str) -> Batch:
    """``ones: [2, 16]``, ``zeros: [2, 16]`` or ``full: {shape: [2, 16], value: 3}``: integer
    tensors (masks, ids) when the value is an integer, else float."""
    import torch

    o = inp.options
    if inp.kind == "full":
        shape, value = tuple(o["full"]["shape"]), o["full"]["value"]
    else:
        shape, value = tuple(o[inp.kind]), (1 if inp.kind == "ones" else 0)
    dtype = torch.long if isinstance(value, int) and not isinstance(value, bool) else torch.float32
    return Batch.of(torch.full(shape, value, dtype=dtype))


def _tokens(inp: InputSpec, base_dir: str) -> Batch:
    """Token strings → ids: the index in ``vocab`` if given, else in order of first appearance."""
    import torch

    o = inp.options
    seqs = o["tokens"]
    seqs = [seqs] if seqs and isinstance(seqs[0], str) else seqs
    if len({len(s) for s in seqs}) != 1:
        raise SpecError(messages.ragged_tokens([len(s) for s in seqs]), inp.span)
    vocab = list(o["vocab"]) if "vocab" in o else list(dict.fromkeys(t for s in seqs for t in s))
    lookup = {t: i for i, t in enumerate(vocab)}
    missing = [t for s in seqs for t in s if t not in lookup]
    if missing:
        raise SpecError(messages.unknown_tokens(missing), inp.span)
    x = torch.tensor([[lookup[t] for t in s] for s in seqs], dtype=torch.long)
    return Batch.of(x, tokens=tuple(seqs[0]))


def _random(inp: InputSpec, base_dir: str) -> Batch:
    import torch

    o = inp.options["random"]
    g = torch.Generator().manual_seed(o.get("seed", 0))
    shape = tuple(o["shape"])
    dist = o.get("dist", "normal")
    if dist == "normal":
        x = torch.randn(shape, generator=g)
    elif dist == "uniform":
        x = torch.rand(shape, generator=g)
    else:
        x = torch.randint(0, o.get("high", 2), shape, generator=g)
    return Batch.of(x)


def _dataset(inp: InputSpec, base_dir: str) -> Batch:
    import pandas as pd

    o = inp.options
    name = o["dataset"]
    if name.endswith(".csv"):
        path = resolve_path(name, base_dir, cwd_fallback=True, span=inp.span, what="data set")
        check_regular(path, MAX_CSV_BYTES, inp.span, "data set", missing_ok=True)
        try:
            df = pd.read_csv(path)
        except Exception as e:
            raise SpecError(messages.input_file(name, f"{type(e).__name__}: {e}"), inp.span) from None
    else:
        from vega_datasets import local_data

        known = local_data.list_datasets()
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, known, n=1)
            hint = spec_messages.did_you_mean(close[0]) if close else None
            raise SpecError(messages.unknown_dataset(name, known), inp.span, hint)
        ds = getattr(local_data, name.replace("-", "_"))
        # read the shipped file ourselves: vega_datasets' own loader warns on current pandas
        df = pd.read_json(ds.filepath) if ds.format == "json" else pd.read_csv(ds.filepath)
    batch = frame_batch(df, list(o["features"]), o.get("target"), inp.span, o.get("labels"))
    return batch


def frame_batch(df, features: list[str], target: str | None, span=None, labels: str | None = None) -> Batch:
    """Standardised float features, rows with missing values dropped (and counted), class
    indices; ``labels`` names a column whose values label the rows (PCA points, attention axes)."""
    import numpy as np
    import pandas as pd
    import torch

    wanted = features + ([target] if target else [])
    if isinstance(labels, str) and labels not in df.columns:
        raise SpecError(messages.unknown_columns([labels], list(df.columns)), span)
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise SpecError(messages.unknown_columns(missing, list(df.columns)), span)
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise SpecError(messages.non_numeric_features(bad), span)
    clean = df[wanted].dropna()
    notes = [messages.note_dropped_rows(len(df) - len(clean))] if len(clean) < len(df) else []
    feats = clean[features].to_numpy(dtype=np.float64)
    std = feats.std(axis=0)
    feats = (feats - feats.mean(axis=0)) / np.where(std > 0, std, 1.0)
    x = torch.tensor(feats, dtype=torch.float32)
    y, classes = None, ()
    if target:
        col = clean[target]
        if pd.api.types.is_numeric_dtype(col):
            y = torch.tensor(col.to_numpy(dtype=np.float64), dtype=torch.float32)
        else:
            classes = tuple(sorted(col.astype(str).unique()))
            lookup = {c: i for i, c in enumerate(classes)}
            y = torch.tensor([lookup[v] for v in col.astype(str)], dtype=torch.long)
    names = tuple(str(v) for v in df.loc[clean.index, labels]) if isinstance(labels, str) else ()
    return Batch.of(x, y, notes=notes, classes=classes, features=tuple(features), tokens=names)


def _file(inp: InputSpec, base_dir: str) -> Batch:
    import numpy as np
    import torch

    name = inp.options["file"]
    path = resolve_path(name, base_dir, cwd_fallback=True, span=inp.span, what="input file")
    arrays = path.endswith((".npy", ".npz"))  # their size once loaded is in their headers
    exists = check_regular(path, None if arrays else MAX_ARRAY_BYTES, inp.span, "input file", missing_ok=True) >= 0
    if exists and arrays:
        check_arrays(path, MAX_ARRAY_BYTES, inp.span, name)
    try:
        if path.endswith(".npy"):
            return Batch.of(torch.from_numpy(np.load(path, allow_pickle=False)))
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                x = z["x"] if "x" in z else z[keys[0]]
                y = z["y"] if "y" in z else None
                return Batch.of(torch.from_numpy(x), None if y is None else torch.from_numpy(y))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SpecError(messages.input_file(name, f"{type(e).__name__}: {e}"), inp.span) from None
    if isinstance(obj, torch.Tensor):
        return Batch.of(obj)
    if isinstance(obj, dict) and isinstance(obj.get("x"), torch.Tensor):
        labels = obj.get("labels")
        tokens = tuple(str(t) for t in labels) if isinstance(labels, (list, tuple)) else ()
        return Batch.of(obj["x"], obj.get("y"), tokens=tokens)
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return Batch(Call((), {str(k): v for k, v in obj.items()}))  # keyword arguments, as a whole
    raise SpecError(
        messages.input_file(
            name, "expected a tensor, a dict with 'x' (and optional 'y'), or a dict of tensors (keyword arguments)"
        ),
        inp.span,
    )


MAX_ARRAY_BYTES = 2 << 30
"""The most an input file's arrays may take once loaded (a .npz expands: its headers are read first)."""
MAX_CSV_BYTES = 1 << 30
"""The largest CSV data set read."""


def check_arrays(path: str, limit: int, span=None, shown: str | None = None) -> int:
    """The bytes the arrays of a .npy or .npz file take once loaded, read from their headers
    before anything is loaded; more than ``limit`` (or an unreadable header) is a SpecError."""
    import zipfile

    import numpy as np

    shown = shown or path

    def header_size(f) -> int:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        n = 1
        for d in shape:
            n *= int(d)
        return n * dtype.itemsize

    total = 0
    try:
        if path.endswith(".npz"):
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if info.filename.endswith(".npy"):
                        with z.open(info) as f:
                            total += header_size(f)
        else:
            with open(path, "rb") as f:
                total = header_size(f)
    except Exception as e:  # not an array file, a truncated header, a zip bomb's broken member
        raise SpecError(messages.input_file(shown, f"{type(e).__name__}: {e}"), span) from None
    if total > limit:
        raise SpecError(
            messages.input_file(shown, f"its arrays take {total:,} bytes loaded, more than {limit:,}"), span
        )
    return total


LOSSES = ("mse", "cross_entropy", "next_token", "model", "sum")


def make_loss(name: str, base_dir: str, span=None, output: str | None = None):
    """``fn(output, target, call) -> scalar``; ``needs_target`` says whether it uses the
    target. Built-in losses are taken of the model's main output (``output`` names another
    field or tuple element): ``mse``, ``cross_entropy`` (class scores on the last axis for
    (B, T, V) logits with (B, T) targets, or on axis 1 as torch has it; targets of -100 are
    ignored), ``next_token`` (cross entropy of position t's scores with token t+1: the
    target, else the ``input_ids`` argument), ``model`` (the ``loss`` the model returned,
    as Hugging Face models do when given ``labels``), ``sum``; or ``module:callable``,
    called as ``fn(output, target)``."""
    import torch.nn.functional as F

    def main(out):
        return _main_tensor(out, output)

    if name == "mse":
        return _LossFn(name, lambda out, y, call: _mse(F, main(out), y), True)
    if name == "cross_entropy":
        return _LossFn(name, lambda out, y, call: _cross_entropy(F, main(out), y), True)
    if name == "next_token":
        return _LossFn(name, lambda out, y, call: _next_token(F, main(out), y, call), False)
    if name == "model":
        return _LossFn(name, lambda out, y, call: _own_loss(out), False)
    if name == "sum":
        return _LossFn(name, lambda out, y, call: main(out).float().sum(), False)
    if ":" in name:
        from nnspec.inputs.model import import_callable

        fn = import_callable(name, base_dir, span)
        return _LossFn(name, lambda out, y, call: fn(out, y), False)  # target is None without one
    raise SpecError(messages.unknown_loss(name), span)


def _mse(F, out, y):
    return F.mse_loss(out, y.reshape(out.shape).to(out.dtype))


def _cross_entropy(F, logits, y):
    y = y.long()
    if logits.dim() > 2 and tuple(y.shape) == tuple(logits.shape[:-1]):  # (B, T, V) and (B, T)
        logits, y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    return F.cross_entropy(logits.float(), y, ignore_index=-100)


def _next_token(F, logits, y, call):
    ids = y if y is not None else _token_ids(call)
    if ids is None:
        raise ModelError(messages.next_token_needs_ids())
    if logits.dim() != 3 or tuple(ids.shape) != tuple(logits.shape[:2]):
        raise ModelError(messages.next_token_shapes(tuple(logits.shape), tuple(ids.shape)))
    scores = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    return F.cross_entropy(scores, ids[:, 1:].reshape(-1).long(), ignore_index=-100)


def _token_ids(call):
    import torch

    if call is None:
        return None
    named = dict(call.values())
    if isinstance(named.get("input_ids"), torch.Tensor):
        return named["input_ids"]
    return next((v for _, v in call.values() if isinstance(v, torch.Tensor) and not v.is_floating_point()), None)


def _own_loss(out):
    from nnspec.backends.outputs import choose

    loss, _ = choose(out, "loss")
    if loss is None:
        raise ModelError(messages.no_model_loss(), None, messages.no_model_loss_hint())
    return loss


@dataclass
class _LossFn:
    name: str
    fn: Any
    needs_target: bool

    def __call__(self, out, y, call=None):
        try:
            return self.fn(out, y, call)
        except ModelError:
            raise
        except Exception as e:
            raise ModelError(messages.loss_failed(self.name, f"{type(e).__name__}: {e}")) from e


def _main_tensor(out, output: str | None = None):
    """The model's main output tensor (or the one ``output`` names): what built-in losses use."""
    from nnspec.backends.outputs import available, choose

    found, _ = choose(out, output)
    if found is None:
        if output is not None:
            raise ModelError(messages.no_such_output(output, available(out)))
        raise ModelError(messages.no_tensor_output("the model"))
    return found
