"""Stage 2: query strings ──Lark (grammar/query.lark)──▶ Query AST.

Positions from Lark are relative to the query string; the span of the YAML
scalar that holds the query shifts them to the place in the spec file.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import cast

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.tree import Meta

from nnspec.errors import Span, SpecError
from nnspec.query import messages
from nnspec.query.ast import (
    Atom,
    Glob,
    Index,
    IndexItem,
    Query,
    RegexSelector,
    Selector,
    Source,
    Step,
    StepRange,
    TypeSelector,
)
from nnspec.query.catalog import (
    ENCODING_NAMES,
    ENCODINGS,
    FUNCTIONS,
    MARKS,
    OVER_STEPS_KINDS,
    SOURCE_KINDS,
    SOURCES,
    TRANSFORMS,
    Arg,
)
from nnspec.spec import messages as spec_messages

PICKS = ("activations", "inputs", "output_grads")
MAX_INDEX = (
    2**62
)  # no tensor is longer; torch's int64 indexing overflows past 2**63  # sources whose tensor ``@name`` can choose


@cache
def grammar_text() -> str:
    """The grammar, ``nnspec/query/query.lark``: package data beside this module."""
    return resources.files("nnspec.query").joinpath("query.lark").read_text()


@cache
def parser() -> Lark:
    return Lark(
        grammar_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
    )


def parse(text: str, span: Span | None = None) -> Query:
    """Parse one query; ``span`` is where its first character sits in the spec.

    >>> str(parse("weights of fc1 | heatmap"))
    'weights of fc1 | heatmap'
    """
    span = span or Span("<query>", 1, 1)
    try:
        tree = parser().parse(text)
    except UnexpectedInput as e:
        raise _parse_error(e, text, span) from None
    try:
        return _Build(text, span).transform(tree)
    except VisitError as e:
        raise e.orig_exc from None


def _parse_error(e: UnexpectedInput, text: str, span: Span) -> SpecError:
    if isinstance(e, UnexpectedEOF):
        expected = sorted(e.expected)
        line, col = text.count("\n") + 1, len(text.rsplit("\n", 1)[-1]) + 1
    else:
        line, col = e.line, e.column
        expected = sorted(getattr(e, "expected", None) or getattr(e, "allowed", None) or ())
        if isinstance(e, UnexpectedToken) and e.token.type == "$END":
            line, col = text.count("\n") + 1, len(text.rsplit("\n", 1)[-1]) + 1
    nice = [_terminal_name(t) for t in expected if not t.startswith("__")]
    if isinstance(e, UnexpectedCharacters) and not nice:
        nice = ["a module path, a step name or '|'"]
    hint = None
    if line == 1 and col == 1:
        close = difflib.get_close_matches(text.split(" ", 1)[0], SOURCE_KINDS, n=1)
        hint = spec_messages.did_you_mean(close[0]) if close else None
    return SpecError(messages.parse_error(nice or ["end of query"]), span.shifted(line, col), hint)


_TERMINAL_NAMES = {
    "KIND": "a source (weights, biases, params, activations, inputs, grads, output_grads)",
    "INPUT_GRADS": "input_grads",
    "PATTERN": "a module path or glob",
    "REGEX": "/regex/",
    "TYPE": "type(Name)",
    "NAME": "a name",
    "VBAR": "'|'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "COLON": "':'",
    "EQUAL": "'='",
    "OF": "'of'",
    "COMPARE": "a comparison (< <= > >= == !=, in expect: checks)",
    "OVER": "'over steps'",
    "STEPS": "'steps'",
    "EXCEPT": "'except'",
    "SIGNED_INT": "an integer",
    "SIGNED_NUMBER": "a number",
    "STRING": "a string",
    "$END": "end of query",
}


def _terminal_name(t: str) -> str:
    return _TERMINAL_NAMES.get(t, t.lower())


# A value in a step's arguments: a number, a string, a bare word or true/false, a list.
_Value = int | float | bool | str | tuple["_Value", ...]
_Values = list[_Value]
# One argument as the parser sees it: (name or None if positional, value, name token or None).
_Arg = tuple[str | None, _Value, Token | None]
# A step before it is named a transform or a mark: (name, arguments, span).
_Call = list[_Arg]
_RawStep = tuple[str, _Call, Span]
_RawSteps = list[_RawStep]
# Checked (name, value) arguments, as Source and Step hold them.
_Args = tuple[tuple[str, object], ...]
# Children of a rule whose children are of mixed kinds (tokens and built nodes).
_Items = list[object]
_Tokens = list[Token]


class _Build(Transformer[Token, Query]):
    """Parse tree → AST, checking step names and arguments."""

    def __init__(self, text: str, span: Span) -> None:
        super().__init__()
        self.text = text
        self.base = span

    def _at(self, meta_or_token: Meta | Token) -> Span:
        line = getattr(meta_or_token, "line", 1) or 1
        col = getattr(meta_or_token, "column", 1) or 1
        return self.base.shifted(line, col)

    # -- sources and selectors
    @v_args(meta=True)
    def tensor_source(self, meta: Meta, items: _Items) -> Source:
        kind, selector = items[0], items[1]
        pick = str(items[2]) if len(items) > 2 else None
        span = self._at(meta)
        if pick is not None and str(kind) not in PICKS:
            raise SpecError(messages.pick_not_allowed(str(kind), PICKS), span)
        return Source(str(kind), cast(Selector, selector), span, pick=pick)

    def pick(self, items: _Items) -> str:
        return str(items[0])

    @v_args(meta=True)
    def input_grads_source(self, meta: Meta, items: _Items) -> Source:
        return Source("input_grads", None, self._at(meta))

    @v_args(meta=True)
    def graph_source(self, meta: Meta, items: list[list[_Arg]]) -> Source:
        span = self._at(meta)
        args = _named("graph", items[0] if items else [], (), span)
        return Source("graph", None, span, _check_args("graph", args, SOURCES["graph"].args, span))

    @v_args(meta=True)
    def summary_source(self, meta: Meta, items: _Items) -> Source:
        return Source("summary", None, self._at(meta))

    @v_args(meta=True)
    def function_source(self, meta: Meta, items: _Items) -> Source:
        names = cast(tuple[str, ...], items[0])
        over = cast(tuple[float, ...], items[1]) if len(items) > 1 else None
        span = self._at(meta)
        if over is not None and not over[0] < over[1]:
            raise SpecError(messages.bad_argument("function", "over", list(over), "[low, high] with low < high"), span)
        unknown = [n for n in names if n != "*" and n not in FUNCTIONS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], FUNCTIONS, n=1)
            hint = spec_messages.did_you_mean(close[0]) if close else None
            raise SpecError(messages.unknown_function(unknown[0], FUNCTIONS), span, hint)
        args: _Args = (("names", tuple(names)),) + ((("over", over),) if over else ())
        return Source("function", None, span, args)

    @v_args(meta=True)
    def loss_source(self, meta: Meta, items: _Items) -> Source:
        return Source("loss", None, self._at(meta))

    @v_args(meta=True)
    def scalars_source(self, meta: Meta, items: _Items) -> Source:
        tags = tuple(str(t) for t in items) or ("*",)
        return Source("scalars", None, self._at(meta), (("tags", tags),))

    @v_args(meta=True)
    def over_steps(self, meta: Meta, items: list[StepRange]) -> _OverSteps:
        lo, hi = items[0] if items else (None, None)
        if lo is not None and hi is not None and not lo < hi:
            raise SpecError(messages.bad_step_range(lo, hi), self._at(meta))
        return _OverSteps((lo, hi), self._at(meta))

    def steps(self, items: list[int | None]) -> tuple[int | None, ...]:
        return tuple(items)

    def all_functions(self, items: _Tokens) -> tuple[str]:
        return ("*",)

    def named_functions(self, items: _Tokens) -> tuple[str, ...]:
        return tuple(str(i) for i in items)

    def over(self, items: _Tokens) -> tuple[float, ...]:
        return tuple(float(self._finite(i)) for i in items)

    def call(self, items: list[_Arg | None]) -> list[_Arg]:
        return [a for a in items if a is not None]

    @v_args(meta=True)
    def selector(self, meta: Meta, items: _Items) -> Selector:
        include = cast(tuple[Atom, ...], items[0])
        exclude = cast(tuple[Atom, ...], items[2]) if len(items) > 2 else ()
        return Selector(include, exclude, self._at(meta))

    def union(self, items: list[Atom]) -> tuple[Atom, ...]:
        return tuple(items)

    def glob(self, items: _Tokens) -> Glob:
        (tok,) = items
        return Glob(str(tok), self._at(tok))

    def type_selector(self, items: _Tokens) -> TypeSelector:
        kw, name = items
        return TypeSelector(str(name), self._at(kw))

    def regex_selector(self, items: _Tokens) -> RegexSelector:
        (tok,) = items
        return RegexSelector(str(tok)[1:-1].replace("\\/", "/"), self._at(tok))

    # -- index
    @v_args(meta=True)
    def index(self, meta: Meta, items: list[IndexItem]) -> Index:
        return Index(tuple(items), self._at(meta))

    def at(self, items: _Tokens) -> int:
        return self._index_int(items[0])

    @v_args(meta=True)
    def range(self, meta: Meta, items: list[int | None]) -> tuple[int | None, int | None, int | None]:
        bounds = list(items) + [None] * (3 - len(items))
        step = bounds[2]
        if step is not None and step <= 0:
            # torch indexing takes positive steps only; [::0] selects nothing in Python either
            raise SpecError(messages.bad_index_step(step), self._at(meta), messages.bad_index_step_hint(step))
        return cast(tuple[int | None, int | None, int | None], tuple(bounds))

    def bound(self, items: _Tokens) -> int | None:
        return self._index_int(items[0]) if items else None

    def _index_int(self, tok: Token) -> int:
        value = int(tok)
        if not -MAX_INDEX <= value <= MAX_INDEX:
            raise SpecError(messages.index_too_large(str(tok), MAX_INDEX), self._at(tok))
        return value

    # -- steps
    def number(self, items: _Tokens) -> int | float:
        return self._finite(items[0])

    def _finite(self, tok: Token) -> int | float:
        """A number of the query: an int, or a finite float (1e400 is no number to draw)."""
        text = str(tok)
        value = int(text) if text.lstrip("+-").isdigit() else float(text)
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(messages.not_finite(text), self._at(tok))
        return value

    def string(self, items: _Tokens) -> str:
        return str(items[0])[1:-1]

    def word(self, items: _Tokens) -> bool | str:
        text = str(items[0])
        return {"true": True, "false": False}.get(text, text)

    def list(self, items: list[_Value | None]) -> tuple[_Value, ...]:
        return tuple(i for i in items if i is not None)

    def keyword(self, items: _Items) -> _Arg:
        name, value = items
        return (str(name), cast(_Value, value), cast(Token, name))

    def positional(self, items: _Values) -> _Arg:
        return (None, items[0], None)

    @v_args(meta=True)
    def step(self, meta: Meta, items: _Items) -> _RawStep:
        name_tok, *call = items
        return (str(name_tok), cast(_Call, call[0]) if call else [], self._at(cast(Token, name_tok)))

    @v_args(meta=True)
    def start(self, meta: Meta, items: _Items) -> Query:
        source = cast(Source, items[0])
        rest = items[1:]
        index = cast(Index, rest.pop(0)) if rest and isinstance(rest[0], Index) else None
        over = cast(_OverSteps, rest.pop(0)) if rest and isinstance(rest[0], _OverSteps) else None
        compare = cast(_Compare, rest.pop()) if rest and isinstance(rest[-1], _Compare) else None
        if over is not None and source.kind not in OVER_STEPS_KINDS:
            raise SpecError(messages.not_over_steps(source.kind, OVER_STEPS_KINDS), over.span)
        if over is None and source.kind in ("loss", "scalars"):
            raise SpecError(
                messages.loss_needs_over_steps(source.kind),
                source.span,
                messages.loss_needs_over_steps_hint(source.kind),
            )
        transforms, mark = _split_steps(cast(_RawSteps, rest))
        if compare is not None and mark is not None and not (mark.name == "histogram" and transforms):
            raise SpecError(messages.check_has_mark(mark.name), mark.span)
        cmp = (compare.op, compare.value) if compare else None
        return Query(source, index, tuple(transforms), mark, self.text, self.base, over.steps if over else None, cmp)

    @v_args(meta=True)
    def comparison(self, meta: Meta, items: _Tokens) -> _Compare:
        op, number = items
        return _Compare(str(op), self._finite(number), self._at(meta))


@dataclass(frozen=True, slots=True)
class _Compare:
    op: str
    value: float
    span: Span


@dataclass(frozen=True, slots=True)
class _OverSteps:
    steps: StepRange
    span: Span


def _split_steps(raw: list[_RawStep]) -> tuple[list[Step], Step | None]:
    """Name each step a transform or a mark; the mark, if any, comes last."""
    transforms: list[Step] = []
    mark = None
    known = list(TRANSFORMS) + [m for m in MARKS if m not in TRANSFORMS]
    for i, (name, args, span) in enumerate(raw):
        last = i == len(raw) - 1
        if name not in TRANSFORMS and name not in MARKS:
            close = difflib.get_close_matches(name, known, n=1)
            raise SpecError(
                messages.unknown_step(name, known),
                span,
                spec_messages.did_you_mean(close[0]) if close else None,
            )
        if name in MARKS and name not in TRANSFORMS and not last:
            raise SpecError(messages.mark_not_last(name), span)
        if name in TRANSFORMS and not (name == "histogram" and _only_encodings(args) and transforms_has(transforms)):
            t_args, enc_args = _partition(name, args, span)
            transforms.append(Step(name, t_args, span))
            if name == "histogram" and last:
                mark = Step("histogram", enc_args, span)
            elif enc_args:
                bad = enc_args[0][0]
                raise SpecError(messages.unknown_argument(name, bad, TRANSFORMS[name].arg_names), span)
        else:
            encodings = MARKS[name].encodings
            mark = Step(name, _check_args(name, _named(name, args, encodings, span), encodings, span), span)
    return transforms, mark


def transforms_has(transforms: list[Step]) -> bool:
    """A second 'histogram' after a histogram transform is the mark."""
    return any(t.name == "histogram" for t in transforms)


def _only_encodings(args: Iterable[_Arg]) -> bool:
    return all(name in ENCODING_NAMES for name, _, _ in args if name is not None)


def _named(step: str, args: Iterable[_Arg], allowed: tuple[Arg, ...], span: Span) -> list[tuple[str, object]]:
    """Name the positional arguments: they fill ``allowed`` in order."""
    out: list[tuple[str, object]] = []
    for i, (name, value, _tok) in enumerate(args):
        if name is None:
            if i >= len(allowed) or not allowed:
                raise SpecError(messages.unknown_argument(step, f"#{i + 1}", [a.name for a in allowed]), span)
            name = allowed[i].name
        out.append((name, value))
    return out


def _partition(name: str, args: Iterable[_Arg], span: Span) -> tuple[_Args, _Args]:
    """Split a transform's arguments from encodings (``histogram(bins=9, log=true)``)."""
    allowed = TRANSFORMS[name].args
    own = TRANSFORMS[name].arg_names
    named = _named(name, args, allowed, span)
    t_args = [(k, v) for k, v in named if k in own or k not in ENCODING_NAMES]
    enc = [(k, v) for k, v in named if k in ENCODING_NAMES and k not in own]
    return _check_args(name, t_args, allowed, span), _check_args(name, enc, ENCODINGS, span)


def _check_args(step: str, args: Iterable[tuple[str, object]], allowed: tuple[Arg, ...], span: Span) -> _Args:
    """Each argument is one ``allowed`` names, with a value of its type."""
    by_name = {a.name: a for a in allowed}
    seen: dict[str, object] = {}
    for k, v in args:
        if k not in by_name:
            close = difflib.get_close_matches(k, list(by_name), n=1)
            raise SpecError(
                messages.unknown_argument(step, k, list(by_name)),
                span,
                spec_messages.did_you_mean(close[0]) if close else None,
            )
        kind = by_name[k].type
        if not kind.check(v):
            raise SpecError(messages.bad_argument(step, k, v, kind.want), span)
        seen[k] = v
    return tuple(seen.items())


def query_span(view_span: Span | None, quoted: bool, text: str | None = None) -> Span:
    """Where a YAML scalar's text starts (after its opening quote); without a
    file, the query's own first line stands in for the source line."""
    if view_span is None:
        return Span("<query>", 1, 1, text.split("\n", 1)[0] if text else None)
    return Span(view_span.file, view_span.line, view_span.col + (1 if quoted else 0), view_span.text)


__all__ = ["grammar_text", "parse", "query_span"]
