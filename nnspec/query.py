"""Stage 2: query strings ──Lark (grammar/query.lark)──▶ Query AST.

Positions from Lark are relative to the query string; the span of the YAML
scalar that holds the query shifts them to the place in the spec file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from . import messages
from .errors import Span, SpecError
from .query_ast import (
    SOURCE_KINDS,
    Glob,
    Index,
    Query,
    RegexSelector,
    Selector,
    Source,
    Step,
    TypeSelector,
)

# name -> allowed arguments, in the order positional arguments fill them
TRANSFORMS: dict[str, tuple[str, ...]] = {
    "abs": (),
    "mean": ("dim",),
    "max": ("dim",),
    "min": ("dim",),
    "std": ("dim",),
    "norm": ("dim",),
    "flatten": (),
    "stats": (),
    "histogram": ("bins", "range"),
    "downsample": ("max",),
    "sample": ("n", "seed"),
    "channels": (),
    "pca": ("k",),
    "dead_fraction": (),
    "nan_count": (),
    "inf_count": (),
    "update_ratio": (),
}
# sources whose values a training run can record at every recorded step
OVER_STEPS_KINDS = ("weights", "biases", "params", "grads", "activations", "inputs", "output_grads", "loss")
ENCODINGS = ("x", "y", "color", "facet", "scheme", "log", "cols", "direction")
MARKS = ("heatmap", "histogram", "bar", "line", "box", "table", "graph", "images", "scatter", "ridgeline")
GRAPH_ARGS = ("depth", "fold", "direction", "color")
# activation functions ``function`` can draw (torch.nn.functional names)
FUNCTIONS = ("relu", "gelu", "tanh", "sigmoid", "silu", "elu", "leaky_relu", "softplus", "mish", "hardswish", "selu")
MAX_BINS = 10_000
DEFAULT_BINS = 50  # histogram(...) without bins=


@cache
def grammar_text() -> str:
    """grammar/query.lark: packaged inside the wheel, or beside the source tree."""
    packaged = resources.files("nnspec").joinpath("grammar").joinpath("query.lark")
    if packaged.is_file():
        return packaged.read_text()
    return (Path(__file__).resolve().parent.parent / "grammar" / "query.lark").read_text()


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
        hint = messages.did_you_mean(close[0]) if close else None
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
        return Source("graph", None, span, _check_args("graph", args, GRAPH_ARGS, span))

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
            hint = messages.did_you_mean(close[0]) if close else None
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
            raise SpecError(messages.not_over_steps(source.kind), over.span)
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
                messages.did_you_mean(close[0]) if close else None,
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
                raise SpecError(messages.unknown_argument(name, bad, TRANSFORMS[name]), span)
        else:
            mark = Step(
                name,
                _check_args(name, _named(name, args, ENCODINGS, span), ENCODINGS, span),
                span,
            )
    return transforms, mark


def transforms_has(transforms: list[Step]) -> bool:
    """A second 'histogram' after a histogram transform is the mark."""
    return any(t.name == "histogram" for t in transforms)


def _only_encodings(args) -> bool:
    return all(name in ENCODINGS for name, _, _ in args if name is not None)


def _named(step: str, args, allowed, span: Span) -> list[tuple[str, object]]:
    out = []
    for i, (name, value, _tok) in enumerate(args):
        if name is None:
            if i >= len(allowed) or not allowed:
                raise SpecError(messages.unknown_argument(step, f"#{i + 1}", allowed), span)
            name = allowed[i]
        out.append((name, value))
    return out


def _partition(name: str, args, span: Span):
    """Split a transform's arguments from encodings (``histogram(bins=9, log=true)``)."""
    allowed = TRANSFORMS[name]
    named = _named(name, args, allowed, span)
    t_args = [(k, v) for k, v in named if k in allowed or k not in ENCODINGS]
    enc = [(k, v) for k, v in named if k in ENCODINGS and k not in allowed]
    return _check_args(name, t_args, allowed, span), _check_args(name, enc, ENCODINGS, span)


def _check_args(step: str, args, allowed, span: Span) -> tuple:
    seen = {}
    for k, v in args:
        if k not in allowed:
            close = difflib.get_close_matches(k, allowed, n=1)
            raise SpecError(
                messages.unknown_argument(step, k, allowed),
                span,
                messages.did_you_mean(close[0]) if close else None,
            )
        want = _ARG_TYPES[k]
        if not want[0](v):
            raise SpecError(messages.bad_argument(step, k, v, want[1]), span)
        seen[k] = v
    return tuple(seen.items())


def _is_int(v, lo=None, hi=None) -> bool:
    ok = isinstance(v, int) and not isinstance(v, bool)
    return ok and (lo is None or v >= lo) and (hi is None or v <= hi)


def _is_range(v) -> bool:
    return (
        isinstance(v, tuple)
        and len(v) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        and v[0] < v[1]
    )


_ARG_TYPES = {
    "dim": (lambda v: _is_int(v), "an integer"),
    "bins": (lambda v: _is_int(v, 1, MAX_BINS), f"an integer from 1 to {MAX_BINS}"),
    "range": (_is_range, "[low, high] with low < high"),
    "max": (lambda v: _is_int(v, 1), "a positive integer"),
    "n": (lambda v: _is_int(v, 1), "a positive integer"),
    "seed": (lambda v: _is_int(v), "an integer"),
    "x": (lambda v: isinstance(v, str), "a column name"),
    "y": (lambda v: isinstance(v, str), "a column name"),
    "color": (lambda v: isinstance(v, str), "a column name"),
    "facet": (lambda v: isinstance(v, str), "a column name"),
    "scheme": (lambda v: isinstance(v, str), "a Vega colour scheme name"),
    "log": (lambda v: isinstance(v, bool), "true or false"),
    "cols": (lambda v: _is_int(v, 1, 256), "an integer from 1 to 256"),
    "direction": (lambda v: v in ("LR", "TB"), "LR or TB"),
    "depth": (lambda v: _is_int(v, 1, 64), "an integer from 1 to 64"),
    "fold": (lambda v: isinstance(v, bool), "true or false"),
    "k": (lambda v: _is_int(v, 1, 3), "1, 2 or 3"),
}


def query_span(view_span: Span | None, quoted: bool, text: str | None = None) -> Span:
    """Where a YAML scalar's text starts (after its opening quote); without a
    file, the query's own first line stands in for the source line."""
    if view_span is None:
        return Span("<query>", 1, 1, text.split("\n", 1)[0] if text else None)
    return Span(view_span.file, view_span.line, view_span.col + (1 if quoted else 0), view_span.text)


__all__ = ["ENCODINGS", "MARKS", "TRANSFORMS", "Token", "parse"]
