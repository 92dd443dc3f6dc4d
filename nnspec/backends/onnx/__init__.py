"""The ONNX backend: a model file run by ONNX Runtime (inference only).

``files.load`` opens the file (``OnnxModel``); ``backend.OnnxBackend`` reads its
graph as modules (torch module paths from the exporter's metadata where present),
its initializers as parameters, and runs it with every asked-for node output added
to the graph's outputs. ``graph`` holds the reading of the file's structure.
"""
