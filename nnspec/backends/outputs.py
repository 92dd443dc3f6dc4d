"""What a model or module returned: tensors, tuples, dicts, dataclasses and
Hugging Face ``ModelOutput`` objects, nested; choosing one tensor of them.

``ModelOutput`` is an ordered dict whose fields are also attributes; its
first field is ``loss`` when the model was given labels, so "the first
tensor" of it is not what a user means by the model's output: ``logits``
is, when there is one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

PREFERRED = ("logits", "last_hidden_state", "prediction_logits", "pooler_output")


def fields(value: Any) -> list[tuple[str, Any]]:
    """(name, value) of each part of a structured output: a tuple's indices as
    ``"0"``, ``"1"``…, a mapping's keys, a dataclass's fields; [] for anything else."""
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items() if v is not None]
    if isinstance(value, (tuple, list)):
        return [(str(i), v) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [
            (f.name, getattr(value, f.name)) for f in dataclasses.fields(value) if getattr(value, f.name) is not None
        ]
    return []


def is_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, type)


def choose(value: Any, name: str | None) -> tuple[Any, str | None]:
    """The tensor ``name`` picks from ``value`` (a field or key, or a tuple index;
    ``a.b`` goes deeper), and the name it goes by; without ``name`` the model's
    main output (``logits`` and the like if present, else the first tensor that is
    not a loss). (None, None) if there is no such tensor."""
    if name is None:
        return _default(value)
    current = value
    for part in name.split("."):
        found = dict(fields(current))
        if part not in found:
            return None, None
        current = found[part]
    if is_tensor(current):
        return current, name
    inner, sub = _default(current)
    return inner, (f"{name}.{sub}" if sub else name) if inner is not None else None


def _default(value: Any) -> tuple[Any, str | None]:
    if is_tensor(value):
        return value, None
    parts = fields(value)
    named = dict(parts)
    for key in PREFERRED:
        if key in named and is_tensor(named[key]):
            return named[key], key
    for key, v in parts:
        if key == "loss":
            continue
        t, sub = _default(v)
        if t is not None:
            return t, (f"{key}.{sub}" if sub else key)
    return None, None


def available(value: Any, prefix: str = "") -> list[str]:
    """The names ``choose`` accepts for ``value``'s tensors, for "did you mean" and notes."""
    out = []
    for key, v in fields(value):
        path = f"{prefix}{key}"
        if is_tensor(v):
            out.append(path)
        else:
            out.extend(available(v, path + "."))
    return out
