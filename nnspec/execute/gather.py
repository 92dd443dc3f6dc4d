"""Captured values of one view ──▶ ``Data``: tensors by layer, a reduced table,
a structure (graph, summary, function curves) or a series over steps."""

from __future__ import annotations

from nnspec.backends import backend_for
from nnspec.backends.pytorch.trace import Trace
from nnspec.compiler import messages as compiler_messages
from nnspec.compiler.plan import ViewPlan
from nnspec.errors import InternalError, NnspecError, SpecError
from nnspec.execute import explore, functions, messages, structure
from nnspec.execute.data import Context, Data, histogram_data, scalar_table, stats_table
from nnspec.execute.series import over_steps
from nnspec.execute.transforms import run_transforms


def gather(vp: ViewPlan, captured, context: Context | None = None) -> Data:
    """The captures of one view as Data; capture problems become notes or errors."""
    data = _gather(vp, captured, context or Context())
    data.source = vp.query.source.kind
    data.context = context or Context()
    return data


def _gather(vp: ViewPlan, captured, context: Context) -> Data:
    src = vp.query.source
    if vp.query.over_steps:
        return over_steps(vp, context)
    if src.kind in ("graph", "summary", "function"):
        return _structure(vp, captured, context)
    notes: list[str] = list(vp.notes)  # from compile time: a parameter shared with another module
    values = {}
    layouts: dict = {}
    axes: dict[str, tuple[str, ...]] | None = None  # parameter name -> layout, read once per view
    failed: NnspecError | None = None  # a pass or loss that failed: its own error, located where it arose
    for layer, c in zip(vp.layers, vp.captures):
        if c.key in captured.errors:
            problem = captured.errors[c.key]
            if isinstance(problem, NnspecError):
                failed = failed or problem
                notes.append(problem.message)
                continue
            if c.index is not None and "index" in problem:
                raise SpecError(problem, c.index.span)
            notes.append(problem)
            continue
        notes.extend(captured.notes.get(c.key, ()))
        values[layer] = captured.values[c.key]
        if c.kind in ("param", "grad") and c.index is None and c.reduce is None and context.model is not None:
            axes = _layouts(context.model) if axes is None else axes
            layout = axes.get(c.target, ())
            if layout[-2:] == ("in", "out") and len(layout) > 2:
                # a channels-last conv kernel (Keras: h, w, in, out) drawn as filters, as torch
                # keeps them: (out, in, h, w), so images and channels tile one filter per pair
                t = values[layer]
                values[layer] = t.permute(t.dim() - 1, t.dim() - 2, *range(t.dim() - 2))
                notes.append(messages.note_kernel_order(layer, tuple(t.shape), tuple(values[layer].shape)))
                layout = ("out", "in", *layout[:-2])
            if layout:
                layouts[layer] = layout
    if not values:
        if failed is not None:
            raise _located(failed, vp.query.source.span)
        raise SpecError(
            notes[0] if notes else compiler_messages.no_match(str(vp.query.source)),
            vp.query.source.span,
        )
    reduction = vp.captures[0].reduce
    if reduction is None:
        return Data("tensors", tensors=values, notes=notes, layouts=layouts)
    if reduction.op == "stats":
        return Data("stats", table=stats_table(values), notes=notes)
    if reduction.op == "histogram":
        return histogram_data(values, notes)
    return Data("scalar", table=scalar_table(values), notes=notes, label=f"{vp.query.source.kind} | {reduction}")


def _given(trace, kind: str, context: Context) -> Trace:
    """The trace a graph or summary is drawn from (compile checked the backend gives one)."""
    if trace is None:
        raise InternalError(f"no structure for '{kind}' from {type(context.model).__name__}")
    return trace


def _structure(vp: ViewPlan, captured, context: Context) -> Data:
    src = vp.query.source
    if vp.captures and vp.captures[0].key in captured.errors:  # the pass that traces failed
        problem = captured.errors[vp.captures[0].key]
        if isinstance(problem, NnspecError):
            raise _located(problem, src.span)
        raise SpecError(str(problem), src.span)
    trace = captured.values[vp.captures[0].key] if vp.captures else None
    if trace is None and src.kind in ("graph", "summary"):  # a backend's own structure, no pass
        trace = backend_for(context.model).structure(src.kind)  # type: ignore[attr-defined]
    if src.kind == "graph":
        trace = _given(trace, src.kind, context)
        # graph(depth=2, direction=LR) and "graph | graph(direction=LR)" say the same
        options = dict(src.args) | (dict(vp.mark.args) if vp.mark is not None and vp.mark.name == "graph" else {})
        nodes, edges, notes = structure.graph_frames(trace, context.model, options, src.span)
        if vp.colour is not None:
            per_layer = run_transforms(gather(vp.colour, captured, context), vp.colour.transforms)
            if per_layer.kind != "scalar":
                raise SpecError(messages.colour_needs_values(vp.colour.view.query), src.span)
            nodes["stat"] = structure.node_values(nodes, per_layer.table)
            notes.append(messages.note_colour(vp.colour.view.query))
        explorer = explore.payload(trace, context.model, options)
        return Data("graph", table=nodes, edges=edges, notes=notes, options=options, explorer=explorer)
    if src.kind == "summary":
        return Data("summary", table=structure.summary_frame(_given(trace, src.kind, context), context.model))
    names = src.arg("names")
    fns = functions.used_functions(context.model, trace) if "*" in names else functions.named(names)
    if not fns:
        raise SpecError(messages.no_functions(), src.span)
    lo, hi = src.arg("over", (-5.0, 5.0))
    return Data("function", table=functions.curves(fns, lo, hi))


def _located(error: NnspecError, span) -> NnspecError:
    """A pass's error for this view: where it arose, else at the view's source."""
    return type(error)(error.message, error.span or span, error.hint)


def _layouts(model) -> dict[str, tuple[str, ...]]:
    """What each axis of every parameter is (a Keras kernel is (in, out)), by each of its names."""
    return {name: p.layout for p in backend_for(model).params() if p.layout for name in p.names}
