"""Stage 6's types: a rendered view (``ViewResult``) and the ``Dashboard`` of a
spec, which writes itself as one offline HTML page or a notebook mimebundle."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from nnspec.compiler.plan import Plan
from nnspec.errors import InternalError
from nnspec.output.convert import vl_version
from nnspec.spec.load import Spec


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

    def __setattr__(self, name: str, value) -> None:
        if name == "chart" and value is not None:  # displayed alone, it draws offline (output/notebook.py)
            from nnspec.output.notebook import offline

            offline(value)
        object.__setattr__(self, name, value)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """Jupyter: the view's Vega-Lite (v5 mimetype) and its PNG, or its error as text."""
        from nnspec.output.notebook import view_bundle

        return view_bundle(self)

    def vega_lite(self) -> dict | None:
        if self.chart is None:
            return None
        if self._vl is None:  # checked against the schema once (output/validate.py)
            from nnspec.output.validate import vega_lite

            try:
                self._vl = vega_lite(self.chart)
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
    runs: list = field(default_factory=list)  # per drawn run, its hyperparameters: {"run": name, key: value, ...}

    @property
    def ok(self) -> bool:
        return all(v.error is None for v in self.views)

    @property
    def checks_ok(self) -> bool:
        return all(c.passed for c in self.checks)

    def _ipython_display_(self) -> None:
        """Jupyter: a header, then one output per view (its Vega-Lite and its PNG), which a saved
        notebook shows reopened untrusted and offline (output/notebook.py says why)."""
        from IPython.display import display

        from nnspec.output.notebook import outputs

        for bundle in outputs(self):
            display(bundle, raw=True)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """A frontend that takes one bundle: the views stacked in one PNG and a summary."""
        from nnspec.output.notebook import mimebundle

        return mimebundle(self)

    def unify_colors(self) -> None:
        """One colour per layer type and per run across every chart (runs in ``--run``
        order): each view's Vega-Lite, and so the page, its files and notebook outputs."""
        from nnspec.output import colors

        pal = colors.palettes([v.vega_lite() for v in self.views], [str(r.get("run")) for r in self.runs])
        for v in self.views:
            spec = v.vega_lite()
            if spec is not None:
                v._vl = colors.unify(spec, pal)

    def html(self) -> str:
        from nnspec.output.html import page

        specs = [_without_title(v.vega_lite()) for v in self.views]
        cards = [
            {
                "title": v.title,
                "query": v.query,
                "description": v.description,
                "notes": v.notes,
                "error": v.error,
                "spec": spec,
                "group": v.group,
                "columns": v.columns,
            }
            for v, spec in zip(self.views, specs)
        ]
        checks = [{"text": c.text, "passed": c.passed, "line": c.line()} for c in self.checks]
        title = self.spec.title or self.spec.name
        return page(title, self.spec.description, cards, vl_version(), self.footer, checks, runs=self.runs)


def _without_title(spec: dict | None) -> dict | None:
    """The card shows the title and notes already; the chart need not repeat them."""
    return None if spec is None else {k: v for k, v in spec.items() if k != "title"}
