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
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

import regex  # its match functions take a timeout (re has none)

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
        return regex_matches(atom, [m.path for m in mods if m.leaf])
    if _wild(atom.pattern):
        return [m.path for m in mods if m.leaf and fnmatch.fnmatchcase(m.path, atom.pattern)]
    return [m.path for m in mods if m.path == atom.pattern]


def _all_param_names(be: Backend) -> list[str]:
    """Every name of every parameter: a tied tensor answers to each of its names."""
    return [n for p in be.params() for n in p.names]


def _match_atom_params(atom: Atom, be: Backend) -> list[str]:
    names = _all_param_names(be)
    if isinstance(atom, RegexSelector):
        direct = set(regex_matches(atom, names))
    elif isinstance(atom, Glob):
        direct = {n for n in names if fnmatch.fnmatchcase(n, atom.pattern)}
    else:
        direct = set()
    prefixes = tuple(path + "." for path in _match_atom_modules(atom, be))
    return [n for n in names if n in direct or (prefixes and n.startswith(prefixes))]


REGEX_SECONDS = 1.0  # time budget of one /regex/ selector over all the names it is matched against


def _compile(atom: RegexSelector) -> Any:
    try:
        return regex.compile(atom.pattern)
    except (regex.error, ValueError, OverflowError, RecursionError) as e:
        raise SpecError(messages.bad_regex(atom.pattern, str(e)), atom.span) from None


def regex_matches(atom: RegexSelector, names: Iterable[str], budget: float = REGEX_SECONDS) -> list[str]:
    """The names ``atom`` matches in full, within ``budget`` seconds in all: a pattern
    that backtracks without end (``/blocks.(a+)+$/`` on a long name) is a located
    error, never a hang (the ``regex`` engine checks its timeout while it backtracks)."""
    rx = _compile(atom)
    deadline = time.monotonic() + budget
    out = []
    for name in names:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            if rx.fullmatch(name, timeout=left):
                out.append(name)
        except TimeoutError:
            raise SpecError(
                messages.regex_timeout(atom.pattern, budget), atom.span, messages.regex_timeout_hint()
            ) from None
    return out


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

    names = set(_resolve(selector, be, _match_atom_params, universe, no_match))
    role = {"weights": "weight", "biases": "bias"}.get(kind)  # Keras kernels and ONNX initializers too
    paths = {m.path for m in modules(be)}
    picked: list[str] = []
    notes: list[str] = []
    for p in be.params():
        mine = [n for n in p.names if n in names]
        if not mine or (role is not None and p.role != role):
            continue
        picked.append(p.path)
        notes.extend(getattr(be, "param_notes", lambda _name: ())(p.path))  # e.g. a BatchNorm folded in
        owners = [_owner(n) for n in p.names]
        if len({o for o in owners if o in paths}) > 1:  # held by several modules: tied
            others = [_owner(n) for n in p.names if n not in mine and _owner(n) in paths]
            notes.append(messages.shared_param(mine[0], p.path, others or [o for o in owners[1:] if o in paths]))
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
            return regex_matches(atom, universe)
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
