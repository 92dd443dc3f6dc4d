"""Messages of reading, templating and validating spec files: every one a function, kept beside the stage that raises it.

Tests assert against these functions, not against copied strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from nnspec.text import names


def did_you_mean(name: str) -> str:
    return f"did you mean '{name}'?"


def yaml_syntax(problem: str) -> str:
    return f"invalid YAML: {problem}"


def empty_spec() -> str:
    return "the spec file is empty; it needs at least 'nnspec: 1', 'model' and 'views'"


def not_a_mapping() -> str:
    return "a spec must be a YAML mapping with keys nnspec, model, views, …"


def cannot_read(path: str, why: str, what: str = "spec file") -> str:
    return f"cannot read {what} '{path}': {why}"


def duplicate_key(key: str) -> str:
    return f"key '{key}' appears twice in the same mapping"


def unknown_key(key: str, where: str, allowed: Iterable[object]) -> str:
    return f"unknown key '{key}' in {where} (allowed: {names(allowed, 12)})"


def missing_key(key: str, where: str) -> str:
    return f"{where} is missing the required key '{key}'"


def input_kinds(where: str = "input") -> str:
    sources = "'random', 'dataset' (with 'features'), 'file', 'tokens', 'ones', 'zeros' or 'full'"
    if where == "input":
        return f"input needs exactly one of {sources}, or 'args'/'kwargs' naming the model's arguments"
    return f"{where} needs exactly one of {sources}"


def bad_choice(where: str, value: object, choices: Iterable[object]) -> str:
    return f"{where}: {value!r} is not one of {names(choices)}"


def bad_const(where: str, value: object, want: object) -> str:
    if where == "nnspec":
        return f"nnspec: {value!r} is not a format this version reads; use 'nnspec: {want}'"
    return f"{where} must be {want!r}, got {value!r}"


def schema_problem(where: str, detail: str) -> str:
    return f"{where}: {detail}"


def yaml_bool_hint() -> str:
    return "YAML reads unquoted on, off, yes, no, true and false as booleans: quote them ('on')"


def max_marks_range(value: int, limit: int) -> str:
    return f"max_marks must be between 1 and {limit}, got {value}"


def extends_not_path(value: object) -> str:
    return f"extends: expected a path to a spec file, got {value!r}"


def extends_cycle(chain: Sequence[str]) -> str:
    import os

    return "extends makes a cycle: " + " → ".join(os.path.relpath(p) if os.path.isabs(p) else p for p in chain)


def vars_not_mapping() -> str:
    return "vars: expected a mapping of names to default values"


def values_file_not_mapping(path: str) -> str:
    return f"'{path}' (-f): expected a mapping of var names to values"


def bad_set(text: str) -> str:
    return f"--set '{text}': expected name=value"


def bad_set_hint() -> str:
    return "e.g. --set layer=fc2 or --set lr=0.01 (the value is read as YAML)"


def unknown_var(name: str, known: Sequence[str]) -> str:
    return f"unknown variable '${{{name}}}'" + (f" (vars: {', '.join(known)})" if known else " (the spec has no vars)")


def unknown_var_hint(name: str) -> str:
    return f"define it under 'vars:', pass --set {name}=..., or write ${{{name}:-default}}"


def bad_repeat() -> str:
    return "repeat: expected one variable and a list of values or a selector, e.g. {layer: [fc1, fc2]}"


def bad_repeat_hint() -> str:
    return 'write repeat: {layer: [fc1, fc2]} or repeat: {layer: "type(Conv2d)"}, then use ${layer} in the view'


def view_needs_query() -> str:
    return "this view has no query"


def view_needs_query_hint() -> str:
    return "add 'query: ...', or give it the id of a view in the spec it extends so that it merges into that view"


def model_needs_source() -> str:
    return "model needs 'factory' (pkg.module:callable or file.py:callable) or 'file' (a model file)"


def not_utf8(byte: int, offset: int) -> str:
    return f"the file is not UTF-8 text: byte 0x{byte:02x} at offset {offset}"


def bad_character(code: int) -> str:
    return f"character U+{code:04X} is not allowed in YAML (a control character?)"


def too_deep(limit: int) -> str:
    return f"nested more than {limit} levels deep"


def too_many_nodes(budget: int) -> str:
    return f"aliases expand this document past {budget:,} values (a 'billion laughs'?)"


def too_many_nodes_hint() -> str:
    return "an alias (*name) repeats everything its anchor holds: nest fewer aliases"


def recursive_alias() -> str:
    return "this alias contains itself (a recursive anchor)"


def bad_tag(tag: str) -> str:
    return f"YAML tag '{tag}' is not allowed in a spec"


def bad_tag_hint() -> str:
    return "a spec holds only mappings, lists, strings, numbers, booleans and null; quote the value if it is text"


def bad_tagged_value(tag: str, value: str) -> str:
    shown = value if len(value) <= 40 else value[:40] + "…"
    return f"{tag} {shown!r}: not a valid value of that type"


def bad_merge() -> str:
    return "'<<' merges a mapping (or a list of mappings) into this one"


def bad_key() -> str:
    return "a mapping key must be a plain value, not a list or a mapping"


def bad_default(name: str, problem: str) -> str:
    return f"the default of '${{{name}}}' is not valid YAML: {problem}"


def not_regular(what: str, path: str) -> str:
    return f"cannot read {what} '{path}': not a regular file (a directory, device or pipe)"


def too_big(what: str, path: str, size: int, limit: int) -> str:
    return f"cannot read {what} '{path}': {size:,} bytes, more than the limit of {limit:,}"


def bad_path(what: str, path: str) -> str:
    return f"{what} {path!r}: not a usable path (it holds a NUL byte)"


def outside_root(what: str, path: str, root: str) -> str:
    return f"{what} '{path}' is outside the folder this spec is confined to ({root})"


def outside_root_hint() -> str:
    return "files a confined spec reads or writes must lie under --root (symbolic links are followed)"


def extends_not_spec(name: str) -> str:
    return f"extends: '{name}' is not a spec (a YAML mapping with 'nnspec: 1')"
