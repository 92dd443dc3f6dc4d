"""``repeat: {layer: "type(Conv2d)"}``: one copy of a view per module a selector matches.

Templating (``nnspec.spec.template``) expands repeats over lists; a repeat over
a selector needs the model, so it is expanded here, once the model exists.
"""

from __future__ import annotations

from dataclasses import replace

from nnspec.compiler.selectors import ModelOrBackend, resolve_modules
from nnspec.errors import Span
from nnspec.query.parser import parse
from nnspec.spec.load import Spec, ViewSpec
from nnspec.spec.template import expand_selector_repeat


def expand_repeats(spec: Spec, model: ModelOrBackend) -> Spec:
    """``repeat: {layer: "type(Conv2d)"}``: one view per module the selector matches."""
    if not any(v.repeat for v in spec.views):
        return spec
    views: list[ViewSpec] = []
    for i, v in enumerate(spec.views):
        if not v.repeat:
            views.append(v)
            continue
        var, text, span = v.repeat
        where = span or Span("<repeat>", 1, 1, text)
        source = parse(f"activations of {text}", Span(where.file, where.line, where.col - 15, where.text)).source
        assert source.selector is not None  # "activations of …" always has one
        paths = resolve_modules(source.selector, model)
        for path, (q, t, d) in zip(paths, expand_selector_repeat(v.query, v.title, v.description, var, paths)):
            qspan = replace(v.query_span, col=1, text=q) if v.query_span is not None else None
            vid = f"{v.id}[{path}]" if v.id else None
            views.append(
                replace(v, query=q, title=t, description=d, repeat=None, group=f"{i}:{var}", query_span=qspan, id=vid)
            )
    return replace(spec, views=tuple(views))
