"""YAML with positions: plain Python data plus a span for every node.

``yaml.compose`` keeps marks on each node; we convert the node tree to
dicts/lists/scalars and remember, for each path of keys and indexes, the span
of the value and (for mapping entries) of the key.

Only JSON's kinds of values come out (mappings, lists, strings, numbers,
booleans, null): a tag that would build anything else (``!!python/…``,
``!!set``, ``!!binary``, a custom ``!tag``) is refused where it stands. The
loader is bounded: nesting deeper than ``MAX_DEPTH``, an alias that contains
itself, or aliases that expand past ``NODE_BUDGET`` nodes (a "billion laughs")
are located errors, and nothing is kept between loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TypeAlias

import yaml

from nnspec.errors import Span, SpecError
from nnspec.spec import messages

Path: TypeAlias = tuple[str | int, ...]  # of str keys and int indexes

MAX_DEPTH = 100
"""Levels of nested lists and mappings a spec (or a file it reads) may have."""
NODE_BUDGET = 100_000
"""Nodes a document may expand to beyond its own text (each alias counts what it repeats)."""
MAX_BYTES = 64 << 20
"""The largest YAML file read (spec, extended file, values file): 64 MiB."""


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


def read(path: str, span: Span | None = None, what: str = "spec file") -> str:
    """The text of a YAML file: a regular file of at most MAX_BYTES, in UTF-8;
    anything else is a SpecError at ``span`` (or, for bad bytes, at the byte)."""
    from nnspec.paths import read_regular

    data = read_regular(path, MAX_BYTES, span, what)
    return decode(data, path, quote=quotable(path))


def decode(data: bytes, file: str, quote: bool = True) -> str:
    """``data`` as UTF-8 text (a BOM is allowed); a byte that is not UTF-8 is a SpecError at its line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        shown = _printable(data.split(b"\n")[line - 1].decode("utf-8", "replace")) if quote else ""
        raise SpecError(messages.not_utf8(data[e.start], e.start), Span(file, line, col, shown)) from None


def quotable(file: str) -> bool:
    """Whether errors may quote lines of ``file``: only of files named as YAML or JSON
    (never of ``/etc/shadow`` named in ``extends:``)."""
    return os.path.splitext(file)[1].lower() in (".yaml", ".yml", ".json")


def _printable(line: str) -> str:
    return "".join(c if c.isprintable() or c == "\t" else "\ufffd" for c in line)


class _Loader(yaml.SafeLoader):
    """The safe loader, composing at most MAX_DEPTH levels (PyYAML's composer recurses)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _TooDeep(mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__()
        self.mark = mark


def load(text: str, file: str, quote: bool = True, empty_ok: bool = False) -> Located:
    """Parse ``text``; YAML syntax errors become a SpecError at their mark.
    ``quote``: whether errors may show lines of the file (see ``quotable``)."""
    shown = None if quote else ""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # checks the characters first
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        span = Span(file, mark.line + 1, mark.column + 1, shown) if mark else Span(file, 1, 1, shown)
        raise SpecError(messages.yaml_syntax(e.problem or str(e)), span) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (control characters)
        line = text.count("\n", 0, e.position) + 1
        col = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        where = text.split("\n")[line - 1] if quote else ""
        raise SpecError(
            messages.bad_character(e.character if isinstance(e.character, int) else ord(e.character)),
            Span(file, line, col, _printable(where)),
        ) from None
    except _TooDeep as e:
        raise SpecError(messages.too_deep(MAX_DEPTH), Span(file, e.mark.line + 1, e.mark.column + 1, shown)) from None
    except yaml.YAMLError as e:  # any other complaint of the parser
        raise SpecError(
            messages.yaml_syntax(str(e).splitlines()[0] if str(e) else "unreadable"), Span(file, 1, 1, shown)
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    out = Located(data=None, file=file)
    if root is None:
        if not empty_ok:
            raise SpecError(messages.empty_spec(), Span(file, 1, 1, shown))
        return out
    converter = _Converter(out, shown)
    converter.check(root, NODE_BUDGET + len(text) // 2)
    out.data = converter.convert(root, ())
    return out


def value(text: str, where: str = "<value>") -> object:
    """One YAML value (``--set``'s, a ``${name:-default}``'s), by the same rules as a spec; empty: None."""
    return load(text, where, empty_ok=True).data


_CORE = "tag:yaml.org,2002:"


class _Converter:
    """Node tree → plain data with spans; counts the nodes it makes (aliases repeat theirs)."""

    def __init__(self, out: Located, shown: str | None) -> None:
        self.out = out
        self.shown = shown

    def span(self, node: yaml.Node) -> Span:
        return Span(self.out.file, node.start_mark.line + 1, node.start_mark.column + 1, self.shown)

    def check(self, root: yaml.Node, budget: int) -> None:
        """Before converting: no alias inside itself, at most MAX_DEPTH levels and ``budget``
        values once aliases are expanded (counted once per distinct node, so in linear time)."""
        sizes: dict[int, int] = {}
        active: set[int] = set()

        def size(node: yaml.Node, depth: int) -> int:
            known = sizes.get(id(node))
            if known is not None:
                return known
            if isinstance(node, yaml.ScalarNode):
                return 1
            if id(node) in active:
                raise SpecError(messages.recursive_alias(), self.span(node))
            if depth > MAX_DEPTH:
                raise SpecError(messages.too_deep(MAX_DEPTH), self.span(node))
            active.add(id(node))
            children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
            total = 1 + sum(size(child, depth + 1) for child in children)
            active.discard(id(node))
            sizes[id(node)] = total
            return total

        if size(root, 1) <= budget:
            return
        node = root  # the innermost value that alone passes the budget: where to look
        while not isinstance(node, yaml.ScalarNode):
            children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
            big = next((c for c in children if sizes.get(id(c), 1) > budget), None)
            if big is None:
                break
            node = big
        raise SpecError(messages.too_many_nodes(NODE_BUDGET), self.span(node), messages.too_many_nodes_hint())

    def convert(self, node: yaml.Node, path: Path) -> object:
        out = self.out
        out.values[path] = self.span(node)
        if isinstance(node, yaml.ScalarNode):
            out.styles[path] = node.style
            return self.scalar(node)
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        assert isinstance(node, yaml.SequenceNode)  # compose makes only mapping, sequence and scalar nodes
        if node.tag != _CORE + "seq":
            raise SpecError(messages.bad_tag(_short(node.tag)), self.span(node), messages.bad_tag_hint())
        items: list[yaml.Node] = node.value
        return [self.convert(v, path + (i,)) for i, v in enumerate(items)]

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, object]:
        if node.tag != _CORE + "map":
            raise SpecError(messages.bad_tag(_short(node.tag)), self.span(node), messages.bad_tag_hint())
        result: dict[str, object] = {}
        merged: dict[str, object] = {}
        pairs: list[tuple[yaml.Node, yaml.Node]] = node.value
        for key_node, value_node in pairs:
            if key_node.tag == _CORE + "merge":  # << anchors
                for part in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                    value = self.convert(part, path)
                    if not isinstance(value, dict):
                        raise SpecError(messages.bad_merge(), self.span(part))
                    for k, v in value.items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError(messages.bad_key(), self.span(key_node))
            key = self.scalar(key_node)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                raise SpecError(messages.duplicate_key(key), self.span(key_node))
            self.out.keys[path + (key,)] = self.span(key_node)
            result[key] = self.convert(value_node, path + (key,))
        for k, v in merged.items():
            result.setdefault(k, v)
        return result

    def scalar(self, node: yaml.ScalarNode) -> object:
        """A plain value of YAML's core schema; any other tag is refused where it stands."""
        tag = node.tag
        if tag in (_CORE + "str", _CORE + "timestamp"):  # a date stays the text it was written as
            return str(node.value)
        build = _SCALARS.get(tag)
        if build is None:
            raise SpecError(messages.bad_tag(_short(tag)), self.span(node), messages.bad_tag_hint())
        try:
            return build(node)
        except Exception:  # !!int abc, !!bool maybe, !!float x
            raise SpecError(messages.bad_tagged_value(_short(tag), str(node.value)), self.span(node)) from None


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


_CONSTRUCTOR = yaml.SafeLoader("")  # its scalar constructors only: they keep nothing between calls
_SCALARS = {
    _CORE + "int": _CONSTRUCTOR.construct_yaml_int,
    _CORE + "float": _CONSTRUCTOR.construct_yaml_float,
    _CORE + "bool": _CONSTRUCTOR.construct_yaml_bool,
    _CORE + "null": _CONSTRUCTOR.construct_yaml_null,
}
