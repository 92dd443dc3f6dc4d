"""Stage 6: a Dashboard ──▶ files under ``out``: ``<spec>.html`` and, per view,
``<spec>.<view-slug>.vl.json`` / ``.png`` / ``.svg`` / ``.pdf`` (the spec's
name first, so that two specs rendered into one folder never overwrite each
other's files: a slug has no dot). Every write is atomic (a temp file, then a rename).

PNG/SVG/PDF exports of three views or more are drawn by this process and a small
process pool beside it (``convert.ExportPool``); the files are the bytes the serial
path writes."""

from __future__ import annotations

import os

from nnspec.errors import InternalError, NnspecError, format_error
from nnspec.execute import messages as execute_messages
from nnspec.output import messages
from nnspec.output.convert import ExportPool, Outcome, convert, pool_size
from nnspec.output.dashboard import Dashboard
from nnspec.output.files import write_atomic

FORMATS = ("html", "json", "png", "svg", "pdf")
IMAGES = ("png", "svg", "pdf")


def write_outputs(dash: Dashboard, out: str, formats) -> list[str]:
    try:
        return _write_outputs(dash, out, formats)
    except OSError as e:
        raise NnspecError(messages.cannot_write(e.filename or out, e.strerror or str(e))) from None


def _write_outputs(dash: Dashboard, out: str, formats) -> list[str]:
    written = []
    name = dash.spec.name
    images = [fmt for fmt in IMAGES if fmt in formats]
    views = [v for v in dash.views if v.chart is not None]
    n_export = len(views) if images else 0
    # ``convert`` looked up here, so that a test's stand-in for it draws the serial path's views
    pool = ExportPool(pool_size(n_export), lambda spec, fmt: convert(spec, fmt))
    files: list[list[str]] = []
    try:
        for v in views:
            spec = v.vega_lite()
            files.append([])
            if "json" in formats:
                files[-1].append(write_atomic(os.path.join(out, f"{name}.{v.slug}.vl.json"), v.to_json()))
            if images:
                pool.submit(spec, images)
        outcomes = pool.results() if images else [[] for _ in views]
        for v, paths, outs in zip(views, files, outcomes):
            written += paths + _keep(v, outs, out, name)
    finally:  # the workers end while the files are written
        pool.close()
    if "html" in formats:  # last, so that it shows a view that failed to export as failed
        written.insert(0, write_atomic(os.path.join(out, f"{dash.spec.name}.html"), dash.html()))
    return written


def _keep(v, outcomes: list[Outcome], out: str, name: str) -> list[str]:
    """A view's exported files written; a refused image a note, a failed one the view's error."""
    written = []
    for kind, fmt, value in outcomes:
        if kind == "refused":  # too large an image: this file is not written, the view still shows
            v.notes.append(value)
        elif kind == "failed":  # vl-convert could not draw our chart: our bug, this view fails alone
            v.error = format_error(InternalError(execute_messages.internal_view_error(str(value))))
            v.chart = v.data = None
            break
        else:
            assert isinstance(value, (bytes, str))
            written.append(write_atomic(os.path.join(out, f"{name}.{v.slug}.{fmt}"), value))
    return written
