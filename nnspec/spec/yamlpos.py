"""YAML with positions: plain Python data plus a span for every node.

``yaml.compose`` keeps marks on each node; we convert the node tree to
dicts/lists/scalars and remember, for each path of keys and indexes, the span
of the value and (for mapping entries) of the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

import yaml

from nnspec.errors import Span, SpecError
from nnspec.spec import messages

Path: TypeAlias = tuple[str | int, ...]  # of str keys and int indexes


@dataclass
class Located:
    """Parsed YAML: ``data`` and the spans of its nodes by path."""

    data: object
    file: str
    values: dict[Path, Span] = field(default_factory=dict)  # path -> Span of the value
    keys: dict[Path, Span] = field(default_factory=dict)  # path -> Span of the mapping key
    styles: dict[Path, str | None] = field(default_factory=dict)  # path -> scalar style (quote char)
    sources: list[str] = field(default_factory=list)  # files it was built from (the spec, what it extends)

    def span(self, path: Path, key: bool = False) -> Span | None:
        """The span at ``path``, or of its nearest ancestor that has one
        (None for a spec given as a dict: it has no positions)."""
        if not self.values:
            return None
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), Span(self.file, 1, 1))


def _span(file: str, node: yaml.Node) -> Span:
    return Span(file, node.start_mark.line + 1, node.start_mark.column + 1)


def load(text: str, file: str) -> Located:
    """Parse ``text``; YAML syntax errors become a SpecError at their mark."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        span = Span(file, mark.line + 1, mark.column + 1) if mark else Span(file, 1, 1)
        raise SpecError(messages.yaml_syntax(e.problem or str(e)), span) from None
    out = Located(data=None, file=file)
    if root is None:
        raise SpecError(messages.empty_spec(), Span(file, 1, 1))
    out.data = _convert(root, (), out)
    return out


def _convert(node: yaml.Node, path: Path, out: Located) -> object:
    out.values[path] = _span(out.file, node)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, object] = {}
        pairs: list[tuple[yaml.Node, yaml.Node]] = node.value
        for key_node, value_node in pairs:
            if key_node.tag == "tag:yaml.org,2002:merge":  # << anchors
                merged = _convert(value_node, path, out)
                for k, v in merged.items() if isinstance(merged, dict) else ():
                    result.setdefault(k, v)
                continue
            key = _scalar(key_node)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                raise SpecError(messages.duplicate_key(key), _span(out.file, key_node))
            out.keys[path + (key,)] = _span(out.file, key_node)
            result[key] = _convert(value_node, path + (key,), out)
        return result
    if isinstance(node, yaml.SequenceNode):
        items: list[yaml.Node] = node.value
        return [_convert(v, path + (i,), out) for i, v in enumerate(items)]
    assert isinstance(node, yaml.ScalarNode)  # compose makes only mapping, sequence and scalar nodes
    out.styles[path] = node.style
    return _scalar(node)


def _scalar(node: yaml.Node) -> object:
    return _CONSTRUCTOR.construct_object(node, deep=True)


_CONSTRUCTOR = yaml.SafeLoader("")
