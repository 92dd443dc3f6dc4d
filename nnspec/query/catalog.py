"""The vocabulary of the query language, in one place: sources, transforms,
marks, encodings, activation functions and the types of their arguments.

    SOURCES     what a query starts from: its name, what it yields, whether a
                training run can record it ``over steps``
    TRANSFORMS  steps that turn tensors into tensors or tables; their arguments
                in the order positional arguments fill them, with defaults
    MARKS       the last step: what draws; the encodings it takes
    FUNCTIONS   the activation functions ``function`` draws

The parser checks queries against these tables and every later stage reads
them from here; each stage's own registry (execute's transforms, numerics'
reductions, the marks' visitors, execute's activation functions) is tested
against them (tests/test_catalog.py). Pure data: no torch, so ``nnspec
validate`` stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, TypeVar

MAX_BINS = 10_000
DEFAULT_BINS = 50  # histogram(...) without bins=


# -- argument types --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ArgType:
    """The values an argument takes; ``want`` is how an error message names them."""

    want: str
    check: Callable[[object], bool]


MAX_INT = 2**62  # an argument's integers stay well inside int64 (torch's dims, seeds, sizes)


def _is_int(v: object, lo: int | None = None, hi: int | None = None) -> bool:
    if not isinstance(v, int) or isinstance(v, bool):
        return False
    return (lo if lo is not None else -MAX_INT) <= v <= (hi if hi is not None else MAX_INT)


def _is_range(v: object) -> bool:
    return (
        isinstance(v, tuple)
        and len(v) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        and v[0] < v[1]
        and math.isfinite(float(v[1]) - float(v[0]))
    )


INTEGER = ArgType("an integer", _is_int)
POSITIVE = ArgType("a positive integer", lambda v: _is_int(v, 1))
SEED = ArgType(f"an integer from 0 to {MAX_INT}", lambda v: _is_int(v, 0))
BINS = ArgType(f"an integer from 1 to {MAX_BINS}", lambda v: _is_int(v, 1, MAX_BINS))
MAX_SAMPLE = 1_000_000  # sample(n=…): at most this many values (a chart's data, not a copy of a tensor)
SAMPLE = ArgType(f"an integer from 1 to {MAX_SAMPLE:,}", lambda v: _is_int(v, 1, MAX_SAMPLE))
RANGE = ArgType("[low, high] with low < high", _is_range)
COMPONENTS = ArgType("1, 2 or 3", lambda v: _is_int(v, 1, 3))
COLUMN = ArgType("a column name", lambda v: isinstance(v, str))
SCHEME = ArgType("a Vega colour scheme name", lambda v: isinstance(v, str))
BOOLEAN = ArgType("true or false", lambda v: isinstance(v, bool))
COLUMNS = ArgType("an integer from 1 to 256", lambda v: _is_int(v, 1, 256))
DIRECTION = ArgType("LR or TB", lambda v: v in ("LR", "TB"))
DEPTH = ArgType("an integer from 1 to 64", lambda v: _is_int(v, 1, 64))


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument: its name, its type, and its value when a query leaves it out."""

    name: str
    type: ArgType
    default: object = None


def _names(args: tuple[Arg, ...]) -> tuple[str, ...]:
    return tuple(a.name for a in args)


# -- sources ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SourceKind:
    """What a query starts from.

    ``of``: what ``<name> of <selector>`` selects ("parameters" or "modules"),
    None for a source written without a selector. ``yields``: the Data it
    gives (tensors by layer, or a structure). ``capture``: the capture kind
    compile makes for each selected layer (None: compile handles it apart).
    ``over_steps``: a training run can record it at every recorded step.
    """

    name: str
    yields: str
    of: str | None = None
    capture: str | None = None
    over_steps: bool = False
    args: tuple[Arg, ...] = ()  # graph(depth=…): keywords only


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


def _table(*records: N) -> Mapping[str, N]:
    """Records by name, read-only, in the order given."""
    out: dict[str, N] = {}
    for r in records:
        assert r.name not in out, f"{r.name} declared twice"
        out[r.name] = r
    return MappingProxyType(out)


# -- encodings -------------------------------------------------------------------------
ENCODINGS: tuple[Arg, ...] = (
    Arg("x", COLUMN),
    Arg("y", COLUMN),
    Arg("color", COLUMN),
    Arg("facet", COLUMN),
    Arg("scheme", SCHEME),
    Arg("log", BOOLEAN),
    Arg("cols", COLUMNS),
    Arg("direction", DIRECTION),
    Arg("layout", ArgType("heads or overview", lambda v: v in ("heads", "overview"))),  # attention heatmaps
)
ENCODING_NAMES = _names(ENCODINGS)

GRAPH_ARGS: tuple[Arg, ...] = (
    Arg("depth", DEPTH),
    Arg("fold", BOOLEAN),
    Arg("direction", DIRECTION),
    Arg("color", COLUMN),  # a column (type, params) or a query giving one value per layer
)

# In this order "did you mean" and error messages list them.
SOURCES: Mapping[str, SourceKind] = _table(
    SourceKind("weights", "tensors", of="parameters", capture="param", over_steps=True),
    SourceKind("biases", "tensors", of="parameters", capture="param", over_steps=True),
    SourceKind("params", "tensors", of="parameters", capture="param", over_steps=True),
    SourceKind("grads", "tensors", of="parameters", capture="grad", over_steps=True),
    SourceKind("activations", "tensors", of="modules", capture="activation", over_steps=True),
    SourceKind("inputs", "tensors", of="modules", capture="input", over_steps=True),
    SourceKind("output_grads", "tensors", of="modules", capture="output_grad", over_steps=True),
    SourceKind("input_grads", "tensors", capture="input_grad"),
    SourceKind("attention", "tensors", of="modules", capture="attention"),
    SourceKind("graph", "graph", args=GRAPH_ARGS),
    SourceKind("summary", "summary"),
    SourceKind("function", "function"),
    SourceKind("loss", "series", over_steps=True),
    SourceKind("scalars", "series", over_steps=True),
)
SOURCE_KINDS = tuple(SOURCES)
PARAM_KINDS = tuple(s.name for s in SOURCES.values() if s.of == "parameters")  # selectors match parameter paths
OVER_STEPS_KINDS = tuple(s.name for s in SOURCES.values() if s.over_steps)


# -- transforms ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Transform:
    """A step on tensors. ``reduction``: one of numerics' REDUCTIONS, which
    states how it is computed, pushed into a hook and merged across steps."""

    name: str
    args: tuple[Arg, ...] = ()
    reduction: bool = False

    @property
    def arg_names(self) -> tuple[str, ...]:
        return _names(self.args)

    def bind(self, given: tuple[tuple[str, object], ...]) -> dict[str, object]:
        """Every argument by name: the given ones, the defaults for the rest."""
        values = dict(given)
        return {a.name: values.get(a.name, a.default) for a in self.args}


_DIM = (Arg("dim", INTEGER),)  # with dim=: reduce along that dimension only

# In this order positional arguments fill the arguments, and errors list the steps.
TRANSFORMS: Mapping[str, Transform] = _table(
    Transform("abs"),
    Transform("mean", _DIM, reduction=True),
    Transform("max", _DIM, reduction=True),
    Transform("min", _DIM, reduction=True),
    Transform("std", _DIM, reduction=True),
    Transform("norm", _DIM, reduction=True),
    Transform("flatten"),
    Transform("stats", reduction=True),
    Transform("histogram", (Arg("bins", BINS, DEFAULT_BINS), Arg("range", RANGE)), reduction=True),
    Transform(
        "downsample",
        (
            Arg("max", POSITIVE, 10_000),
            # what one value of a block is: the value of largest magnitude (with its sign), the mean, √mean(x²), the std
            Arg("agg", ArgType("mean, absmax, rms or std", lambda v: v in ("mean", "absmax", "rms", "std")), "absmax"),
        ),
    ),
    Transform("sample", (Arg("n", SAMPLE, 1000), Arg("seed", SEED, 0))),
    Transform("channels"),
    Transform("pca", (Arg("k", COMPONENTS, 2),)),
    Transform("dead_fraction", reduction=True),
    Transform("nan_count", reduction=True),
    Transform("inf_count", reduction=True),
    Transform("update_ratio", reduction=True),
)
REDUCTION_NAMES = tuple(t.name for t in TRANSFORMS.values() if t.reduction)


# -- marks -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Mark:
    """The last step of a query: what draws the data. Every mark takes every
    encoding today; a mark that should refuse one lists fewer."""

    name: str
    encodings: tuple[Arg, ...] = ENCODINGS

    @property
    def arg_names(self) -> tuple[str, ...]:
        return _names(self.encodings)


MARKS: Mapping[str, Mark] = _table(
    Mark("heatmap"),
    Mark("histogram"),  # also a transform: a last "| histogram(bins=9)" is both
    Mark("bar"),
    Mark("line"),
    Mark("box"),
    Mark("table"),
    Mark("graph"),
    Mark("images"),
    Mark("scatter"),
    Mark("ridgeline"),
)

# -- activation functions --------------------------------------------------------------
# torch.nn.functional names ``function`` draws; execute.functions.ACTIVATIONS
# holds each one's callable and the module classes that compute it.
FUNCTIONS = ("relu", "gelu", "tanh", "sigmoid", "silu", "elu", "leaky_relu", "softplus", "mish", "hardswish", "selu")
