"""The pipeline driver (docs/design.md §1). Each numbered stage returns its result,
so tests and ``nnspec plan`` can look at any of them.

    spec.yaml ─1. load─▶ Spec
              ─2. model + input─▶ nn.Module, Batch
              ─3. compile─▶ Plan            (one plan for all views)
              ─4. capture─▶ Captured        (one forward, at most one backward)
              ─5. execute + marks─▶ ViewResult per view (tidy frame, chart)
              ─6. outputs─▶ dashboard.html, *.vl.json, *.png/svg/pdf
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
from dataclasses import dataclass

from nnspec.backends import backend_for
from nnspec.backends.base import module_at
from nnspec.capture import messages as capture_messages
from nnspec.capture import run as capture
from nnspec.compiler import messages as compiler_messages
from nnspec.compiler.compile import compile_plan
from nnspec.compiler.plan import Available, Capture, Plan
from nnspec.compiler.repeat import expand_repeats
from nnspec.errors import (
    InternalError,
    NnspecError,
    SpecError,
    format_error,
)
from nnspec.execute import checks
from nnspec.execute import messages as execute_messages
from nnspec.execute.data import Context
from nnspec.execute.gather import gather
from nnspec.execute.transforms import run_transforms
from nnspec.inputs.batch import Batch, as_batch, load_input, make_loss
from nnspec.inputs.model import build_model
from nnspec.marks import draw
from nnspec.output import messages as output_messages
from nnspec.output.dashboard import Dashboard, ViewResult
from nnspec.output.write import FORMATS, write_outputs
from nnspec.query.parser import query_span
from nnspec.runs import messages as runs_messages
from nnspec.runs.train import train
from nnspec.spec.load import Spec, load_spec


# 2. model and input ---------------------------------------------------------
def _batch(spec: Spec, inputs, target=None) -> Batch | None:
    if inputs is None:
        batch = load_input(spec.input, spec.base_dir) if spec.input else None
        if batch is not None and target is not None:
            batch.y = target
        return batch
    return as_batch(inputs, target)


def _loss_problem(spec: Spec, loss, batch):
    """Why gradient views cannot run (a function of the view's span), or None."""
    if loss is None:
        return lambda span: SpecError(
            capture_messages.needs_loss("gradients"), span, capture_messages.needs_loss_hint()
        )
    if loss.needs_target and batch is not None and batch.y is None:
        err = SpecError(
            capture_messages.loss_needs_target(loss.name), spec.loss_span, capture_messages.loss_needs_target_hint()
        )
        return lambda span: err
    return None


def prepare(
    spec_source,
    model=None,
    inputs=None,
    training: bool = True,
    runs=(),
    vars=None,
    values_files=(),
    views=True,
    target=None,
):
    """Stages 1-3: the Spec, the model (trained if the spec says ``train:`` and no
    ``runs`` are given), the batch, the loss, the Plan and the training's result."""
    spec = load_spec(spec_source, vars=vars, values_files=values_files)  # 1.
    if not views:  # nnspec check: the expect: entries alone
        spec = dataclasses.replace(spec, views=())
    batch = _batch(spec, inputs, target)  # 2.
    loss = make_loss(spec.loss, spec.base_dir, spec.loss_span, spec.model.output) if spec.loss else None
    trains = spec.train is not None and training and not runs
    if model is None:
        model = build_model(spec)
    elif trains:
        model = copy.deepcopy(model)  # train a copy: the user's model stays as it was
    available = Available(
        has_input=batch is not None,
        loss_problem=_loss_problem(spec, loss, batch),
        runs=spec.train is not None or bool(runs),
    )
    spec = expand_repeats(spec, model)  # repeat over the modules a selector matches
    plan = compile_plan(spec, model, available=available)  # 3.
    trained = None
    if trains and spec.train is not None:
        be = backend_for(model)
        if not be.capabilities.train:
            raise SpecError(
                compiler_messages.backend_cannot(be.name, "train", be.capabilities.reason("train")), spec.train.span
            )
        if batch is None:
            raise SpecError(compiler_messages.no_input(), spec.train.span, compiler_messages.no_input_hint())
        trained = train(model, batch, loss, spec, plan, _vars_hparams(spec_source, vars, values_files))
    return spec, model, batch, loss, plan, trained


def _vars_hparams(spec_source, vars, values_files) -> dict:
    """The spec's resolved variables as a run stores them (``vars.<name>``)."""
    from nnspec.runs.hparams import flatten, resolved_vars

    values = resolved_vars(spec_source, vars, values_files)
    return flatten("vars", values, {}) if values else {}


def plan(spec_source, model=None, inputs=None, vars=None, values_files=(), target=None) -> ExplainedPlan:
    """Stages 1-3, plus the shapes one no-grad probe pass sees (for EXPLAIN)."""
    spec, model, batch, _, p, _ = prepare(
        spec_source, model, inputs, training=False, vars=vars, values_files=values_files, target=target
    )
    return ExplainedPlan(p, capture.probe_shapes(model, batch.call if batch is not None else None))


@dataclass
class ExplainedPlan:
    """A Plan plus the shapes one probe pass saw, for ``explain()``."""

    plan: Plan
    shapes: dict

    def explain(self) -> str:
        return self.plan.explain(self.shapes)

    def __getattr__(self, name):
        return getattr(self.plan, name)


def summary(spec: Spec, model) -> str:
    """``nnspec layers --shapes``: the summary table as text, from one traced forward pass."""
    from nnspec.execute.structure import summary_frame, summary_text

    batch = _batch(spec, None)
    if batch is None:
        raise SpecError(compiler_messages.no_input(), None, compiler_messages.no_input_hint())
    plan = Plan(spec, (), (Capture("trace", ""),))
    captured = capture.run(plan, model, batch)
    return summary_text(summary_frame(captured.values[Capture("trace", "").key], model))


# 4-5. capture and views -----------------------------------------------------
def _capture(plan: Plan, model, batch, loss):
    """The plan's captures, and the failure of the passes if they failed: then
    only the parameters are captured, so views of parameters alone still render."""
    try:
        return capture.run(plan, model, batch, loss), None
    except NnspecError as e:
        params_only = Plan(plan.spec, plan.views, tuple(c for c in plan.captures if c.kind == "param"))
        return capture.run(params_only, model), e


def context(model, batch, runs=(), spec_name: str = "") -> Context:
    if batch is None:
        return Context(model, runs=list(runs), spec_name=spec_name)
    return Context(model, batch.features, batch.classes, batch.y, batch.tokens, list(runs), spec_name)


def open_runs(spec: Spec, runs, trained) -> list:
    """The runs views over steps read: those named (--run), or the one training just wrote.

    A directory holding TensorBoard event files is read as one TensorBoard run
    (``runs/tensorboard.py``); a TensorBoard logdir of runs is an error
    naming them, each to be given its own --run."""
    from nnspec.runs import tensorboard
    from nnspec.runs.store import Run

    dirs = list(runs) or ([trained.run] if trained is not None else [])
    names = [os.path.basename(os.path.normpath(d)) for d in dirs]
    if len(set(names)) < len(names):  # runs/a and other/a: tell them apart by their path
        names = [os.path.normpath(d) for d in dirs]
    opened: list = []
    try:
        for d, name in zip(dirs, names):
            if tensorboard.is_logdir(d):
                opened.append(tensorboard.TensorBoardRun(d, name))
                continue
            try:
                opened.append(Run(d, name))
            except SpecError:
                inner = tensorboard.logdir_runs(d)  # a TensorBoard --logdir: say which runs it holds
                if not inner:
                    raise
                hint = runs_messages.logdir_of_runs_hint(d, inner[0])
                raise SpecError(runs_messages.logdir_of_runs(d, inner), None, hint) from None
    except BaseException:
        for r in opened:
            r.close()
        raise
    return opened


def run_views(
    plan: Plan, captured, failure: NnspecError | None = None, progress=None, ctx: Context | None = None
) -> list[ViewResult]:
    results = []
    for i, vp in enumerate(plan.views):
        v = vp.view
        res = ViewResult(v.title, v.query, v.description, group=v.group, columns=v.columns)
        if progress:
            progress(i, len(plan.views), v.title)
        try:
            if vp.error is not None:
                raise vp.error
            if failure is not None and any(c.kind != "param" for c in vp.captures):
                raise failure
            data = run_transforms(gather(vp, captured, ctx), vp.transforms, vp.mark)
            res.data, res.chart, res.notes = draw(data, vp.mark, v)
            res.vega_lite()  # Altair validates the chart here, so a bad one fails this view only
        except NnspecError as e:
            if e.span is None:  # every error of a view points somewhere: at least at its query
                e.span = query_span(v.query_span, v.query_quoted, v.query)
            res.error = format_error(e)
        except Exception as e:  # our bug: this view fails, the others still render
            res.error = format_error(InternalError(execute_messages.internal_view_error(f"{type(e).__name__}: {e}")))
        if res.error is not None:
            res.data = res.chart = None
            res.notes = []
        results.append(res)
    return results


def _note_model_views(plan: Plan, views: list[ViewResult], names: list[str]) -> None:
    for vp, res in zip(plan.views, views):
        if res.error is None and not (vp.query is not None and vp.query.over_steps):
            res.notes = [*res.notes, runs_messages.note_draws_model(names)]


def _progress_bar(stream):
    if not stream.isatty():
        return None

    def show(i, n, title):
        done = int(20 * (i + 1) / n)
        stream.write(f"\r[{'#' * done}{'.' * (20 - done)}] {i + 1}/{n} {title[:50]:<50}")
        if i + 1 == n:
            stream.write("\n")
        stream.flush()

    return show


def render(
    spec,
    out=None,
    formats=("html",),
    model=None,
    inputs=None,
    progress=False,
    runs=(),
    vars=None,
    values_files=(),
    target=None,
) -> Dashboard:
    """Render every view of ``spec``; write ``formats`` under ``out`` if given.

    ``runs``: run directories whose records the views over steps draw, side by
    side; without them a spec with ``train:`` trains and draws its own run."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise SpecError(output_messages.unknown_format(bad[0], FORMATS))
    spec, model, batch, loss, plan, trained = prepare(
        spec, model, inputs, runs=runs, vars=vars, values_files=values_files, target=target
    )
    opened = open_runs(spec, runs, trained)
    captured, failure = _capture(plan, model, batch, loss)  # 4.
    bar = _progress_bar(sys.stderr) if progress else None
    try:
        ctx = context(model, batch, opened, spec.name)
        views = run_views(plan, captured, failure, bar, ctx)  # 5.
        results = checks.evaluate(plan.checks, captured, ctx, failure)
        drawn = [{"run": r.name, **{k: v for k, v in sorted(r.hparams.items()) if k != "run"}} for r in opened]
    finally:
        for r in opened:
            r.close()
    if runs:  # --run: a card that draws the model, not a run, says so
        _note_model_views(plan, views, [r.name for r in opened])
    footer = _footer(spec, model, batch, trained, [r.name for r in opened] if runs else [])
    dash = Dashboard(spec, plan, views, footer=footer, checks=results, runs=drawn)
    dash.unify_colors()  # one colour per layer type and per run in every chart and file
    from nnspec.output.files import slug

    taken: set[str] = set()
    for v in views:
        v.slug = slug(v.title, taken)
    if out is not None:
        dash.files = write_outputs(dash, out, formats)  # 6.
    return dash


def _footer(spec: Spec, model, batch, trained=None, runs=()) -> str:
    from nnspec._version import __version__

    be = backend_for(model)
    parts = [f"model {spec.model.factory or module_at(be, '').type} ({be.size():,} parameters)"]
    if batch is not None:
        parts.append(batch.describe() + "".join(f"; {note}" for note in batch.notes))
    if spec.loss:
        parts.append(f"loss {spec.loss}")
    if trained is not None:
        parts.append(trained.note(spec.train))
    if runs:
        parts.append(output_messages.note_runs(list(runs)))
    parts.append(f"nnspec {__version__}")
    return " · ".join(parts)


def check(spec_source, model=None, inputs=None, runs=(), vars=None, values_files=(), target=None) -> list:
    """``nnspec check``: the spec's expect: entries, evaluated; no view is compiled or drawn."""
    spec, model, batch, loss, plan, trained = prepare(
        spec_source, model, inputs, runs=runs, vars=vars, values_files=values_files, views=False, target=target
    )
    if not plan.checks:
        return []
    captured, failure = _capture(plan, model, batch, loss)
    opened = open_runs(spec, runs, trained)
    try:
        return checks.evaluate(plan.checks, captured, context(model, batch, opened, spec.name), failure)
    finally:
        for r in opened:
            r.close()
