"""Stage 3: compile every view's query into one capture Plan.

    Query AST ──resolve selectors──▶ ViewPlan (one Capture per layer)
              ──RULES (rewrites)──▶ ViewPlan with reductions pushed into hooks
              ──merge──▶ Plan: passes, hooked modules, deduplicated captures

A view whose query does not compile keeps its error; the others still run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import messages
from ..errors import NnspecError, SpecError
from ..query import parse, query_span
from ..query_ast import PARAM_KINDS, Index, Query, Step
from ..reduce import SCALAR_OPS
from ..selectors import resolve_attention, resolve_modules, resolve_params
from ..spec import MAX_MARKS_LIMIT, Spec, ViewSpec

CAPTURE_KINDS = (
    "param", "grad", "activation", "input", "output_grad", "input_grad", "trace", "attention",
    "update",  # a parameter's change over one optimizer step (views over steps)
)  # fmt: skip
BACKWARD_KINDS = ("grad", "output_grad", "input_grad")
_KIND_OF_SOURCE = {
    "weights": "param",
    "biases": "param",
    "params": "param",
    "grads": "grad",
    "activations": "activation",
    "inputs": "input",
    "output_grads": "output_grad",
    "input_grads": "input_grad",
    "attention": "attention",
}


@dataclass(frozen=True, slots=True)
class Reduce:
    """A reduction pushed into the capture: ``stats``, ``histogram`` or a scalar op."""

    op: str
    abs: bool = False
    bins: int | None = None
    range: tuple | None = None

    def __post_init__(self):
        ops = ("stats", "histogram", "update_ratio") + SCALAR_OPS
        if self.op not in ops:
            raise ValueError(f"reduction {self.op!r}: expected one of {', '.join(ops)}")

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

    def __post_init__(self):
        if self.kind not in CAPTURE_KINDS:
            raise ValueError(f"capture kind {self.kind!r}: expected one of {', '.join(CAPTURE_KINDS)}")

    @property
    def key(self) -> tuple:
        return (
            self.kind,
            self.target,
            str(self.index) if self.index else "",
            str(self.reduce or ""),
        )


@dataclass(frozen=True, slots=True)
class ViewPlan:
    view: ViewSpec
    query: Query | None
    layers: tuple[str, ...] = ()
    captures: tuple[Capture, ...] = ()
    transforms: tuple[Step, ...] = ()
    mark: Step | None = None
    error: NnspecError | None = None
    colour: ViewPlan | None = None  # graph(color="activations of * | std"): the query that colours nodes


@dataclass(frozen=True, slots=True)
class Plan:
    spec: Spec
    views: tuple[ViewPlan, ...]
    captures: tuple[Capture, ...]  # for the one forward/backward pass of a render
    recorded: tuple[Capture, ...] = ()  # for views over steps: what a run records at each recorded step
    checks: tuple[ViewPlan, ...] = ()  # the spec's expect: entries

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
            if c.kind in ("activation", "input", "output_grad", "attention"):
                seen[c.target] = None
            elif c.kind == "trace":
                seen["* (trace)"] = None
        return tuple(seen)

    def explain(self, shapes: dict | None = None) -> str:
        from .explain import explain

        return explain(self, shapes)


@dataclass(frozen=True, slots=True)
class Available:
    """What the passes can use: an input batch, and a usable loss (or why not)."""

    has_input: bool = True
    loss_problem: object = None  # None, or Span -> SpecError
    runs: bool = False  # a run to read: the spec trains, or --run names one (views over steps need it)


def compile_view(view: ViewSpec, model, rules, available: Available = Available()) -> ViewPlan:
    """One view's query, resolved against ``model`` and rewritten by ``rules``."""
    try:
        if view.max_marks > MAX_MARKS_LIMIT:
            raise SpecError(messages.max_marks_over(view.max_marks, MAX_MARKS_LIMIT), view.span)
        query = parse(view.query, query_span(view.query_span, view.query_quoted, view.query))
        if query.compare is not None and not view.check:
            raise SpecError(messages.comparison_outside_expect(), query.span, messages.comparison_outside_expect_hint())
        if view.check and query.compare is None:
            raise SpecError(messages.check_needs_comparison(), query.span)
        if query.over_steps and not available.runs:
            raise SpecError(messages.needs_train(), query.source.span, messages.needs_train_hint())
        vp = _resolve(view, query, model)
        kinds = {c.kind for c in vp.captures} if not query.over_steps else set()  # a run has them
        if kinds - {"param"} and not available.has_input:
            raise SpecError(messages.no_input(), query.source.span, messages.no_input_hint())
        if kinds & set(BACKWARD_KINDS) and available.loss_problem is not None:
            raise available.loss_problem(query.source.span)
        for rule in rules:
            vp = rule(vp)
        if query.over_steps:
            _check_recordable(vp)
        return vp
    except NnspecError as e:
        return ViewPlan(view, None, error=e)


def _check_recordable(vp: ViewPlan) -> None:
    """A run keeps a few numbers per layer and step, never whole tensors."""
    if vp.query.source.kind == "loss":
        return
    if vp.transforms or any(c.reduce is None for c in vp.captures):
        step = vp.transforms[0] if vp.transforms else None
        where = step.span if step is not None and step.span else vp.query.source.span
        raise SpecError(messages.over_steps_must_reduce(step.name if step else None), where)


def _resolve(view: ViewSpec, query: Query, model) -> ViewPlan:
    src = query.source
    if src.kind == "graph" and _colour_query(query):
        # graph(color="grads of *.weight | norm"): the nodes take their colour from another query
        text = _colour_query(query)
        sub = compile_view(replace(view, query=text, query_span=None), model, _rules())
        if sub.error is not None:
            raise sub.error
        captures = (Capture("trace", ""),) + sub.captures
        return ViewPlan(view, query, ("model",), captures, query.transforms, query.mark, colour=sub)
    if src.kind in ("graph", "summary") or (src.kind == "function" and "*" in src.arg("names")):
        # one eager trace of the forward pass serves graph, summary and `function *`
        return ViewPlan(view, query, ("model",), (Capture("trace", ""),), query.transforms, query.mark)
    if src.kind in ("function", "loss"):  # computed from the source's own arguments, or the training's record
        names = tuple(src.arg("names")) if src.kind == "function" else ("loss",)
        return ViewPlan(view, query, names, (), query.transforms, query.mark)
    kind = _KIND_OF_SOURCE[src.kind]
    if query.transforms and query.transforms[0].name == "update_ratio":
        return _update_ratio(view, query, model)
    if src.kind == "attention":
        layers = tuple(resolve_attention(src.selector, model))
        captures = tuple(Capture("attention", path, query.index) for path in layers)
    elif src.kind == "input_grads":
        layers = ("input",)
        captures = (Capture("input_grad", "", query.index),)
    elif src.kind in PARAM_KINDS:
        layers = tuple(resolve_params(src.kind, src.selector, model))
        captures = tuple(Capture(kind, name, query.index) for name in layers)
    else:
        layers = tuple(resolve_modules(src.selector, model))
        captures = tuple(Capture(kind, path, query.index) for path in layers)
    return ViewPlan(view, query, layers, captures, query.transforms, query.mark)


def _update_ratio(view: ViewSpec, query: Query, model) -> ViewPlan:
    """``weights of * over steps | update_ratio``: ‖Δw‖/‖w‖ of each recorded optimizer step."""
    first = query.transforms[0]
    if query.source.kind not in ("weights", "biases", "params") or not query.over_steps:
        raise SpecError(messages.update_ratio_needs_steps(), first.span, messages.update_ratio_needs_steps_hint())
    layers = tuple(resolve_params(query.source.kind, query.source.selector, model))
    captures = tuple(Capture("update", name, query.index, Reduce("update_ratio")) for name in layers)
    return ViewPlan(view, query, layers, captures, query.transforms[1:], query.mark)


def _colour_query(query: Query) -> str | None:
    opts = dict(query.source.args) | (
        dict(query.mark.args) if query.mark is not None and query.mark.name == "graph" else {}
    )
    color = opts.get("color")
    return color if isinstance(color, str) and " of " in color else None


def _rules():
    from ..rules import RULES

    return RULES


def expand_repeats(spec: Spec, model) -> Spec:
    """``repeat: {layer: "type(Conv2d)"}``: one view per module the selector matches."""
    from ..errors import Span
    from ..template import expand_selector_repeat

    if not any(v.repeat for v in spec.views):
        return spec
    views = []
    for i, v in enumerate(spec.views):
        if not v.repeat:
            views.append(v)
            continue
        var, text, span = v.repeat
        where = span or Span("<repeat>", 1, 1, text)
        selector = parse(f"activations of {text}", Span(where.file, where.line, where.col - 15, where.text)).source
        paths = resolve_modules(selector.selector, model)
        for path, (q, t, d) in zip(paths, expand_selector_repeat(v.query, v.title, v.description, var, paths)):
            qspan = replace(v.query_span, col=1, text=q) if v.query_span is not None else None
            vid = f"{v.id}[{path}]" if v.id else None
            views.append(
                replace(v, query=q, title=t, description=d, repeat=None, group=f"{i}:{var}", query_span=qspan, id=vid)
            )
    return replace(spec, views=tuple(views))


def compile_plan(spec: Spec, model, rules=None, available: Available = Available()) -> Plan:
    """All views into one Plan with deduplicated captures."""
    from ..rules import RULES

    rules = RULES if rules is None else rules
    views = tuple(compile_view(v, model, rules, available) for v in spec.views)
    checks = tuple(compile_view(v, model, rules, available) for v in spec.expect)
    merged: dict[tuple, Capture] = {}
    recorded: dict[tuple, Capture] = {}
    for vp in views + checks:
        into = recorded if vp.query is not None and vp.query.over_steps else merged
        for c in vp.captures:
            into.setdefault(c.key, c)
    return Plan(spec, views, tuple(merged.values()), tuple(recorded.values()), checks)


def with_captures(vp: ViewPlan, captures, transforms) -> ViewPlan:
    return replace(vp, captures=tuple(captures), transforms=tuple(transforms))
