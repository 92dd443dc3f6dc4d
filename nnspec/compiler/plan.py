"""The Plan's types: what compile produces and every later stage reads.

    Capture   one thing collected during the passes (a tensor slice or its reduction)
    ViewPlan  one view's query resolved: its layers, captures, remaining transforms and mark
    FailedView  a view whose query did not compile: its error, and nothing to capture
    Plan      every view's ViewPlan and the deduplicated captures of one render

Kept apart from the compile driver and its rules (as sqlglot keeps
``expressions.py`` apart from ``optimizer/``), so a rule never imports the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeAlias

from nnspec.errors import NnspecError, Span
from nnspec.numerics.reductions import REDUCTIONS
from nnspec.query.ast import Index, Query, Step
from nnspec.spec.load import Spec, ViewSpec

CAPTURE_KINDS = (
    "param", "grad", "activation", "input", "output_grad", "input_grad", "trace", "attention",
    "update",  # a parameter's change over one optimizer step (views over steps)
)  # fmt: skip
BACKWARD_KINDS = ("grad", "output_grad", "input_grad")  # taken in the backward pass
HOOK_KINDS = ("activation", "input", "output_grad")  # read in a module's capture callback


@dataclass(frozen=True, slots=True)
class Reduce:
    """A reduction pushed into the capture: one of numerics' REDUCTIONS, with its histogram's bins and range."""

    op: str
    abs: bool = False
    bins: int | None = None
    range: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.op not in REDUCTIONS:
            raise ValueError(f"reduction {self.op!r}: expected one of {', '.join(REDUCTIONS)}")

    def __str__(self) -> str:
        text = ("abs | " if self.abs else "") + self.op
        if self.op == "histogram":
            text += f"(bins={self.bins}" + (f", range={list(self.range)}" if self.range else "") + ")"
        return text


@dataclass(frozen=True, slots=True)
class Capture:
    """One thing collected during the passes: a tensor slice or its reduction."""

    kind: str
    target: str  # module path or parameter path; "" for input_grad
    index: Index | None = None
    reduce: Reduce | None = None
    output: str | None = None  # which tensor of a module's output (or arguments): ``@name``

    def __post_init__(self) -> None:
        if self.kind not in CAPTURE_KINDS:
            raise ValueError(f"capture kind {self.kind!r}: expected one of {', '.join(CAPTURE_KINDS)}")

    @property
    def series_key(self) -> str:
        """How a run names what it recorded, e.g. ``grad fc1.weight | norm``."""
        pick = f" @{self.output}" if self.output else ""
        return f"{self.kind} {self.target or 'input'}{pick}{self.index or ''} | {self.reduce}"

    @property
    def key(self) -> tuple[str, ...]:
        key = (self.kind, self.target, str(self.index) if self.index else "", str(self.reduce or ""))
        return key + (self.output,) if self.output else key


@dataclass(frozen=True, slots=True)
class ViewPlan:
    """A view whose query compiled: ``query`` is always there, ``error`` always None."""

    view: ViewSpec
    query: Query
    layers: tuple[str, ...] = ()
    captures: tuple[Capture, ...] = ()
    transforms: tuple[Step, ...] = ()
    mark: Step | None = None
    error: None = None  # a view that failed is a FailedView
    colour: ViewPlan | None = None  # graph(color="activations of * | std"): the query that colours nodes
    notes: tuple[str, ...] = ()  # what compiling found worth saying on the card (a tied parameter)


@dataclass(frozen=True, slots=True)
class FailedView:
    """A view whose query did not compile: its error, and nothing to capture or draw.

    It answers the reads a ViewPlan answers (``query``, ``layers``, ``captures``,
    ``transforms``, ``mark``, ``colour``) with nothing, so a caller may test
    ``vp.error is not None`` to tell the two apart."""

    view: ViewSpec
    error: NnspecError
    query: None = None
    layers: tuple[str, ...] = ()
    captures: tuple[Capture, ...] = ()
    transforms: tuple[Step, ...] = ()
    mark: None = None
    colour: None = None
    notes: tuple[str, ...] = ()


CompiledView: TypeAlias = ViewPlan | FailedView  # what compiling one view gives
Rule: TypeAlias = Callable[[ViewPlan], ViewPlan]  # a Plan rewrite (nnspec.compiler.rules)
Shapes: TypeAlias = Mapping[tuple[str, str], Sequence[int]]  # (capture kind, target) -> shape seen by a probe
LossProblem: TypeAlias = Callable[[Span], NnspecError]  # why gradient views cannot run, given a view's span


@dataclass(frozen=True, slots=True)
class Plan:
    spec: Spec
    views: tuple[CompiledView, ...]
    captures: tuple[Capture, ...]  # for the one forward/backward pass of a render
    recorded: tuple[Capture, ...] = ()  # for views over steps: what a run records at each recorded step
    checks: tuple[CompiledView, ...] = ()  # the spec's expect: entries
    backend: str = ""  # the backend that runs it (EXPLAIN names it)

    @property
    def forward(self) -> bool:
        return any(c.kind != "param" for c in self.captures)

    @property
    def backward(self) -> bool:
        return any(c.kind in BACKWARD_KINDS for c in self.captures)

    @property
    def hooked(self) -> tuple[str, ...]:
        """Modules that get a forward hook, in first-use order."""
        seen: dict[str, None] = {}
        for c in self.captures:
            if c.kind in HOOK_KINDS or c.kind == "attention":
                seen[c.target] = None
            elif c.kind == "trace":
                seen["* (trace)"] = None
        return tuple(seen)

    def explain(self, shapes: Shapes | None = None) -> str:
        from nnspec.compiler.explain import explain

        return explain(self, shapes)


@dataclass(frozen=True, slots=True)
class Available:
    """What the passes can use: an input batch, and a usable loss (or why not)."""

    has_input: bool = True
    loss_problem: LossProblem | None = None  # None, or Span -> SpecError
    runs: bool = False  # a run to read: the spec trains, or --run names one (views over steps need it)


def with_captures(vp: ViewPlan, captures: Iterable[Capture], transforms: Iterable[Step]) -> ViewPlan:
    return replace(vp, captures=tuple(captures), transforms=tuple(transforms))


ALL_AVAILABLE = Available()  # an input, a loss and runs: what tests and `nnspec plan` assume
