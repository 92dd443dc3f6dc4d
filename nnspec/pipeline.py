"""The pipeline driver (DESIGN.md §1). Each numbered stage returns its result,
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
import json
import os
import sys
from dataclasses import dataclass, field

from . import capture, checks, messages
from .compiler import Available, Capture, Plan, compile_plan, expand_repeats
from .errors import InternalError, NnspecError, SpecError, format_error
from .execute import Context, gather, run_transforms
from .inputs import Batch, load_input, make_loss
from .marks import draw
from .modelload import build_model
from .spec import Spec, load_spec
from .train import train

FORMATS = ("html", "json", "png", "svg", "pdf")


@dataclass
class ViewResult:
    title: str
    query: str
    description: str = ""
    data: object = None  # pandas.DataFrame
    chart: object = None  # altair chart
    error: str | None = None
    notes: list = field(default_factory=list)
    slug: str = ""
    group: str | None = None  # a repeated view's copies share it
    columns: int | None = None
    _vl: dict | None = field(default=None, repr=False)

    def vega_lite(self) -> dict | None:
        if self.chart is None:
            return None
        if self._vl is None:  # to_dict validates the whole chart: do it once
            try:
                self._vl = self.chart.to_dict()
            except Exception as e:
                raise InternalError(f"Altair rejected the chart nnspec built for '{self.title}': {e}") from e
        return self._vl

    def to_json(self, indent: int | None = None) -> str:
        """Deterministic Vega-Lite JSON (sorted keys; compact unless ``indent``)."""
        seps = (",", ":") if indent is None else (",", ": ")
        return json.dumps(self.vega_lite(), indent=indent, sort_keys=True, allow_nan=False, separators=seps) + "\n"


@dataclass
class Dashboard:
    spec: Spec
    plan: Plan
    views: list[ViewResult]
    files: list[str] = field(default_factory=list)
    footer: str = ""
    checks: list = field(default_factory=list)  # checks.CheckResult of each expect: entry

    @property
    def ok(self) -> bool:
        return all(v.error is None for v in self.views)

    @property
    def checks_ok(self) -> bool:
        return all(c.passed for c in self.checks)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """Jupyter: the dashboard inline and offline, and a PNG for viewers that run no script."""
        from .output.notebook import mimebundle

        return mimebundle(self)

    def html(self) -> str:
        from .output.html import page

        cards = [
            {
                "title": v.title,
                "query": v.query,
                "description": v.description,
                "notes": v.notes,
                "error": v.error,
                "spec": _without_title(v.vega_lite()),
                "group": v.group,
                "columns": v.columns,
            }
            for v in self.views
        ]
        checks = [{"text": c.text, "passed": c.passed, "line": c.line()} for c in self.checks]
        return page(self.spec.title or self.spec.name, self.spec.description, cards, vl_version(), self.footer, checks)


def _without_title(spec: dict | None) -> dict | None:
    """The card shows the title and notes already; the chart need not repeat them."""
    return None if spec is None else {k: v for k, v in spec.items() if k != "title"}


def vl_version() -> str:
    import altair as alt
    import vl_convert as vlc

    want = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    have = vlc.get_vegalite_versions()
    return want if want in have else have[-1]


# 2. model and input ---------------------------------------------------------
def _batch(spec: Spec, inputs) -> Batch | None:
    if inputs is None:
        return load_input(spec.input, spec.base_dir) if spec.input else None
    if isinstance(inputs, Batch):
        return inputs
    if isinstance(inputs, (tuple, list)) and len(inputs) == 2:
        return Batch(inputs[0], inputs[1])
    return Batch(inputs)


def _loss_problem(spec: Spec, loss, batch):
    """Why gradient views cannot run (a function of the view's span), or None."""
    if loss is None:
        return lambda span: SpecError(messages.needs_loss("gradients"), span, messages.needs_loss_hint())
    if loss.needs_target and batch is not None and batch.y is None:
        err = SpecError(messages.loss_needs_target(loss.name), spec.loss_span, messages.loss_needs_target_hint())
        return lambda span: err
    return None


def prepare(
    spec_source, model=None, inputs=None, training: bool = True, runs=(), vars=None, values_files=(), views=True
):
    """Stages 1-3: the Spec, the model (trained if the spec says ``train:`` and no
    ``runs`` are given), the batch, the loss, the Plan and the training's result."""
    spec = load_spec(spec_source, vars=vars, values_files=values_files)  # 1.
    if not views:  # nnspec check: the expect: entries alone
        spec = dataclasses.replace(spec, views=())
    batch = _batch(spec, inputs)  # 2.
    loss = make_loss(spec.loss, spec.base_dir, spec.loss_span) if spec.loss else None
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
    if trains:
        if batch is None:
            raise SpecError(messages.no_input(), spec.train.span, messages.no_input_hint())
        trained = train(model, batch.x, batch.y, loss, spec, plan)
    return spec, model, batch, loss, plan, trained


def plan(spec_source, model=None, inputs=None, vars=None, values_files=()) -> ExplainedPlan:
    """Stages 1-3, plus the shapes one no-grad probe pass sees (for EXPLAIN)."""
    spec, model, batch, _, p, _ = prepare(
        spec_source, model, inputs, training=False, vars=vars, values_files=values_files
    )
    return ExplainedPlan(p, capture.probe_shapes(model, batch.x if batch is not None else None))


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
    from .structure import summary_frame, summary_text

    batch = _batch(spec, None)
    if batch is None:
        raise SpecError(messages.no_input(), None, messages.no_input_hint())
    plan = Plan(spec, (), (Capture("trace", ""),))
    captured = capture.run(plan, model, batch.x)
    return summary_text(summary_frame(captured.values[Capture("trace", "").key], model))


# 4-5. capture and views -----------------------------------------------------
def _capture(plan: Plan, model, batch, loss):
    """The plan's captures, and the failure of the passes if they failed: then
    only the parameters are captured, so views of parameters alone still render."""
    x, y = (batch.x, batch.y) if batch is not None else (None, None)
    try:
        return capture.run(plan, model, x, y, loss), None
    except NnspecError as e:
        params_only = Plan(plan.spec, plan.views, tuple(c for c in plan.captures if c.kind == "param"))
        return capture.run(params_only, model), e


def context(model, batch, runs=(), spec_name: str = "") -> Context:
    if batch is None:
        return Context(model, runs=list(runs), spec_name=spec_name)
    return Context(model, batch.features, batch.classes, batch.y, batch.tokens, list(runs), spec_name)


def open_runs(spec: Spec, runs, trained) -> list:
    """The runs views over steps read: those named (--run), or the one training just wrote."""
    from .runs import Run

    dirs = list(runs) or ([trained.run] if trained is not None else [])
    names = [os.path.basename(os.path.normpath(d)) for d in dirs]
    if len(set(names)) < len(names):  # runs/a and other/a: tell them apart by their path
        names = [os.path.normpath(d) for d in dirs]
    return [Run(d, name) for d, name in zip(dirs, names)]


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
            res.error = format_error(e)
        except Exception as e:  # our bug: this view fails, the others still render
            res.error = format_error(InternalError(messages.internal_view_error(f"{type(e).__name__}: {e}")))
        if res.error is not None:
            res.data = res.chart = None
            res.notes = []
        results.append(res)
    return results


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
    spec, out=None, formats=("html",), model=None, inputs=None, progress=False, runs=(), vars=None, values_files=()
) -> Dashboard:
    """Render every view of ``spec``; write ``formats`` under ``out`` if given.

    ``runs``: run directories whose records the views over steps draw, side by
    side; without them a spec with ``train:`` trains and draws its own run."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise SpecError(messages.unknown_format(bad[0], FORMATS))
    spec, model, batch, loss, plan, trained = prepare(
        spec, model, inputs, runs=runs, vars=vars, values_files=values_files
    )
    opened = open_runs(spec, runs, trained)
    captured, failure = _capture(plan, model, batch, loss)  # 4.
    bar = _progress_bar(sys.stderr) if progress else None
    try:
        ctx = context(model, batch, opened, spec.name)
        views = run_views(plan, captured, failure, bar, ctx)  # 5.
        results = checks.evaluate(plan.checks, captured, ctx, failure)
    finally:
        for r in opened:
            r.close()
    footer = _footer(spec, model, batch, trained, [r.name for r in opened] if runs else [])
    dash = Dashboard(spec, plan, views, footer=footer, checks=results)
    from .output.files import slug

    taken: set[str] = set()
    for v in views:
        v.slug = slug(v.title, taken)
    if out is not None:
        dash.files = write_outputs(dash, out, formats)  # 6.
    return dash


def _footer(spec: Spec, model, batch, trained=None, runs=()) -> str:
    from . import __version__

    n = sum(p.numel() for p in model.parameters())
    parts = [f"model {spec.model.factory or type(model).__name__} ({n:,} parameters)"]
    if batch is not None:
        parts.append(f"input {tuple(batch.x.shape)}" + "".join(f"; {note}" for note in batch.notes))
    if spec.loss:
        parts.append(f"loss {spec.loss}")
    if trained is not None:
        parts.append(trained.note(spec.train))
    if runs:
        parts.append(messages.note_runs(list(runs)))
    parts.append(f"nnspec {__version__}")
    return " · ".join(parts)


def check(spec_source, model=None, inputs=None, runs=(), vars=None, values_files=()) -> list:
    """``nnspec check``: the spec's expect: entries, evaluated; no view is compiled or drawn."""
    spec, model, batch, loss, plan, trained = prepare(
        spec_source, model, inputs, runs=runs, vars=vars, values_files=values_files, views=False
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


# 6. outputs -------------------------------------------------------------------
def write_outputs(dash: Dashboard, out: str, formats) -> list[str]:
    try:
        return _write_outputs(dash, out, formats)
    except OSError as e:
        raise NnspecError(messages.cannot_write(e.filename or out, e.strerror or str(e))) from None


def _write_outputs(dash: Dashboard, out: str, formats) -> list[str]:
    from .output.files import write_atomic

    written = []
    for v in dash.views:
        if v.chart is None:
            continue
        spec = v.vega_lite()
        if "json" in formats:
            written.append(write_atomic(os.path.join(out, f"{v.slug}.vl.json"), v.to_json()))
        for fmt in ("png", "svg", "pdf"):
            if fmt not in formats:
                continue
            try:
                image = _convert(spec, fmt)
            except ValueError as e:  # vl-convert could not draw our chart: our bug, this view fails alone
                v.error = format_error(InternalError(messages.internal_view_error(str(e).splitlines()[0])))
                v.chart = v.data = None
                break
            written.append(write_atomic(os.path.join(out, f"{v.slug}.{fmt}"), image))
    if "html" in formats:  # last, so that it shows a view that failed to export as failed
        written.insert(0, write_atomic(os.path.join(out, f"{dash.spec.name}.html"), dash.html()))
    return written


def _convert(spec: dict, fmt: str):
    import vl_convert as vlc

    if fmt == "png":
        return vlc.vegalite_to_png(spec, vl_version=vl_version(), scale=2)
    if fmt == "svg":
        return vlc.vegalite_to_svg(spec, vl_version=vl_version())
    return vlc.vegalite_to_pdf(spec, vl_version=vl_version())
