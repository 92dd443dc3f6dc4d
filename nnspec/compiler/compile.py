"""Stage 3: compile every view's query into one capture Plan.

    Query AST ──resolve selectors──▶ ViewPlan (one Capture per layer)
              ──RULES (rewrites)──▶ ViewPlan with reductions pushed into hooks
              ──merge──▶ Plan: passes, hooked modules, deduplicated captures

A view whose query does not compile keeps its error; the others still run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from nnspec.backends import backend_for
from nnspec.backends.base import Backend
from nnspec.compiler import messages
from nnspec.compiler.plan import (
    ALL_AVAILABLE,
    BACKWARD_KINDS,
    Available,
    Capture,
    CompiledView,
    FailedView,
    Plan,
    Reduce,
    Rule,
    ViewPlan,
)
from nnspec.compiler.rules import RULES
from nnspec.compiler.selectors import (
    ModelOrBackend,
    resolve_attention,
    resolve_modules,
    resolve_params,
    resolve_params_noted,
)
from nnspec.errors import NnspecError, SpecError
from nnspec.numerics.reductions import REDUCTIONS
from nnspec.query.ast import Query, Selector, Source
from nnspec.query.catalog import PARAM_KINDS, SOURCES
from nnspec.query.parser import parse, query_span
from nnspec.spec.load import MAX_MARKS_LIMIT, Spec, ViewSpec


def compile_view(
    view: ViewSpec, model: ModelOrBackend, rules: Iterable[Rule], available: Available = ALL_AVAILABLE
) -> CompiledView:
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
        _check_capable(backend_for(model), kinds, query)  # a backend that cannot run a pass says so first
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
        return FailedView(view, e)


def _check_capable(be: Backend, kinds: set[str], query: Query) -> None:
    """A view needing a pass or a capture the backend cannot give fails here, alone, saying why."""
    caps = be.capabilities
    needs = (
        ("forward", bool(kinds - {"param"}), caps.forward),
        ("backward", bool(kinds & set(BACKWARD_KINDS)), caps.backward),
        ("trace", "trace" in kinds, caps.trace),
        ("attention", "attention" in kinds, caps.attention),
    )
    for what, needed, can in needs:
        if needed and not can:
            raise SpecError(messages.backend_cannot(be.name, what, caps.reason(what)), query.source.span)


def _static_structure(model: ModelOrBackend, kind: str) -> bool:
    """Whether the backend gives ``kind`` (graph, summary) without a traced pass."""
    be = backend_for(model)
    structure = getattr(be, "structure", None)
    return not be.capabilities.trace and structure is not None and structure(kind) is not None


def _check_recordable(vp: ViewPlan) -> None:
    """A run keeps a few numbers per layer and step, never whole tensors."""
    if vp.query.source.kind in ("loss", "scalars"):  # the run's own numbers, nothing reduced
        return
    if vp.transforms or any(c.reduce is None for c in vp.captures):
        step = vp.transforms[0] if vp.transforms else None
        where = step.span if step is not None and step.span else vp.query.source.span
        raise SpecError(messages.over_steps_must_reduce(step.name if step else None, tuple(REDUCTIONS)), where)


def _resolve(view: ViewSpec, query: Query, model: ModelOrBackend) -> ViewPlan:
    src = query.source
    text = _colour_query(query) if src.kind == "graph" else None
    if text:
        # graph(color="grads of *.weight | norm"): the nodes take their colour from another query
        sub = compile_view(replace(view, query=text, query_span=None), model, _rules())
        if sub.error is not None:
            raise sub.error
        captures = (Capture("trace", ""),) + sub.captures
        return ViewPlan(view, query, ("model",), captures, query.transforms, query.mark, colour=sub)
    if src.kind in ("graph", "summary") and _static_structure(model, src.kind):
        # a backend that cannot trace a pass but knows its structure (a TorchScript graph,
        # a weights file's names): no pass, the backend's structure() at gather time
        return ViewPlan(view, query, ("model",), (), query.transforms, query.mark)
    if src.kind in ("graph", "summary") or (src.kind == "function" and "*" in src.arg("names")):
        # one eager trace of the forward pass serves graph, summary and `function *`
        return ViewPlan(view, query, ("model",), (Capture("trace", ""),), query.transforms, query.mark)
    if src.kind in ("function", "loss", "scalars"):  # from the source's own arguments, or the run's record
        names = tuple(src.arg("names")) if src.kind == "function" else ("loss",)
        names = tuple(src.arg("tags")) if src.kind == "scalars" else names
        return ViewPlan(view, query, names, (), query.transforms, query.mark)
    kind = SOURCES[src.kind].capture
    assert kind is not None, src.kind  # the sources without a capture kind returned above
    if query.transforms and query.transforms[0].name == "update_ratio":
        return _update_ratio(view, query, model)
    if src.kind == "attention":
        layers = tuple(resolve_attention(_selector(src), model))
        captures = tuple(Capture("attention", path, query.index) for path in layers)
    elif src.kind == "input_grads":
        layers = ("input",)
        captures = (Capture("input_grad", "", query.index),)
    elif src.kind in PARAM_KINDS:
        picked, notes = resolve_params_noted(src.kind, _selector(src), model)  # notes: tied parameters
        layers = tuple(picked)
        captures = tuple(Capture(kind, name, query.index) for name in layers)
        return ViewPlan(view, query, layers, captures, query.transforms, query.mark, notes=tuple(notes))
    else:
        layers = tuple(resolve_modules(_selector(src), model))
        captures = tuple(Capture(kind, path, query.index, output=src.pick) for path in layers)
    return ViewPlan(view, query, layers, captures, query.transforms, query.mark)


def _selector(src: Source) -> Selector:
    """The selector of a source that has one (every source but input_grads, graph, summary, function)."""
    assert src.selector is not None, src.kind
    return src.selector


def _update_ratio(view: ViewSpec, query: Query, model: ModelOrBackend) -> ViewPlan:
    """``weights of * over steps | update_ratio``: ‖Δw‖/‖w‖ of each recorded optimizer step."""
    first = query.transforms[0]
    if query.source.kind not in ("weights", "biases", "params") or not query.over_steps:
        raise SpecError(messages.update_ratio_needs_steps(), first.span, messages.update_ratio_needs_steps_hint())
    layers = tuple(resolve_params(query.source.kind, _selector(query.source), model))
    captures = tuple(Capture("update", name, query.index, Reduce("update_ratio")) for name in layers)
    return ViewPlan(view, query, layers, captures, query.transforms[1:], query.mark)


def _colour_query(query: Query) -> str | None:
    opts = dict(query.source.args) | (
        dict(query.mark.args) if query.mark is not None and query.mark.name == "graph" else {}
    )
    color = opts.get("color")
    return color if isinstance(color, str) and " of " in color else None


def _rules() -> tuple[Rule, ...]:
    return RULES


def compile_plan(
    spec: Spec, model: ModelOrBackend, rules: Sequence[Rule] | None = None, available: Available = ALL_AVAILABLE
) -> Plan:
    """All views into one Plan with deduplicated captures."""
    rules = RULES if rules is None else rules
    model = backend_for(model) or model  # one backend: its module tree and parameters are read once for all views
    views = tuple(compile_view(v, model, rules, available) for v in spec.views)
    checks = tuple(compile_view(v, model, rules, available) for v in spec.expect)
    merged: dict[tuple[str, ...], Capture] = {}
    recorded: dict[tuple[str, ...], Capture] = {}
    for vp in views + checks:
        into = recorded if vp.query is not None and vp.query.over_steps else merged
        for c in vp.captures:
            into.setdefault(c.key, c)
    name = getattr(model, "name", "") if isinstance(getattr(model, "name", None), str) else ""
    return Plan(spec, views, tuple(merged.values()), tuple(recorded.values()), checks, name)
