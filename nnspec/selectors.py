"""Resolve selectors against a model: module paths and parameter paths.

Rules (written down in docs/queries.md):
- an exact path matches that module (container or leaf) or that parameter;
- a glob with ``*``/``?`` (fnmatch: ``*`` crosses dots) and a ``/regex/``
  (full match) match leaf modules, and parameter paths for parameter sources;
- ``type(Name)`` matches every module whose class (or a base class) is Name;
- a matched module gives a parameter source every parameter under it;
- ``except`` removes matches; results keep the model's order, without repeats.
"""

from __future__ import annotations

import difflib
import fnmatch
import re

from . import messages
from .errors import SpecError
from .query_ast import Glob, RegexSelector, Selector, TypeSelector


def _wild(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def modules(model) -> list[tuple[str, object]]:
    return [(p, m) for p, m in model.named_modules() if p]


def _is_leaf(module) -> bool:
    return next(iter(module.children()), None) is None


def _match_atom_modules(atom, model) -> list[str]:
    mods = modules(model)
    if isinstance(atom, TypeSelector):
        return [p for p, m in mods if atom.name in {c.__name__ for c in type(m).__mro__}]
    if isinstance(atom, RegexSelector):
        rx = _compile(atom)
        return [p for p, m in mods if _is_leaf(m) and rx.fullmatch(p)]
    if _wild(atom.pattern):
        return [p for p, m in mods if _is_leaf(m) and fnmatch.fnmatchcase(p, atom.pattern)]
    return [p for p, _ in mods if p == atom.pattern]


def _match_atom_params(atom, model) -> list[str]:
    names = [n for n, _ in model.named_parameters()]
    if isinstance(atom, RegexSelector):
        rx = _compile(atom)
        direct = [n for n in names if rx.fullmatch(n)]
    elif isinstance(atom, Glob):
        direct = [n for n in names if fnmatch.fnmatchcase(n, atom.pattern)]
    else:
        direct = []
    under = set()
    for path in _match_atom_modules(atom, model):
        under.update(n for n in names if n.startswith(path + "."))
    return [n for n in names if n in under or n in direct]


def _compile(atom: RegexSelector):
    try:
        return re.compile(atom.pattern)
    except re.error as e:
        raise SpecError(messages.bad_regex(atom.pattern, str(e)), atom.span) from None


def _resolve(selector: Selector, model, match, universe: list[str]) -> list[str]:
    chosen: set[str] = set()
    for atom in selector.include:
        found = match(atom, model)
        if not found:
            raise _no_match(atom, model, universe)
        chosen.update(found)
    for atom in selector.exclude:
        chosen.difference_update(match(atom, model))
    return [n for n in universe if n in chosen]


def resolve_modules(selector: Selector, model) -> list[str]:
    """Module paths a selector picks, in model order."""
    return _resolve(selector, model, _match_atom_modules, [p for p, _ in modules(model)])


def resolve_params(kind: str, selector: Selector, model) -> list[str]:
    """Parameter paths a selector picks for ``weights``/``biases``/``params``/``grads``."""
    universe = [n for n, _ in model.named_parameters()]
    names = _resolve(selector, model, _match_atom_params, universe)
    leaf = {"weights": "weight", "biases": "bias"}.get(kind)
    picked = [n for n in names if leaf is None or leaf in n.rsplit(".", 1)[-1]]
    if not picked:
        raise SpecError(messages.no_params(kind, str(selector)), selector.span)
    return picked


def attention_modules(model) -> list[str]:
    """Paths of the modules whose attention weights nnspec can capture."""
    import torch

    return [p for p, m in modules(model) if isinstance(m, torch.nn.MultiheadAttention)]


def resolve_attention(selector: Selector, model) -> list[str]:
    """Attention modules a selector picks; globs match them even though they are not leaves."""
    universe = attention_modules(model)
    if not universe:
        raise SpecError(messages.no_attention(), selector.span)

    def match(atom, model):
        if isinstance(atom, TypeSelector):
            return [p for p in _match_atom_modules(atom, model) if p in universe]
        if isinstance(atom, RegexSelector):
            return [p for p in universe if _compile(atom).fullmatch(p)]
        return [p for p in universe if fnmatch.fnmatchcase(p, atom.pattern)]

    try:
        return _resolve(selector, model, match, universe)
    except SpecError as e:
        raise SpecError(e.message, e.span, messages.attention_hint(universe)) from None


def _no_match(atom, model, universe) -> SpecError:
    if isinstance(atom, TypeSelector):
        types = sorted({type(m).__name__ for _, m in modules(model)})
        close = difflib.get_close_matches(atom.name, types, n=1)
        return SpecError(
            messages.unknown_type(atom.name),
            atom.span,
            messages.did_you_mean(close[0]) if close else None,
        )
    text = str(atom)
    paths = [p for p, _ in modules(model)] + [n for n, _ in model.named_parameters()]
    close = difflib.get_close_matches(text, paths, n=3, cutoff=0.5)
    return SpecError(messages.no_match(text), atom.span, messages.no_match_hint(close))
