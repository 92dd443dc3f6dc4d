"""Reading weights-only files: names, shapes and dtypes up front, tensor data only
when a view asks for it.

    safetensors         the 8-byte length and the JSON header are read at once (no
                        tensor data); ``safe_open(...).get_tensor(name)`` reads one tensor;
                        the header keeps no model order: names come in natural order
                        (``layer.2`` before ``layer.10``)
    safetensors-index   ``*.safetensors.index.json``: its ``weight_map`` names the shard
                        of each tensor, the shards lie beside it and are read as above
    state_dict          ``torch.load(weights_only=True)``; a zip file is memory-mapped
                        (``mmap=True``), so only the tensors read are paged in; a legacy
                        pickle is read whole; a ``{"state_dict": ...}`` wrapper is opened

With a factory's model (``model: {factory: ..., file: model.safetensors}``) the file's
tensors are loaded into that model, strictly, and the model is what nnspec reads: every
view works. Without one the file alone is the model (``WeightsFile``): weights, summary
and checks, no forward pass.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from nnspec.backends import messages
from nnspec.errors import ModelError

# safetensors dtype codes -> torch's names (``str(torch.bfloat16)`` without "torch.")
DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "I32": "int32",
    "U32": "uint32", "I64": "int64", "U64": "uint64", "F16": "float16", "BF16": "bfloat16",
    "F32": "float32", "F64": "float64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "C64": "complex64",
}  # fmt: skip
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on a header


@dataclass(frozen=True)
class Entry:
    """One tensor of the file: where it is, its shape and dtype (no data)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    source: str  # the file that holds it (a shard of an index)
    names: tuple[str, ...] = ()  # every name of a tied tensor (a state_dict's shared storage)


@dataclass
class WeightsFile:
    """A weights-only file: its tensors by name, read on demand."""

    path: str
    kind: str  # safetensors | safetensors-index | state_dict
    entries: dict[str, Entry]
    metadata: dict[str, str] = field(default_factory=dict)
    _state: dict | None = field(default=None, repr=False)  # a state_dict's (memory-mapped) tensors
    reads: int = 0  # tensors read so far (the lazy reading is tested by it)

    def tensor(self, name: str) -> Any:
        """The tensor called ``name``, read now (only it)."""
        entry = self.entries[name]
        self.reads += 1
        if self._state is not None:
            return self._state[name]
        from safetensors import safe_open

        with safe_open(entry.source, framework="pt") as f:
            return f.get_tensor(name)

    def state(self) -> dict:
        """Every tensor by name (reads them all)."""
        return {name: self.tensor(name) for name in self.entries}


def load(path: str, factory_model: Any = None) -> Any:
    """The weights file at ``path``, or ``factory_model`` with the file's tensors in it."""
    from nnspec.backends.files import sniff

    kind = sniff(path)
    if kind == "safetensors":
        entries, meta = _safetensors_header(path)
        weights = WeightsFile(path, kind, entries, meta)
    elif kind == "safetensors-index":
        weights = _index(path)
    elif kind == "state_dict":
        weights = _state_dict(path)
    else:
        raise ModelError(messages.unreadable_file(path, kind or "weights", "it holds no weights nnspec reads"))
    if factory_model is None:
        return weights
    return _into(factory_model, weights, path)


def _safetensors_header(path: str) -> tuple[dict[str, Entry], dict[str, str]]:
    """Names, shapes and dtypes from a safetensors header, without reading tensor data."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER:
            raise ValueError(f"a header of {n} bytes")
        header = json.loads(f.read(n))
    meta = header.pop("__metadata__", None) or {}
    entries = {
        name: Entry(name, tuple(int(d) for d in info["shape"]), DTYPES.get(info["dtype"], info["dtype"].lower()), path)
        for name, info in sorted(header.items(), key=lambda item: natural(item[0]))
    }
    return entries, {str(k): str(v) for k, v in meta.items()}


def natural(name: str) -> tuple:
    """A sort key with numbers compared as numbers: ``layer.2`` before ``layer.10``. A
    safetensors header keeps no model order (writers sort it), so names come in this one."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in name.split("."))


def _index(path: str) -> WeightsFile:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    weight_map: dict[str, str] = doc["weight_map"]
    folder = os.path.dirname(path)
    headers: dict[str, dict[str, Entry]] = {}
    entries: dict[str, Entry] = {}
    for name, shard in sorted(weight_map.items(), key=lambda item: natural(item[0])):
        if shard not in headers:
            shard_path = os.path.join(folder, shard)
            if not os.path.isfile(shard_path):
                raise ModelError(messages.missing_shard(path, shard))
            headers[shard] = _safetensors_header(shard_path)[0]
        if name not in headers[shard]:
            raise ModelError(messages.not_in_shard(path, name, shard))
        entries[name] = headers[shard][name]
    meta = doc.get("metadata") or {}
    return WeightsFile(path, "safetensors-index", entries, {str(k): str(v) for k, v in meta.items()})


def _state_dict(path: str) -> WeightsFile:
    import zipfile

    import torch

    if path.endswith(".safetensors"):  # torch.load would read it as safetensors, by its name
        with open(path, "rb") as f:
            state = torch.load(f, map_location="cpu", weights_only=True)
    else:  # torch memory-maps only its zip format
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(messages.unreadable_file(path, "state_dict", f"it holds a {type(state).__name__}, not a dict"))
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelError(messages.unreadable_file(path, "state_dict", "it holds no tensors"))
    # tensors saved from one storage (a tied lm_head.weight = wte.weight) are one tensor
    names: dict[tuple, list[str]] = {}
    for name, t in tensors.items():
        names.setdefault(_identity(t), []).append(name)
    entries = {}
    for name, t in tensors.items():
        tied = names[_identity(t)]
        entries[name] = Entry(name, tuple(t.shape), str(t.dtype).removeprefix("torch."), path, tuple(tied))
    return WeightsFile(path, "state_dict", entries, {}, tensors)


def _identity(t: Any) -> tuple:
    """Same storage, offset, shape, strides and dtype: the same tensor under two names."""
    if t.numel() == 0:
        return (id(t),)
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _into(model: Any, weights: WeightsFile, path: str) -> Any:
    """``model`` with the file's tensors loaded into it (every name must fit)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ModelError(messages.weights_need_module(path, type(model).__name__))
    own = model.state_dict()
    missing = [k for k in own if k not in weights.entries]
    unexpected = [k for k in weights.entries if k not in own]
    shapes = [(k, weights.entries[k].shape, tuple(v.shape)) for k, v in own.items()
              if k in weights.entries and weights.entries[k].shape != tuple(v.shape)]  # fmt: skip
    if missing or unexpected or shapes:
        raise ModelError(messages.weights_mismatch(path, missing, unexpected, shapes))
    with torch.no_grad():
        model.load_state_dict(weights.state())
    return model
