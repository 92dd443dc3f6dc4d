"""The batch a spec's forward pass runs on, and the loss its gradients come from."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from nnspec.errors import ModelError, SpecError
from nnspec.inputs import messages
from nnspec.paths import resolve_path
from nnspec.spec import messages as spec_messages
from nnspec.spec.load import InputSpec


@dataclass
class Batch:
    """``x`` for the model, an optional target ``y``, and notes for the dashboard."""

    x: object
    y: object = None
    notes: list = field(default_factory=list)
    classes: tuple = ()
    features: tuple = ()
    tokens: tuple = ()


def load_input(inp: InputSpec, base_dir: str) -> Batch:
    batch = {"random": _random, "dataset": _dataset, "file": _file, "tokens": _tokens}[inp.kind](inp, base_dir)
    labels = inp.options.get("labels")
    if isinstance(labels, list):  # labels for the positions of a sequence (attention axes, PCA points)
        batch.tokens = tuple(str(t) for t in labels)
    return batch


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
    return Batch(x, tokens=tuple(seqs[0]))


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
    return Batch(x)


def _dataset(inp: InputSpec, base_dir: str) -> Batch:
    import pandas as pd

    o = inp.options
    name = o["dataset"]
    if name.endswith(".csv"):
        path = resolve_path(name, base_dir)
        if not os.path.exists(path):
            path = os.path.abspath(name)
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
    return Batch(x, y, notes, classes, tuple(features), names)


def _file(inp: InputSpec, base_dir: str) -> Batch:
    import numpy as np
    import torch

    name = inp.options["file"]
    path = resolve_path(name, base_dir)
    if not os.path.exists(path):
        path = os.path.abspath(name)
    try:
        if path.endswith(".npy"):
            return Batch(torch.from_numpy(np.load(path, allow_pickle=False)))
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                x = z["x"] if "x" in z else z[keys[0]]
                y = z["y"] if "y" in z else None
                return Batch(torch.from_numpy(x), None if y is None else torch.from_numpy(y))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SpecError(messages.input_file(name, f"{type(e).__name__}: {e}"), inp.span) from None
    if isinstance(obj, torch.Tensor):
        return Batch(obj)
    if isinstance(obj, dict) and isinstance(obj.get("x"), torch.Tensor):
        labels = obj.get("labels")
        tokens = tuple(str(t) for t in labels) if isinstance(labels, (list, tuple)) else ()
        return Batch(obj["x"], obj.get("y"), tokens=tokens)
    raise SpecError(
        messages.input_file(name, "expected a tensor or a dict with 'x' (and optional 'y')"),
        inp.span,
    )


def make_loss(name: str, base_dir: str, span=None):
    """``fn(output, target) -> scalar``; ``needs_target`` says whether it uses the target."""
    import torch.nn.functional as F

    if name == "mse":
        return _LossFn(name, lambda out, y: _mse(F, _first_tensor(out), y), True)
    if name == "cross_entropy":
        return _LossFn(name, lambda out, y: F.cross_entropy(_first_tensor(out), y.long()), True)
    if name == "sum":
        return _LossFn(name, lambda out, y: _first_tensor(out).float().sum(), False)
    if ":" in name:
        from nnspec.inputs.model import import_callable

        fn = import_callable(name, base_dir, span)
        return _LossFn(name, fn, False)  # fn(output, target); target is None without one
    raise SpecError(messages.unknown_loss(name), span)


def _mse(F, out, y):
    return F.mse_loss(out, y.reshape(out.shape).to(out.dtype))


@dataclass
class _LossFn:
    name: str
    fn: object
    needs_target: bool

    def __call__(self, out, y):
        try:
            return self.fn(out, y)
        except Exception as e:
            raise ModelError(messages.loss_failed(self.name, f"{type(e).__name__}: {e}")) from e


def _first_tensor(out):
    """The model's first output tensor: what the built-in losses are taken of."""
    from nnspec.backends.pytorch.trace import tensors

    found = tensors(out)
    if not found:
        raise ModelError(messages.no_tensor_output("the model"))
    return found[0]
