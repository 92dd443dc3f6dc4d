"""``function relu, gelu over [-5, 5]``: activation curves and their derivatives,
computed by autograd on a grid."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch.nn import functional as F

from nnspec.backends import backend_for

POINTS = 201


@dataclass(frozen=True, slots=True)
class Activation:
    """One function ``function NAME`` draws: its torch callable, and the
    ``torch.nn`` module classes that compute it (what ``function *`` looks for)."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    modules: tuple[str, ...]


def _registry(*items: Activation) -> dict[str, Activation]:
    return {a.name: a for a in items}


# every name of nnspec.query.catalog.FUNCTIONS (tests/test_catalog.py keeps them equal)
ACTIVATIONS: dict[str, Activation] = _registry(
    Activation("relu", F.relu, ("ReLU",)),
    Activation("gelu", F.gelu, ("GELU",)),
    Activation("tanh", F.tanh, ("Tanh",)),
    Activation("sigmoid", F.sigmoid, ("Sigmoid",)),
    Activation("silu", F.silu, ("SiLU",)),
    Activation("elu", F.elu, ("ELU",)),
    Activation("leaky_relu", F.leaky_relu, ("LeakyReLU",)),
    Activation("softplus", F.softplus, ("Softplus",)),
    Activation("mish", F.mish, ("Mish",)),
    Activation("hardswish", F.hardswish, ("Hardswish",)),
    Activation("selu", F.selu, ("SELU",)),
)
MODULE_NAMES = {m: a.name for a in ACTIVATIONS.values() for m in a.modules}  # module class name -> function


def used_functions(model, trace) -> dict:
    """The activation functions a model uses: its activation modules (with
    their own settings, e.g. LeakyReLU's slope) and those it calls as functions."""
    found: dict = {}
    be = backend_for(model)
    for info in be.modules():
        name = MODULE_NAMES.get(info.type)
        if name:
            m = be.module_object(info.path)
            label = name if name != "leaky_relu" else f"leaky_relu({m.negative_slope:g})"
            found.setdefault(label, m)
    for name in sorted(trace.functions if trace is not None else ()):
        if name in ACTIVATIONS and not any(k.split("(")[0] == name for k in found):
            found[name] = ACTIVATIONS[name].fn
    return found


def curves(fns: dict, lo: float = -5.0, hi: float = 5.0, points: int = POINTS) -> pd.DataFrame:
    """``function, x, value, kind`` with kind ``f(x)`` or ``f'(x)``."""
    frames = []
    for label, fn in fns.items():
        x = torch.linspace(lo, hi, points, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            # a copy: the module may be the user's own, and must stay as it is
            y = copy.deepcopy(fn).double()(x) if isinstance(fn, torch.nn.Module) else fn(x)
            (dy,) = torch.autograd.grad(y.sum(), x)
        xs = x.detach().tolist()
        frames.append(pd.DataFrame({"function": label, "x": xs, "value": y.detach().tolist(), "kind": "f(x)"}))
        frames.append(pd.DataFrame({"function": label, "x": xs, "value": dy.tolist(), "kind": "f'(x)"}))
    return pd.concat(frames, ignore_index=True)


def named(names) -> dict:
    return {n: ACTIVATIONS[n].fn for n in names}
