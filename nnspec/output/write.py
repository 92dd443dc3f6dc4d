"""Stage 6: a Dashboard ──▶ files under ``out``: ``<spec>.html`` and, per view,
``<spec>.<view-slug>.vl.json`` / ``.png`` / ``.svg`` / ``.pdf`` (the spec's
name first, so that two specs rendered into one folder never overwrite each
other's files: a slug has no dot). Every write is atomic (a temp file, then a rename)."""

from __future__ import annotations

import os

from nnspec.errors import InternalError, NnspecError, format_error
from nnspec.execute import messages as execute_messages
from nnspec.output import messages
from nnspec.output.convert import convert
from nnspec.output.dashboard import Dashboard
from nnspec.output.files import write_atomic

FORMATS = ("html", "json", "png", "svg", "pdf")


def write_outputs(dash: Dashboard, out: str, formats) -> list[str]:
    try:
        return _write_outputs(dash, out, formats)
    except OSError as e:
        raise NnspecError(messages.cannot_write(e.filename or out, e.strerror or str(e))) from None


def _write_outputs(dash: Dashboard, out: str, formats) -> list[str]:
    written = []
    name = dash.spec.name
    for v in dash.views:
        if v.chart is None:
            continue
        spec = v.vega_lite()
        if "json" in formats:
            written.append(write_atomic(os.path.join(out, f"{name}.{v.slug}.vl.json"), v.to_json()))
        for fmt in ("png", "svg", "pdf"):
            if fmt not in formats:
                continue
            try:
                image = convert(spec, fmt)
            except NnspecError as e:  # too large an image: this file is not written, the view still shows
                v.notes.append(e.message)
                continue
            except ValueError as e:  # vl-convert could not draw our chart: our bug, this view fails alone
                v.error = format_error(InternalError(execute_messages.internal_view_error(str(e).splitlines()[0])))
                v.chart = v.data = None
                break
            written.append(write_atomic(os.path.join(out, f"{name}.{v.slug}.{fmt}"), image))
    if "html" in formats:  # last, so that it shows a view that failed to export as failed
        written.insert(0, write_atomic(os.path.join(out, f"{dash.spec.name}.html"), dash.html()))
    return written
