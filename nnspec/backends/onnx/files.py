"""ONNX model files: ``model: {file: model.onnx}`` opens here (``backends.files.LOADERS``).

``load(path, factory_model)`` returns an ``OnnxModel``: the path, the
``onnx.ModelProto`` and ONNX Runtime sessions (CPU), created when first run and
cached per set of extra graph outputs (the node outputs a spec reads).
"""

from __future__ import annotations

import os
from typing import Any

import onnx


class OnnxModel:
    """An ONNX model file opened for nnspec: ``proto`` is the file's ModelProto."""

    def __init__(self, proto: onnx.ModelProto, path: str | None = None):
        self.path = path
        self.proto = proto
        self._sessions: dict[frozenset, Any] = {}

    def __repr__(self) -> str:
        return f"OnnxModel({self.path or self.proto.graph.name!r})"

    def session(self, extra: frozenset = frozenset()) -> Any:
        """An ONNX Runtime session (CPU) whose outputs are the graph's own, then ``extra``
        (node outputs added as graph outputs), created once per set."""
        if extra not in self._sessions:
            import onnxruntime as ort

            proto = self.proto
            if extra:
                proto = onnx.ModelProto()
                proto.CopyFrom(self.proto)
                typed = {v.name: v for v in proto.graph.value_info}
                for name in sorted(extra):
                    value = onnx.ValueInfoProto()
                    if name in typed:
                        value.CopyFrom(typed[name])
                    else:
                        value.name = name
                    proto.graph.output.append(value)
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self._sessions[extra] = ort.InferenceSession(
                proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        return self._sessions[extra]

    def forget_sessions(self) -> None:
        """Drop the sessions (the initializers changed)."""
        self._sessions.clear()


def load(path: str, factory_model: Any = None) -> OnnxModel:
    """The ONNX model in ``path`` (a factory's model, if any, is not needed: the file
    holds graph and weights; external data next to it is read too)."""
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    from nnspec.backends.files import parsed_onnx

    proto = parsed_onnx(path)  # sniffing parsed it already
    if proto is None:
        return OnnxModel(onnx.load(path), path)
    if any(uses_external_data(t) for t in proto.graph.initializer):
        load_external_data_for_model(proto, os.path.dirname(os.path.abspath(path)))
    return OnnxModel(proto, path)
