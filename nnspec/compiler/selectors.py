"""Resolve selectors against a model: module paths and parameter paths.

Rules (docs/guide.md §8, "Choices made where the design was silent"):
- an exact path matches that module (container or leaf) or that parameter;
- a glob with ``*``/``?`` (fnmatch: ``*`` crosses dots) and a ``/regex/``
  (full match) match leaf modules, and parameter paths for parameter sources;
- ``type(Name)`` matches every module whose class (or a base class) is Name;
- a matched module gives a parameter source every parameter under it;
- a shared (tied) parameter answers to each of its names and is picked once,
  under its first name, with a note naming who shares it;
- ``except`` removes matches; results keep the model's order, without repeats.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable
from typing import TypeAlias

from nnspec.backends import backend_for
from nnspec.backends.base import Backend, Module, walk
from nnspec.compiler import messages
from nnspec.errors import SpecError
from nnspec.query.ast import (
    Atom,
    Glob,
    RegexSelector,
    Selector,
    TypeSelector,
)
from nnspec.spec import messages as spec_messages

ModelOrBackend: TypeAlias = object  # a model some backend accepts, or its Backend (see backend_for)
Matcher: TypeAlias = Callable[[Atom, Backend], list[str]]  # one selector atom's matches


def _wild(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def modules(be: Backend) -> list[Module]:
    """Every module but the root, in the model's order."""
    return list(walk(be.modules()))


def _match_atom_modules(atom: Atom, be: Backend) -> list[str]:
    mods = modules(be)
    if isinstance(atom, TypeSelector):
        return [m.path for m in mods if atom.name in m.types]
    if isinstance(atom, RegexSelector):
        rx = _compile(atom)
        return [m.path for m in mods if m.leaf and rx.fullmatch(m.path)]
    if _wild(atom.pattern):
        return [m.path for m in mods if m.leaf and fnmatch.fnmatchcase(m.path, atom.pattern)]
    return [m.path for m in mods if m.path == atom.pattern]


def _all_param_names(be: Backend) -> list[str]:
    """Every name of every parameter: a tied tensor answers to each of its names."""
    return [n for p in be.params() for n in p.names]


def _match_atom_params(atom: Atom, be: Backend) -> list[str]:
    names = _all_param_names(be)
    if isinstance(atom, RegexSelector):
        rx = _compile(atom)
        direct = {n for n in names if rx.fullmatch(n)}
    elif isinstance(atom, Glob):
        direct = {n for n in names if fnmatch.fnmatchcase(n, atom.pattern)}
    else:
        direct = set()
    prefixes = tuple(path + "." for path in _match_atom_modules(atom, be))
    return [n for n in names if n in direct or (prefixes and n.startswith(prefixes))]


def _compile(atom: RegexSelector) -> re.Pattern[str]:
    try:
        return re.compile(atom.pattern)
    except re.error as e:
        raise SpecError(messages.bad_regex(atom.pattern, str(e)), atom.span) from None


def _resolve(
    selector: Selector,
    be: Backend,
    match: Matcher,
    universe: list[str],
    no_match: Callable[[Atom, Backend], SpecError] | None = None,
) -> list[str]:
    chosen: set[str] = set()
    for atom in selector.include:
        found = match(atom, be)
        if not found:
            raise (no_match or _no_match)(atom, be)
        chosen.update(found)
    for atom in selector.exclude:
        chosen.difference_update(match(atom, be))
    return [n for n in universe if n in chosen]


def resolve_modules(selector: Selector, model: ModelOrBackend) -> list[str]:
    """Module paths a selector picks, in model order (``model``: a model or its backend)."""
    be = backend_for(model)
    return _resolve(selector, be, _match_atom_modules, [m.path for m in modules(be)])


def resolve_params(kind: str, selector: Selector, model: ModelOrBackend) -> list[str]:
    """Parameter paths a selector picks for ``weights``/``biases``/``params``/``grads``."""
    return resolve_params_noted(kind, selector, model)[0]


def resolve_params_noted(kind: str, selector: Selector, model: ModelOrBackend) -> tuple[list[str], list[str]]:
    """The parameters a selector picks, and notes for the view: a tied tensor (GPT-2's
    ``lm_head.weight`` is ``transformer.wte.weight``) answers to every one of its names
    and is picked once, under its first name (what the capture reads), with a note
    naming who shares it."""
    be = backend_for(model)
    universe = _all_param_names(be)

    def no_match(atom: Atom, be: Backend) -> SpecError:
        held = _match_atom_modules(atom, be)
        if held:  # the module is there, it only holds no parameter
            return SpecError(messages.holds_no_params(str(atom), held), atom.span)
        return _no_match(atom, be)

    names = _resolve(selector, be, _match_atom_params, universe, no_match)
    leaf = {"weights": "weight", "biases": "bias"}.get(kind)
    asked = {n for n in names if leaf is None or leaf in n.rsplit(".", 1)[-1]}
    picked, notes = [], []
    for p in be.params():
        mine = [n for n in p.names if n in asked]
        if not mine:
            continue
        picked.append(p.path)
        if len(p.names) > 1:
            others = [_owner(n) for n in p.names if n not in mine]
            notes.append(messages.shared_param(mine[0], p.path, others or [_owner(n) for n in p.names[1:]]))
    if not picked:
        raise SpecError(messages.no_params(kind, str(selector)), selector.span)
    return picked, notes


def _owner(name: str) -> str:
    """The module that holds a parameter under ``name`` (the name itself for the root's own)."""
    return name.rpartition(".")[0] or name


def attention_modules(model: ModelOrBackend) -> list[str]:
    """Paths of the modules whose attention weights nnspec can capture."""
    return [m.path for m in modules(backend_for(model)) if m.attention]


def resolve_attention(selector: Selector, model: ModelOrBackend) -> list[str]:
    """Attention modules a selector picks; globs match them even though they are not leaves."""
    be = backend_for(model)
    universe = attention_modules(be)
    if not universe:
        raise SpecError(messages.no_attention([m.type for m in modules(be)]), selector.span)

    def match(atom: Atom, be: Backend) -> list[str]:
        if isinstance(atom, TypeSelector):
            return [p for p in _match_atom_modules(atom, be) if p in universe]
        if isinstance(atom, RegexSelector):
            return [p for p in universe if _compile(atom).fullmatch(p)]
        return [p for p in universe if fnmatch.fnmatchcase(p, atom.pattern)]

    try:
        return _resolve(selector, be, match, universe)
    except SpecError as e:
        raise SpecError(e.message, e.span, messages.attention_hint(universe)) from None


def _no_match(atom: Atom, be: Backend) -> SpecError:
    """Nothing matched ``atom``: the nearest names for a hint, never the one that failed."""
    if isinstance(atom, TypeSelector):
        types = sorted({m.type for m in modules(be)} - {atom.name})
        close = difflib.get_close_matches(atom.name, types, n=1)
        return SpecError(
            messages.unknown_type(atom.name),
            atom.span,
            spec_messages.did_you_mean(close[0]) if close else None,
        )
    text = str(atom)
    paths = [m.path for m in modules(be)] + _all_param_names(be)
    close = difflib.get_close_matches(text, [p for p in dict.fromkeys(paths) if p != text], n=3, cutoff=0.5)
    return SpecError(messages.no_match(text), atom.span, messages.no_match_hint(close))
