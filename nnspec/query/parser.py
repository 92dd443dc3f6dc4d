"""Stage 2: query strings ──Lark (grammar/query.lark)──▶ Query AST.

Positions from Lark are relative to the query string; the span of the YAML
scalar that holds the query shifts them to the place in the spec file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from lark import Lark, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from nnspec.errors import Span, SpecError
from nnspec.query import messages
from nnspec.query.ast import (
    Glob,
    Index,
    Query,
    RegexSelector,
    Selector,
    Source,
    Step,
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


class _Build(Transformer):
    """Parse tree → AST, checking step names and arguments."""

    def __init__(self, text: str, span: Span):
        super().__init__()
        self.text = text
        self.base = span

    def _at(self, meta_or_token) -> Span:
        line = getattr(meta_or_token, "line", 1) or 1
        col = getattr(meta_or_token, "column", 1) or 1
        return self.base.shifted(line, col)

    # -- sources and selectors
    @v_args(meta=True)
    def tensor_source(self, meta, items):
        kind, selector = items
        return Source(str(kind), selector, self._at(meta))

    @v_args(meta=True)
    def input_grads_source(self, meta, items):
        return Source("input_grads", None, self._at(meta))

    @v_args(meta=True)
    def graph_source(self, meta, items):
        span = self._at(meta)
        args = _named("graph", items[0] if items else [], (), span)
        return Source("graph", None, span, _check_args("graph", args, SOURCES["graph"].args, span))

    @v_args(meta=True)
    def summary_source(self, meta, items):
        return Source("summary", None, self._at(meta))

    @v_args(meta=True)
    def function_source(self, meta, items):
        names = items[0]
        over = items[1] if len(items) > 1 else None
        span = self._at(meta)
        if over is not None and not over[0] < over[1]:
            raise SpecError(messages.bad_argument("function", "over", list(over), "[low, high] with low < high"), span)
        unknown = [n for n in names if n != "*" and n not in FUNCTIONS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], FUNCTIONS, n=1)
            hint = spec_messages.did_you_mean(close[0]) if close else None
            raise SpecError(messages.unknown_function(unknown[0], FUNCTIONS), span, hint)
        args = (("names", tuple(names)),) + ((("over", over),) if over else ())
        return Source("function", None, span, args)

    @v_args(meta=True)
    def loss_source(self, meta, items):
        return Source("loss", None, self._at(meta))

    @v_args(meta=True)
    def over_steps(self, meta, items):
        lo, hi = items[0] if items else (None, None)
        if lo is not None and hi is not None and not lo < hi:
            raise SpecError(messages.bad_step_range(lo, hi), self._at(meta))
        return _OverSteps((lo, hi), self._at(meta))

    def steps(self, items):
        return tuple(items)

    def all_functions(self, items):
        return ("*",)

    def named_functions(self, items):
        return tuple(str(i) for i in items)

    def over(self, items):
        return tuple(float(i) for i in items)

    def call(self, items):
        return [a for a in items if a is not None]

    @v_args(meta=True)
    def selector(self, meta, items):
        include = items[0]
        exclude = items[2] if len(items) > 2 else ()
        return Selector(include, exclude, self._at(meta))

    def union(self, items):
        return tuple(items)

    def glob(self, items):
        (tok,) = items
        return Glob(str(tok), self._at(tok))

    def type_selector(self, items):
        kw, name = items
        return TypeSelector(str(name), self._at(kw))

    def regex_selector(self, items):
        (tok,) = items
        return RegexSelector(str(tok)[1:-1].replace("\\/", "/"), self._at(tok))

    # -- index
    @v_args(meta=True)
    def index(self, meta, items):
        return Index(tuple(items), self._at(meta))

    def at(self, items):
        return int(items[0])

    def range(self, items):
        bounds = list(items) + [None] * (3 - len(items))
        return tuple(bounds)

    def bound(self, items):
        return int(items[0]) if items else None

    # -- steps
    def number(self, items):
        text = str(items[0])
        return int(text) if text.lstrip("+-").isdigit() else float(text)

    def string(self, items):
        return str(items[0])[1:-1]

    def word(self, items):
        text = str(items[0])
        return {"true": True, "false": False}.get(text, text)

    def list(self, items):
        return tuple(i for i in items if i is not None)

    def keyword(self, items):
        name, value = items
        return (str(name), value, name)

    def positional(self, items):
        return (None, items[0], None)

    @v_args(meta=True)
    def step(self, meta, items):
        name_tok, *call = items
        return (str(name_tok), call[0] if call else [], self._at(name_tok))

    @v_args(meta=True)
    def start(self, meta, items):
        source = items[0]
        rest = items[1:]
        index = rest.pop(0) if rest and isinstance(rest[0], Index) else None
        over = rest.pop(0) if rest and isinstance(rest[0], _OverSteps) else None
        compare = rest.pop() if rest and isinstance(rest[-1], _Compare) else None
        if over is not None and source.kind not in OVER_STEPS_KINDS:
            raise SpecError(messages.not_over_steps(source.kind, OVER_STEPS_KINDS), over.span)
        if over is None and source.kind == "loss":
            raise SpecError(messages.loss_needs_over_steps(), source.span, messages.loss_needs_over_steps_hint())
        transforms, mark = _split_steps(rest)
        if compare is not None and mark is not None and not (mark.name == "histogram" and transforms):
            raise SpecError(messages.check_has_mark(mark.name), mark.span)
        cmp = (compare.op, compare.value) if compare else None
        return Query(source, index, tuple(transforms), mark, self.text, self.base, over.steps if over else None, cmp)

    @v_args(meta=True)
    def comparison(self, meta, items):
        op, number = items
        text = str(number)
        value = int(text) if text.lstrip("+-").isdigit() else float(text)
        return _Compare(str(op), value, self._at(meta))


@dataclass(frozen=True, slots=True)
class _Compare:
    op: str
    value: float
    span: Span


@dataclass(frozen=True, slots=True)
class _OverSteps:
    steps: tuple
    span: Span


def _split_steps(raw: list) -> tuple[list[Step], Step | None]:
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


def _only_encodings(args) -> bool:
    return all(name in ENCODING_NAMES for name, _, _ in args if name is not None)


def _named(step: str, args, allowed: tuple[Arg, ...], span: Span) -> list[tuple[str, object]]:
    """Name the positional arguments: they fill ``allowed`` in order."""
    out = []
    for i, (name, value, _tok) in enumerate(args):
        if name is None:
            if i >= len(allowed) or not allowed:
                raise SpecError(messages.unknown_argument(step, f"#{i + 1}", [a.name for a in allowed]), span)
            name = allowed[i].name
        out.append((name, value))
    return out


def _partition(name: str, args, span: Span):
    """Split a transform's arguments from encodings (``histogram(bins=9, log=true)``)."""
    allowed = TRANSFORMS[name].args
    own = TRANSFORMS[name].arg_names
    named = _named(name, args, allowed, span)
    t_args = [(k, v) for k, v in named if k in own or k not in ENCODING_NAMES]
    enc = [(k, v) for k, v in named if k in ENCODING_NAMES and k not in own]
    return _check_args(name, t_args, allowed, span), _check_args(name, enc, ENCODINGS, span)


def _check_args(step: str, args, allowed: tuple[Arg, ...], span: Span) -> tuple:
    """Each argument is one ``allowed`` names, with a value of its type."""
    by_name = {a.name: a for a in allowed}
    seen = {}
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
