"""Messages of opening model files and choosing a backend: every one a function,
kept beside the stage that raises it. Tests assert against these functions."""

from __future__ import annotations

from nnspec.text import names

EXTRAS = {
    "keras": "keras", "h5": "keras", "onnx": "onnx", "safetensors": "safetensors",
    "safetensors-index": "safetensors",
}  # fmt: skip


def no_file(path: str) -> str:
    return f"model file '{path}' does not exist"


def unknown_file(path: str, kinds) -> str:
    return f"'{path}' is no model file nnspec knows (by its content): it reads {names(kinds)}"


def missing_framework(path: str, kind: str, why: str) -> str:
    return f"'{path}' is a {kind} file, and reading it needs a package that is not installed ({why})"


def extra_hint(kind: str) -> str:
    extra = EXTRAS.get(kind)
    return f"pip install 'nnspec[{extra}]'" if extra else "pip install the framework that wrote it"


def unreadable_file(path: str, kind: str, why: str) -> str:
    return f"cannot read '{path}' as a {kind} file: {why}"
