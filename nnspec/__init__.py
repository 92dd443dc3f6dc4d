"""nnspec: pictures of a neural network from a version-controlled spec file.

>>> import nnspec
>>> dash = nnspec.render("specs/quickstart.yaml", out="out/")  # doctest: +SKIP
>>> dash.views[0].data.head()                                    # doctest: +SKIP

Torch and Altair load on first use, so importing nnspec stays cheap.
"""

from __future__ import annotations

from nnspec._version import __version__ as __version__
from nnspec.errors import (
    InternalError,
    ModelError,
    NnspecError,
    Span,
    SpecError,
)

__all__ = [
    "Inputs",
    "InternalError",
    "ModelError",
    "NnspecError",
    "Span",
    "Recorder",
    "SpecError",
    "load_spec",
    "open_run",
    "plan",
    "render",
    "show",
]


def render(
    spec,
    out=None,
    formats=("html",),
    model=None,
    inputs=None,
    progress=False,
    runs=(),
    vars=None,
    target=None,
    root=None,
):
    """Render a spec (path, dict or Spec) into a Dashboard.

    ``model=`` and ``inputs=`` use an in-memory model and batch instead of
    the spec's ``model`` and ``input``; the model is left exactly as it was.
    ``inputs=`` is a tensor (the model's one positional argument), a dict
    (``model(**inputs)``: input_ids, attention_mask, pixel_values…) or
    ``nnspec.Inputs(args=…, kwargs=…, target=…)``; ``target=`` is the loss's target.
    ``runs=`` names recorded runs whose views over steps to draw side by side.
    ``vars=`` sets spec variables, as ``--set`` does. ``root=`` confines every file the
    spec reads or writes to that folder tree (guide §16).
    """
    from nnspec.lazy import load_heavy

    load_heavy()  # a Ctrl-C in the middle of the first import must not break later renders
    from nnspec.paths import confine
    from nnspec.pipeline import render as _render

    with confine(root):
        return _render(
            spec,
            out=out,
            formats=formats,
            model=model,
            inputs=inputs,
            progress=progress,
            runs=runs,
            vars=vars,
            target=target,
        )


def open_run(path, name: str = ""):
    """A recorded run to read (its directory or its ``run.sqlite``), checked as a render checks it.

    ``.frame(series=None)`` gives its numbers as one tidy pandas frame (guide §9).

    >>> run = nnspec.open_run("runs/exp1")  # doctest: +SKIP
    >>> run.frame("activation * | stats").head()  # doctest: +SKIP
    """
    from nnspec.runs.store import open_run as _open_run

    return _open_run(path, name)


def __getattr__(name):
    if name == "Recorder":  # loads torch: only when asked for
        from nnspec.lazy import load_heavy

        load_heavy(("nnspec.runs.recorder",))
        from nnspec.runs.recorder import Recorder

        return Recorder
    if name == "Inputs":
        from nnspec.inputs.batch import Inputs

        return Inputs
    raise AttributeError(f"module 'nnspec' has no attribute {name!r}")


def show(model, query: str, inputs=None, loss: str | None = None, title: str | None = None, target=None, **view):
    """One view of an in-memory model, in one line (a notebook displays it inline):

    >>> nnspec.show(model, "weights of fc1 | heatmap")                     # doctest: +SKIP
    >>> nnspec.show(model, "grads of *.weight | norm", inputs=x, target=y, loss="cross_entropy")  # doctest: +SKIP
    """
    spec = {
        "nnspec": 1,
        "title": title or query,
        "views": [{"query": query, **({"title": title} if title else {}), **view}],
    }
    if loss is not None:
        spec["loss"] = loss
    elif inputs is not None:
        spec["loss"] = "sum"
    return render(spec, model=model, inputs=inputs, target=target)


def plan(spec, model=None, inputs=None, target=None, root=None):
    """Compile a spec into its capture Plan; ``.explain()`` prints it."""
    from nnspec.lazy import load_heavy

    load_heavy()
    from nnspec.paths import confine
    from nnspec.pipeline import plan as _plan

    with confine(root):
        return _plan(spec, model=model, inputs=inputs, target=target)


def load_spec(source, file=None, vars=None, values_files=(), root=None):
    """Load, template and validate a spec; ``root`` confines every file it names to a folder tree."""
    from nnspec.spec.load import load_spec as _load

    return _load(source, file, vars=vars, values_files=values_files, root=root)
