"""The query AST: frozen dataclasses, one per grammar rule, each with a span."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nnspec.errors import Span
from nnspec.query.catalog import SOURCE_KINDS


@dataclass(frozen=True, slots=True)
class Glob:
    pattern: str
    span: Span

    def __str__(self) -> str:
        return self.pattern


@dataclass(frozen=True, slots=True)
class TypeSelector:
    name: str
    span: Span

    def __str__(self) -> str:
        return f"type({self.name})"


@dataclass(frozen=True, slots=True)
class RegexSelector:
    pattern: str
    span: Span

    def __str__(self) -> str:
        return f"/{self.pattern}/"


Atom = Glob | TypeSelector | RegexSelector

# an index item: an int, or a slice's (start, stop, step)
IndexItem = int | tuple[int | None, int | None, int | None]
# "over steps[lo:hi]": (lo, hi), either None
StepRange = tuple[int | None, int | None]


@dataclass(frozen=True, slots=True)
class Selector:
    include: tuple[Atom, ...]
    exclude: tuple[Atom, ...]
    span: Span

    def __str__(self) -> str:
        text = ", ".join(str(a) for a in self.include)
        if self.exclude:
            text += " except " + ", ".join(str(a) for a in self.exclude)
        return text


@dataclass(frozen=True, slots=True)
class Source:
    kind: str
    selector: Selector | None  # None for input_grads, graph, summary, function
    span: Span
    args: tuple[tuple[str, object], ...] = ()  # graph(depth=…); function: names, over
    pick: str | None = None  # ``@name``: which tensor of a module's output or arguments

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"source {self.kind!r}: expected one of {', '.join(SOURCE_KINDS)}")

    def arg(self, name: str, default: object = None) -> Any:
        # Any, not object: the value's type depends on ``name`` (checked against the
        # catalog's ArgType at parse time) and callers use it as that type directly.
        return dict(self.args).get(name, default)

    def __str__(self) -> str:
        if self.kind == "function":
            text = "function " + ", ".join(self.arg("names"))
            over = self.arg("over")
            return text + (f" over [{_value(over[0])}, {_value(over[1])}]" if over else "")
        if self.kind == "scalars":
            tags = self.arg("tags")
            return "scalars" if tags == ("*",) else "scalars of " + ", ".join(tags)
        if self.kind == "graph" and self.args:
            return f"graph({', '.join(f'{k}={_value(v)}' for k, v in self.args)})"
        pick = f" @{self.pick}" if self.pick else ""
        return self.kind if self.selector is None else f"{self.kind} of {self.selector}{pick}"


@dataclass(frozen=True, slots=True)
class Index:
    """Per-dimension items: an int, or a (start, stop, step) slice of ints/None."""

    items: tuple[IndexItem, ...]
    span: Span

    def as_torch(self) -> tuple[int | slice, ...]:
        return tuple(slice(*i) if isinstance(i, tuple) else i for i in self.items)

    def __str__(self) -> str:
        def one(i: IndexItem) -> str:
            if not isinstance(i, tuple):
                return str(i)
            text = ":".join("" if b is None else str(b) for b in i[:2])
            return text + (f":{i[2]}" if i[2] is not None else "")

        return "[" + ", ".join(one(i) for i in self.items) + "]"


@dataclass(frozen=True, slots=True)
class Step:
    """A transform or a mark: its name and its arguments (name, value) pairs."""

    name: str
    args: tuple[tuple[str, object], ...]
    span: Span

    def arg(self, name: str, default: object = None) -> Any:
        # Any, not object: the value's type depends on ``name`` (checked against the
        # catalog's ArgType at parse time) and callers use it as that type directly.
        return dict(self.args).get(name, default)

    def __str__(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}({', '.join(f'{k}={_value(v)}' for k, v in self.args)})"


def _over(over: StepRange | None) -> str:
    if over is None:
        return ""
    lo, hi = over
    rng = "" if (lo, hi) == (None, None) else f"[{'' if lo is None else lo}:{'' if hi is None else hi}]"
    return f" over steps{rng}"


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v if v.isidentifier() else repr(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


@dataclass(frozen=True, slots=True)
class Query:
    source: Source
    index: Index | None
    transforms: tuple[Step, ...]
    mark: Step | None
    text: str
    span: Span
    over: StepRange | None = None  # "over steps[lo:hi]": (lo, hi), either None; None when not over steps
    compare: tuple[str, float] | None = None  # an expect: check's "< 0.5": (op, number)

    @property
    def over_steps(self) -> bool:
        return self.over is not None

    def __str__(self) -> str:
        parts = [str(self.source) + (f" {self.index}" if self.index else "") + _over(self.over)]
        parts += [str(t) for t in self.transforms]
        implied = self.mark and self.mark.name == "histogram" and not self.mark.args and self.transforms
        if implied and self.transforms[-1].name == "histogram":
            pass  # "| histogram(bins=9)" as the last step is both the transform and the mark
        elif self.mark:
            parts.append(str(self.mark))
        text = " | ".join(parts)
        return text + (f" {self.compare[0]} {self.compare[1]}" if self.compare else "")
