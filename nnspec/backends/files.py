"""Model files recognised by their content (as Netron does), not only by their
extension, and opened by the loader of their kind.

    sniff(path)            the kind of a file: keras, h5, onnx, safetensors,
                           safetensors-index, state_dict, pt2, torchscript
    open_file(path, base)  the model object some backend accepts

Loaders live beside their backend and are imported only when a file of
their kind comes, so the core imports no optional framework.
"""

from __future__ import annotations

import importlib
import json
import os
import zipfile
from typing import Any

from nnspec.backends import messages
from nnspec.errors import ModelError

# kind -> "module:function" of the loader: fn(path, factory_model) -> a model object
LOADERS: dict[str, str] = {
    "keras": "nnspec.backends.keras.files:load",
    "h5": "nnspec.backends.keras.files:load",
    "onnx": "nnspec.backends.onnx.files:load",
    "safetensors": "nnspec.backends.weights.files:load",
    "safetensors-index": "nnspec.backends.weights.files:load",
    "state_dict": "nnspec.backends.weights.files:load",
    "pt2": "nnspec.backends.pytorch.exported:load",
    "torchscript": "nnspec.backends.pytorch.exported:load",
}
KINDS = tuple(LOADERS)

_HDF5 = b"\x89HDF\r\n\x1a\n"
_ZIP = b"PK\x03\x04"


def sniff(path: str) -> str | None:
    """The kind of model file at ``path`` from its first bytes (and a zip's member
    names), or None when it is none nnspec knows."""
    with open(path, "rb") as f:
        head = f.read(16)
        size = os.fstat(f.fileno()).st_size
    if head.startswith(_HDF5):
        return "h5"
    if head.startswith(_ZIP):
        return _zip_kind(path)
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= size - 8:
            return "safetensors"
    if head[:1] == b"{":
        return "safetensors-index" if _is_index(path) else None
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "state_dict"  # a legacy (non-zip) torch.save pickle
    if head[:1] == b"\x08" and _is_onnx(path):
        return "onnx"  # ModelProto's field 1 (ir_version) is a varint: tag 0x08
    return None


def _zip_kind(path: str) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        return None
    leaves = {n.split("/", 1)[-1] for n in names}
    if "config.json" in names and any(n.endswith(".weights.h5") or n.endswith(".h5") for n in names):
        return "keras"
    if "archive_format" in leaves or any(n.endswith("models/model.json") for n in names):
        return "pt2"
    if "constants.pkl" in leaves and any("/code/" in n or n.startswith("code/") for n in names):
        return "torchscript"
    if "data.pkl" in leaves:
        return "state_dict"
    return None


def _is_index(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("weight_map"), dict)


def _is_onnx(path: str) -> bool:
    """An ONNX ModelProto: parsed by onnx when it is installed, else by its first field."""
    try:
        import onnx
    except ImportError:
        return path.endswith(".onnx")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception:  # not a ModelProto
        return False
    if not (len(model.graph.node) > 0 or len(model.graph.initializer) > 0):
        return False
    _PARSED.clear()  # the loader that follows takes it, rather than parsing the file again
    _PARSED[_identity(path)] = model
    return True


_PARSED: dict = {}  # the last ONNX file sniffed: (path, mtime, size) -> ModelProto without external data


def _identity(path: str) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_mtime_ns, st.st_size)


def parsed_onnx(path: str):
    """The ModelProto ``sniff`` parsed from ``path`` if the file is unchanged since (else None), once."""
    try:
        return _PARSED.pop(_identity(path), None)
    except OSError:
        return None


def open_file(path: str, factory_model: Any = None, shown: str | None = None) -> Any:
    """The model in the file at ``path``; ``factory_model`` is the model a factory
    built, for files that hold weights for it (Keras ``.weights.h5``)."""
    shown = shown or path
    if not os.path.isfile(path):
        raise ModelError(messages.no_file(shown))
    kind = sniff(path)
    if kind is None:
        raise ModelError(messages.unknown_file(shown, KINDS))
    module_name, _, fn_name = LOADERS[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ModelError(messages.missing_framework(shown, kind, str(e)), None, messages.extra_hint(kind)) from None
    load = getattr(module, fn_name)
    try:
        return load(path, factory_model)
    except ModelError:
        raise
    except ImportError as e:
        raise ModelError(messages.missing_framework(shown, kind, str(e)), None, messages.extra_hint(kind)) from None
    except Exception as e:  # the framework's own reader failed on this file
        raise ModelError(messages.unreadable_file(shown, kind, f"{type(e).__name__}: {e}")) from e
