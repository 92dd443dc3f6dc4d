"""Templating a spec (DESIGN.md §2), on the parsed tree, never on the text.

file ─yamlpos─▶ Node tree (every node keeps its file:line:col)
     ─extends─▶ base trees deep-merged under it (maps merge, lists replace,
                views merge by id), cycles named
     ─vars────▶ spec `vars` < extended files' < -f files < --set / vars=
     ─${…}────▶ interpolated: `${name}`, `${name:-default}`, `$$` for `$`;
                a whole-value `${n}` keeps the value's type
     ─repeat──▶ a view with `repeat: {var: [a, b]}` becomes one view per value
                (`repeat: {var: "type(Conv2d)"}` waits for the model: ``expand_views``)
     ─x-*─────▶ dropped (YAML anchors can hold shared fragments there)
     ─▶ Located (data + spans by path) for the schema and the dataclasses
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeGuard

import yaml

from nnspec.errors import Span, SpecError
from nnspec.paths import check_inside
from nnspec.spec import messages
from nnspec.spec.yamlpos import Located, Path, load, quotable, read
from nnspec.spec.yamlpos import value as yaml_value


@dataclass
class Node:
    value: object  # dict[str, Node] | list[Node] | a scalar
    span: Span | None = None
    key_span: Span | None = None
    style: str | None = None  # the scalar's quote character, as YAML gave it
    derived: bool = False  # its text came from interpolation (columns count in the resolved text)

    def plain(self) -> object:
        if _is_map(self.value):
            return {k: v.plain() for k, v in self.value.items()}
        if _is_seq(self.value):
            return [v.plain() for v in self.value]
        return self.value


def _is_map(value: object) -> TypeGuard[dict[str, Node]]:
    """A mapping node's value: every dict in a Node tree maps str keys to Nodes (the builders below make it so)."""
    return isinstance(value, dict)


def _is_seq(value: object) -> TypeGuard[list[Node]]:
    """A sequence node's value: every list in a Node tree holds Nodes."""
    return isinstance(value, list)


@dataclass
class Options:
    """What the command line (or the API) adds: ``-f`` files and ``--set`` values."""

    files: tuple[str, ...] = ()  # paths of YAML files of var values, in order
    sets: dict[str, object] = field(default_factory=dict)  # name (dotted for nested) -> value


def resolve(located: Located, options: Options | None = None, base_dir: str | None = None) -> Located:
    """The fully resolved spec: extends merged, vars applied, views repeated, x-* dropped."""
    options = options or Options()
    base_dir = base_dir or (os.path.dirname(os.path.abspath(located.file)) if _is_file(located.file) else os.getcwd())
    root = to_node(located)
    if not _is_map(root.value):
        return located
    _loaded: list[str] = []
    entries, values = _merged(root, located.file, options, base_dir, _loaded)
    entries.pop("vars", None)
    out: dict[str, Node] = {}
    for key, node in entries.items():
        out[key] = _views(node, values) if key == "views" else interpolate(node, values)
    root = Node(out, root.span, root.key_span)
    result = to_located(root, located.file)
    result.sources = ([located.file] if _is_file(located.file) else []) + _loaded + list(options.files)
    return result


def variables(located: Located, options: Options | None = None, base_dir: str | None = None) -> dict[str, Any]:
    """The spec's variables as ``resolve`` applies them (spec < extended files < values
    files < ``--set``): what a run stores as its hyperparameters."""
    options = options or Options()
    base_dir = base_dir or (os.path.dirname(os.path.abspath(located.file)) if _is_file(located.file) else os.getcwd())
    root = to_node(located)
    if not _is_map(root.value):
        return {}
    return _merged(root, located.file, options, base_dir, [])[1]


def _merged(
    root: Node, file: str, options: Options, base_dir: str, loaded: list[str]
) -> tuple[dict[str, Node], dict[str, Any]]:
    """The top-level entries after ``extends`` and ``x-*``, and the variables' values."""
    shown = os.path.dirname(file) if _is_file(file) else ""
    root = _strip_extensions(_extends(root, base_dir, [_chain_name(file)], shown, loaded))
    entries = _entries(root)
    return entries, _vars(entries, options, base_dir)


# -- Node trees and Located ------------------------------------------------------
def to_node(located: Located) -> Node:
    def walk(value: object, path: Path) -> Node:
        span = located.values.get(path)
        key_span = located.keys.get(path)
        if isinstance(value, dict):
            return Node({k: walk(v, path + (k,)) for k, v in value.items()}, span, key_span)
        if isinstance(value, list):
            return Node([walk(v, path + (i,)) for i, v in enumerate(value)], span, key_span)
        return Node(value, span, key_span, located.styles.get(path))

    return walk(located.data, ())


def to_located(root: Node, file: str) -> Located:
    out = Located(data=None, file=file)

    def walk(node: Node, path: Path) -> object:
        if node.span is not None:
            out.values[path] = node.span
        if node.key_span is not None:
            out.keys[path] = node.key_span
        if _is_map(node.value):
            return {k: walk(v, path + (k,)) for k, v in node.value.items()}
        if _is_seq(node.value):
            return [walk(v, path + (i,)) for i, v in enumerate(node.value)]
        if node.derived and isinstance(node.value, str) and node.span is not None:
            out.values[path] = Span(node.span.file, node.span.line, 1, node.value.split("\n", 1)[0])
            out.styles[path] = None
        else:
            out.styles[path] = node.style
        return node.value

    out.data = walk(root, ())
    return out


def _is_file(name: str) -> bool:
    return bool(name) and not name.startswith("<")


def _chain_name(file: str) -> str:
    return os.path.abspath(file) if _is_file(file) else file


def _entries(node: Node) -> dict[str, Node]:
    """The entries of a node its caller knows to be a mapping."""
    assert _is_map(node.value), "expected a mapping node"
    return node.value


# -- extends -----------------------------------------------------------------------
def _extends(root: Node, base_dir: str, chain: list[str], shown: str = "", loaded: list[str] | None = None) -> Node:
    """``root``: a mapping node. ``shown``: the directory as the user named it, for file names in errors."""
    ext = _entries(root).pop("extends", None)
    if ext is None:
        return root
    names = ext.value if _is_seq(ext.value) else [ext]
    merged: Node | None = None
    for name_node in names:
        name = name_node.value
        if not isinstance(name, str):
            raise SpecError(messages.extends_not_path(name), name_node.span)
        path = check_inside(os.path.abspath(os.path.join(base_dir, name)), name_node.span, "extended spec")
        if path in chain:
            raise SpecError(messages.extends_cycle([*chain, path]), name_node.span)
        text = read(path, name_node.span, "extended spec")
        display = name if os.path.isabs(name) else os.path.normpath(os.path.join(shown, name))
        if loaded is not None:
            loaded.append(display)
        base = to_node(load(text, display, quote=quotable(path), empty_ok=True))
        if not _is_map(base.value) or "nnspec" not in base.value:  # at `extends:`: nothing of a file that is no spec
            raise SpecError(messages.extends_not_spec(name), name_node.span)
        base = _extends(base, os.path.dirname(path), [*chain, path], os.path.dirname(display), loaded)
        merged = base if merged is None else merge(merged, base)
    return root if merged is None else merge(merged, root)  # `extends: []` extends nothing


def merge(base: Node, over: Node, path: Path = ()) -> Node:
    """``over`` on top of ``base``: maps deep-merge, lists replace, views merge by id."""
    if _is_map(base.value) and _is_map(over.value):
        out = dict(base.value)
        for k, v in over.value.items():
            out[k] = merge(base.value[k], v, path + (k,)) if k in base.value else v
        return Node(out, over.span, over.key_span or base.key_span)
    if path == ("views",) and _is_seq(base.value) and _is_seq(over.value):
        return Node(_merge_views(base.value, over.value), over.span, over.key_span or base.key_span)
    return over


def _view_id(node: Node) -> str | None:
    """A view's id, if it has one that is text (the schema says what else it is)."""
    if _is_map(node.value) and "id" in node.value:
        value = node.value["id"].value
        return value if isinstance(value, str) else None
    return None


def _merge_views(base: list[Node], over: list[Node]) -> list[Node]:
    out = list(base)
    where = {_view_id(v): i for i, v in enumerate(out) if _view_id(v) is not None}
    for v in over:
        i = where.get(_view_id(v)) if _view_id(v) is not None else None
        if i is None:
            out.append(v)
        else:
            out[i] = merge(out[i], v, ("views", i))
    return out


def _strip_extensions(node: Node) -> Node:
    """``x-*`` keys anywhere are the user's (anchors, notes): not part of the spec."""
    if _is_map(node.value):
        kept = {k: _strip_extensions(v) for k, v in node.value.items() if not k.startswith("x-")}
        return Node(kept, node.span, node.key_span)
    if _is_seq(node.value):
        return Node([_strip_extensions(v) for v in node.value], node.span, node.key_span)
    return node


# -- vars ---------------------------------------------------------------------------
def _vars(entries: dict[str, Node], options: Options, base_dir: str) -> dict[str, object]:
    """Helm's precedence: the spec's (and extended files') vars < -f files < --set."""
    spec_vars = entries.get("vars")
    values: dict[str, object] = {}
    if spec_vars is not None:
        if not _is_map(spec_vars.value):
            raise SpecError(messages.vars_not_mapping(), spec_vars.span)
        values = {k: v.plain() for k, v in spec_vars.value.items()}
    for path in options.files:
        text = read(check_inside(path, None, "values file"), None, "values file")
        data = to_node(load(text, path, quote=quotable(path), empty_ok=True)).plain()
        if not isinstance(data, dict):
            raise SpecError(messages.values_file_not_mapping(path), Span(path, 1, 1))
        values = _deep_update(values, data)
    for name, value in options.sets.items():
        values = _deep_update(values, _dotted(name, value))
    return values


def _deep_update(a: dict[str, object], b: dict[str, object]) -> dict[str, object]:
    out = dict(a)
    for k, v in b.items():
        old = out.get(k)
        out[k] = _deep_update(old, v) if isinstance(old, dict) and isinstance(v, dict) else v
    return out


def _dotted(name: str, value: object) -> dict[str, object]:
    head, _, rest = name.partition(".")
    return {head: _dotted(rest, value) if rest else value}


def parse_set(text: str) -> tuple[str, object]:
    """``name=value`` from ``--set``; the value is read as YAML (``3`` is an int, ``[a, b]`` a list)."""
    name, sep, raw = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", name.strip()):
        raise SpecError(messages.bad_set(text), None, messages.bad_set_hint())
    try:
        value = yaml_value(raw, "--set") if raw.strip() else ""
    except SpecError:
        value = raw
    return name.strip(), value


# -- ${…} ---------------------------------------------------------------------------
_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_.]*)(?::-([^}]*))?\}")


def interpolate(node: Node, values: Mapping[str, object]) -> Node:
    if _is_map(node.value):
        return Node({k: interpolate(v, values) for k, v in node.value.items()}, node.span, node.key_span)
    if _is_seq(node.value):
        return Node([interpolate(v, values) for v in node.value], node.span, node.key_span)
    if not isinstance(node.value, str) or "$" not in node.value:
        return node
    value = substitute(node.value, values, node.span)
    if isinstance(value, dict | list):  # a whole-value ${n} holding a map or a list
        return _node_of(value, node.span, node.key_span)
    return replace(node, value=value, derived=isinstance(value, str))


def _node_of(value: object, span: Span | None, key_span: Span | None = None) -> Node:
    if isinstance(value, dict):
        return Node({k: _node_of(v, span) for k, v in value.items()}, span, key_span)
    if isinstance(value, list):
        return Node([_node_of(v, span) for v in value], span, key_span)
    return Node(value, span, key_span)


def substitute(text: str, values: Mapping[str, object], span: Span | None = None) -> object:
    """``text`` with its references replaced; a whole-value ``${n}`` keeps n's type."""
    whole = _REF.fullmatch(text)
    if whole and whole.group(0) != "$$":
        return _lookup(whole.group(1), whole.group(2), values, span)

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        v = _lookup(m.group(1), m.group(2), values, span)
        return (
            v if isinstance(v, str) else yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
        )

    return _REF.sub(one, text)


def _lookup(name: str, default: str | None, values: Mapping[str, object], span: Span | None) -> object:
    v: object = values
    for part in name.split("."):
        if isinstance(v, dict) and part in v:
            v = v[part]
        else:
            if default is not None:
                return _default(name, default, span)
            close = difflib.get_close_matches(name, _names(values), n=1)
            raise SpecError(
                messages.unknown_var(name, _names(values)),
                span,
                messages.did_you_mean("${" + close[0] + "}") if close else messages.unknown_var_hint(name),
            )
    return v


def _default(name: str, default: str, span: Span | None) -> object:
    """``${name:-default}``'s default, read as YAML like a value in the spec."""
    if not default.strip():
        return ""
    try:
        return yaml_value(default, span.file if span else "<default>")
    except SpecError as e:
        raise SpecError(messages.bad_default(name, e.message.removeprefix("invalid YAML: ")), span) from None


def _names(values: Mapping[str, object], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in values.items():
        out.append(prefix + k)
        if isinstance(v, dict):
            out += _names(v, prefix + k + ".")
    return out


# -- repeat -------------------------------------------------------------------------
def _views(node: Node, values: Mapping[str, object]) -> Node:
    if not _is_seq(node.value):
        return interpolate(node, values)
    out: list[Node] = []
    for view in node.value:
        fields = view.value
        if not _is_map(fields) or "repeat" not in fields:
            out.append(interpolate(view, values))
            continue
        rep = fields["repeat"]
        var, over, over_span = _repeat_var(rep, values)
        if isinstance(over, str):  # a selector: expanded once the model exists (expand_views)
            local = {**values, var: "${" + var + "}"}  # the repeat variable survives until then
            kept = {k: interpolate(v, local) for k, v in fields.items() if k != "repeat"}
            kept["repeat"] = Node({var: Node(over, over_span)}, rep.span, rep.key_span)
            out.append(Node(kept, view.span, view.key_span))
            continue
        group = f"{len(out)}:{var}"
        for item in over:
            local = {**values, var: item}
            copy = {k: interpolate(v, local) for k, v in fields.items() if k != "repeat"}
            copy["x-group"] = Node(group)  # the copies share a row (columns=)
            if "id" in copy:  # ids stay unique: weights[fc1], weights[fc2]
                copy["id"] = replace(copy["id"], value=f"{copy['id'].value}[{_text(item)}]")
            out.append(Node(copy, view.span, view.key_span))
    return Node(out, node.span, node.key_span)


def expand_selector_repeat(
    query: str, title: str, description: str, var: str, paths: Iterable[str]
) -> list[tuple[str, str, str]]:
    """(query, title, description) for each module path a repeat's selector matched."""
    return [(_fill(query, var, p), _fill(title, var, p), _fill(description, var, p)) for p in paths]


def _fill(text: str, var: str, path: str) -> str:
    """``text`` with ``${var}`` as the module ``path``."""
    return _text(substitute(text, {var: path})) if "$" in text else text


def _text(value: object) -> str:
    return (
        value
        if isinstance(value, str)
        else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    )


def _repeat_var(rep: Node, values: Mapping[str, object]) -> tuple[str, list[object] | str, Span | None]:
    """The repeat's variable, its values (or a selector's text) and where they are."""
    if not _is_map(rep.value) or len(rep.value) != 1:
        raise SpecError(messages.bad_repeat(), rep.span, messages.bad_repeat_hint())
    ((var, over_node),) = rep.value.items()
    over = interpolate(over_node, values).value
    if isinstance(over, list):
        return var, [v.plain() if isinstance(v, Node) else v for v in over], over_node.span
    if isinstance(over, str):
        return var, over, over_node.span
    raise SpecError(messages.bad_repeat(), over_node.span, messages.bad_repeat_hint())
