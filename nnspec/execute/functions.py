"""``function relu, gelu over [-5, 5]``: activation curves and their derivatives,
computed by autograd on a grid.

``function *`` draws the activations a model really calls, found two ways:

- its activation modules (torch.nn, Hugging Face ``transformers.activations``,
  timm), known by class or, as a fallback, by a class name that says so
  (``...GELU``, ``...Activation``) when the module acts elementwise. The
  curve is the module's own output, computed on a float64 copy, so its
  settings apply (``GELU(approximate="tanh")``, a LeakyReLU's slope, a
  PReLU's learned slope) and the model is left as it was;
- the activation functions the forward pass called as functions
  (``F.gelu``, ``torch.tanh``: the trace's ``functions``).

Only modules that ran in the traced pass count; each curve is named after
the function it computes (``gelu``, ``gelu_new``, ``leaky_relu(0.2)``), and
two modules of one name that compute different curves are told apart by
their paths.
"""

from __future__ import annotations

import copy
import re
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

# functions a trace may see called as functions, beyond the catalog's (drawn by `function *`)
FUNCTIONAL: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {a.name: a.fn for a in ACTIVATIONS.values()} | {
    "relu6": F.relu6,
    "hardsigmoid": F.hardsigmoid,
    "hardtanh": F.hardtanh,
    "celu": F.celu,
    "softsign": F.softsign,
    "logsigmoid": F.logsigmoid,
    "tanhshrink": F.tanhshrink,
}

# activation module classes -> the name their curve is drawn under. torch.nn's own
# classes are named after the function they compute, with their non-default settings;
# Hugging Face's after the `hidden_act` names of transformers.activations.ACT2FN;
# timm's (timm.layers.activations, *_me and *_jit variants) after what they compute.
TORCH_MODULES: dict[str, str] = MODULE_NAMES | {
    "ReLU6": "relu6",
    "Hardsigmoid": "hardsigmoid",
    "Hardtanh": "hardtanh",
    "CELU": "celu",
    "PReLU": "prelu",
    "RReLU": "rrelu",
    "Softsign": "softsign",
    "LogSigmoid": "logsigmoid",
    "Tanhshrink": "tanhshrink",
    "Softshrink": "softshrink",
    "Hardshrink": "hardshrink",
    "Threshold": "threshold",
}
OTHER_MODULES: dict[str, str] = {
    # transformers.activations
    "GELUActivation": "gelu",
    "NewGELUActivation": "gelu_new",
    "FastGELUActivation": "gelu_fast",
    "QuickGELUActivation": "quick_gelu",
    "AccurateGELUActivation": "gelu_accurate",
    "GELUTanh": "gelu(approximate='tanh')",
    "PytorchGELUTanh": "gelu(approximate='tanh')",
    "ClippedGELUActivation": "gelu_10",
    "SiLUActivation": "silu",
    "MishActivation": "mish",
    "LaplaceActivation": "laplace",
    "ReLUSquaredActivation": "relu2",
    "SqrtSoftplusActivation": "sqrtsoftplus",
    "XIELUActivation": "xielu",
    "LinearActivation": "linear",
    # timm.layers.activations / activations_me
    "QuickGELU": "quick_gelu",
    "Swish": "silu",
    "SwishMe": "silu",
    "SwishAuto": "silu",
    "HardSwish": "hardswish",
    "HardSwishMe": "hardswish",
    "HardSigmoid": "hardsigmoid",
    "HardSigmoidMe": "hardsigmoid",
    "MishMe": "mish",
    "MishAuto": "mish",
    "HardMish": "hard_mish",
    "HardMishMe": "hard_mish",
}
# a class name that says "activation": the fallback for classes the tables do not know
ACTIVATION_NAME = re.compile(
    r"(?i).*(relu\d*|gelu|silu|swish|mish|sigmoid|tanh|softplus|elu|activation|act(fn)?)(me|jit|auto|\d*d?)?"
)
_QUIET = ("inplace",)  # settings that do not change the curve


def used_functions(model, trace) -> dict:
    """The activation functions a model uses, ``{label: callable}`` in the model's
    order: its activation modules (the module objects themselves, settings and
    all) that ran in the traced pass, then those it called as functions."""
    found: dict = {}
    be = backend_for(model)
    ran = dict(getattr(trace, "calls", None) or {})
    taken: list[str] = []  # paths of the activation modules found: their insides are theirs
    for info in be.modules():
        if not info.path or any(info.path.startswith(p + ".") for p in taken):
            continue
        if ran and info.path not in ran:
            continue  # built but never called
        name = _known(info.types)
        if name is None and not (info.leaf and _named_like_activation(info.types)):
            continue
        m = be.module_object(info.path)
        if not isinstance(m, torch.nn.Module) or not _elementwise(m):
            continue
        taken.append(info.path)
        label = _label(m, name or type(m).__name__)
        _add(found, label, m, info.path)
    for name, settings in _traced(trace):
        fn = FUNCTIONAL.get(name)
        if fn is None:
            continue
        label = name + (f"({', '.join(f'{k}={v!r}' for k, v in settings)})" if settings else "")
        if label not in found:
            found[label] = _Partial(fn, dict(settings)) if settings else fn
    return found


def _known(types: tuple[str, ...]) -> str | None:
    """The label of the first class in ``types`` (the class, then its bases) that a table knows."""
    for t in types:
        if t in TORCH_MODULES:
            return TORCH_MODULES[t]
        if t in OTHER_MODULES:
            return OTHER_MODULES[t]
    return None


def _named_like_activation(types: tuple[str, ...]) -> bool:
    own = [t for t in types if t not in ("Module", "object")]
    return any(ACTIVATION_NAME.fullmatch(t) for t in own)


def _label(m: torch.nn.Module, name: str) -> str:
    """``name`` with the module's settings where they change the curve."""
    if isinstance(m, torch.nn.LeakyReLU):
        return f"leaky_relu({m.negative_slope:g})"
    if isinstance(m, torch.nn.PReLU) and m.weight.numel() == 1:
        return f"prelu({m.weight.item():.3g})"
    if "(" in name:
        return name
    settings = _settings(m)
    defaults: dict[str, str] = {}
    if type(m).__module__.startswith("torch.nn."):  # torch's own classes: compare with their defaults
        try:
            defaults = _settings(type(m)())
        except TypeError:  # a class that needs arguments: every setting is worth showing
            pass
    shown = [v if k.startswith("arg") else f"{k}={v}" for k, v in settings.items() if defaults.get(k) != v]
    return f"{name}({', '.join(shown)})" if shown else name


def _settings(m: torch.nn.Module) -> dict[str, str]:
    """``extra_repr`` as {setting: text}, without those that leave the curve as it is."""
    out = {}
    for i, part in enumerate(p.strip() for p in m.extra_repr().split(",") if p.strip()):
        key, eq, value = part.partition("=")
        key, value = (key.strip(), value.strip()) if eq else (f"arg{i}", part)  # positional: shown bare
        if key not in _QUIET:
            out[key] = value
    return out


def _add(found: dict, label: str, m: torch.nn.Module, path: str) -> None:
    """One curve per label; a second module of the same label computing another curve
    (its own settings or weights) gets its path in the label."""
    if label in found:
        if _same(found[label], m):
            return
        label = f"{label} ({path})"
    found[label] = m


def _grid(points: int = 41) -> torch.Tensor:
    return torch.linspace(-5.0, 5.0, points, dtype=torch.float64)


def _evaluate(fn, x: torch.Tensor) -> torch.Tensor:
    """``fn`` on ``x``: a module on a float64 copy on the CPU (the model's own stays as it
    is, wherever it lives), on a copy of ``x`` (an in-place module overwrites its input).
    An RReLU draws its evaluation curve (the mean slope), not one random draw."""
    if isinstance(fn, torch.nn.RReLU):
        return F.rrelu(x.clone(), fn.lower, fn.upper, training=False)
    if isinstance(fn, torch.nn.Module):
        fn = copy.deepcopy(fn).to(device="cpu", dtype=torch.float64)
    return fn(x.clone())


def _elementwise(m: torch.nn.Module) -> bool:
    """Whether ``m`` maps a tensor of numbers to one of the same shape, number by number
    (a softmax or a norm does not): it is a curve to draw."""
    x = _grid()
    try:
        with torch.no_grad():
            y = _evaluate(m, x)
            y2 = _evaluate(m, x.flip(0).reshape(1, -1, 1))
    except Exception:  # not a function of one tensor: not an activation
        return False
    return (
        isinstance(y, torch.Tensor)
        and y.shape == x.shape
        and isinstance(y2, torch.Tensor)
        and y2.numel() == x.numel()
        and torch.allclose(y2.reshape(-1).flip(0), y, rtol=1e-9, atol=1e-12, equal_nan=True)
    )


def _same(a, b) -> bool:
    x = _grid()
    with torch.no_grad():
        return bool(torch.allclose(_evaluate(a, x), _evaluate(b, x), rtol=1e-9, atol=1e-12, equal_nan=True))


class _Partial:
    """A functional activation with the keyword settings the model called it with."""

    def __init__(self, fn, kwargs: dict):
        self.fn, self.kwargs = fn, kwargs

    def __call__(self, x):
        return self.fn(x, **self.kwargs)


def _traced(trace) -> list[tuple[str, tuple]]:
    """(name, settings) of each activation the traced pass called as a function; the
    trace records names (and, where it records them, the call's keyword settings)."""
    out = []
    for item in getattr(trace, "functions", None) or ():
        name, settings = (item, ()) if isinstance(item, str) else (item[0], tuple(item[1]))
        out.append((name, settings))
    return sorted(out, key=lambda t: (t[0], str(t[1])))


def curves(fns: dict, lo: float = -5.0, hi: float = 5.0, points: int = POINTS) -> pd.DataFrame:
    """``function, x, value, kind`` with kind ``f(x)`` or ``f'(x)``."""
    frames = []
    for label, fn in fns.items():
        x = torch.linspace(lo, hi, points, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            # a copy of the module (the user's own stays as it is) and of x, which an
            # in-place activation (ReLU(inplace=True)) may overwrite: x stays a leaf
            y = _evaluate(fn, x)
            (dy,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
        if dy is None:  # a constant function
            dy = torch.zeros_like(x)
        xs = x.detach().tolist()
        frames.append(pd.DataFrame({"function": label, "x": xs, "value": y.detach().tolist(), "kind": "f(x)"}))
        frames.append(pd.DataFrame({"function": label, "x": xs, "value": dy.tolist(), "kind": "f'(x)"}))
    return pd.concat(frames, ignore_index=True)


def named(names) -> dict:
    return {n: ACTIVATIONS[n].fn for n in names}
