"""What a network is: the architecture graph and the layer summary, from the
eager trace of the forward pass (nnspec/backends/pytorch/trace.py)."""

from __future__ import annotations

import re

import pandas as pd

from nnspec.backends import backend_for
from nnspec.backends.base import own_params, params_under
from nnspec.backends.pytorch.trace import Trace
from nnspec.errors import SpecError
from nnspec.execute import layout as G
from nnspec.execute import messages

SUMMARY_COLUMNS = ("layer", "type", "input_shape", "output_shape", "params", "trainable", "shared")
CAPTURED_BY = "eager trace of one forward pass (module hooks + TorchFunctionMode)"


def graph_frames(trace: Trace, model, args: dict, span=None) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Nodes ``id, label, type, x, y`` (+ path, shape, params, fold) and edges
    ``source, target`` (+ the bend points of each edge, ``points``)."""
    depth = args.get("depth")
    deepest = G.max_depth(trace)
    if depth is not None and depth > deepest:
        raise SpecError(messages.graph_too_deep(depth, deepest), span)
    g = G.build(trace, model, depth, args.get("fold"))
    lay = G.layout(g, args.get("direction", "TB"))
    nodes = pd.DataFrame(
        {
            "id": [n.id for n in g.nodes],
            "label": [n.label for n in g.nodes],
            "type": [n.type for n in g.nodes],
            "x": [float(lay.pos[n.id][0]) for n in g.nodes],
            "y": [float(lay.pos[n.id][1]) for n in g.nodes],
            "path": [n.path for n in g.nodes],
            "shape": [_shape(n.shape) for n in g.nodes],
            "params": [int(n.params) for n in g.nodes],
            "fold": [int(n.fold) for n in g.nodes],
            "kind": [n.kind for n in g.nodes],
        }
    )
    edges = pd.DataFrame(
        {
            "source": [a for a, _, _ in lay.paths],
            "target": [b for _, b, _ in lay.paths],
            "points": [pts for _, _, pts in lay.paths],
        }
    )
    notes = [
        f"drawn from {trace.captured_by}" if trace.captured_by else f"captured by an {CAPTURED_BY}",
        f"depth {g.depth} of {deepest}",
    ]
    if trace.note:
        notes.append(trace.note)
    if g.folded:
        notes.append(messages.note_folded(g.folded))
    return nodes, edges, notes


def node_values(nodes: pd.DataFrame, values: pd.DataFrame) -> list:
    """A value per node from a ``layer, value`` table: the node's own module, or
    the mean over the layers inside a collapsed or folded node. Parameter
    layers (``fc1.weight``) count for their module."""
    by_module: dict[str, list[float]] = {}
    for layer, v in zip(values["layer"], values["value"]):
        module = layer.rsplit(".", 1)[0] if layer.rsplit(".", 1)[-1] in ("weight", "bias") else layer
        by_module.setdefault(module, []).append(float(v))
    out: list = []
    paths = nodes["path"] if "path" in nodes else nodes["id"]
    for node_id, kind, path in zip(nodes["id"], nodes["kind"], paths):
        if kind != "module":
            out.append(None)
            continue
        # a folded node stands for every block of its run; a call of a module, for the module
        modules = _unfold(path) if "–" in str(path) else [node_id.split(":", 1)[0]]
        members = [v for m, vs in by_module.items() for p in modules if m == p or m.startswith(p + ".") for v in vs]
        out.append(sum(members) / len(members) if members else None)
    return out


def _unfold(path: str) -> list[str]:
    """The module paths a folded path stands for: ``h.0–11.ln_1`` is ``h.0.ln_1`` … ``h.11.ln_1``."""
    match = re.match(r"^(.*?)(\d+)–(\d+)(.*)$", path)
    if not match:
        return [path]
    pre, first, last, rest = match.groups()
    return [p for i in range(int(first), int(last) + 1) for p in _unfold(f"{pre}{i}{rest}")]


def _shape(shape) -> str:
    return "×".join(str(s) for s in shape) if shape else ""


def summary_frame(trace: Trace, model) -> pd.DataFrame:
    """torchinfo's table: one row per module, then totals that count shared
    parameters once (the backend lists each tensor once, with all its names)."""
    be = backend_for(model)
    rows = []
    for m in be.modules():
        under = [p for _, p in params_under(be, m.path)]
        shared = [
            f"{m.path + '.' if m.path else ''}{n} = {p.path}"
            for n, p in own_params(be, m.path)
            if p.path != (f"{m.path}.{n}" if m.path else n)
        ]
        io = trace.module_io.get(m.path)
        rows.append(
            {
                "layer": m.path or "(model)",
                "type": m.type,
                "input_shape": _shape(io[0]) if io else "not run",
                "output_shape": _shape(io[1]) if io else "not run",
                "params": sum(p.numel for p in under),
                "trainable": all(p.trainable for p in under) if under else None,
                "shared": "; ".join(shared),
            }
        )
    params = be.params()  # each shared tensor once
    total = sum(p.numel for p in params)
    trainable = sum(p.numel for p in params if p.trainable)
    rows += [
        {"layer": "total params", "type": "", "params": total},
        {"layer": "trainable params", "type": "", "params": trainable},
        {"layer": "non-trainable params", "type": "", "params": total - trainable},
    ]
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS).fillna({"input_shape": "", "output_shape": "", "shared": ""})
    frame["trainable"] = frame["trainable"].astype(object).where(frame["trainable"].notna(), None)
    return frame


def summary_text(frame: pd.DataFrame) -> str:
    """The summary as a text table (``nnspec layers --shapes``)."""
    body = frame[frame["type"] != ""]
    totals = frame[frame["type"] == ""]
    cols = ["layer", "type", "input_shape", "output_shape", "params", "trainable"]
    names = ["layer", "type", "input", "output", "params", "trainable"]
    cells = [[_cell(r[c], c) for c in cols] for _, r in body.iterrows()]
    for r in cells:
        depth = r[0].count(".") if r[0] != "(model)" else -1
        r[0] = "  " * (depth + 1) + r[0]
    widths = [max(len(n), *(len(r[i]) for r in cells)) for i, n in enumerate(names)]
    line = "  ".join(n.ljust(w) if i != 4 else n.rjust(w) for i, (n, w) in enumerate(zip(names, widths)))
    out = [line, "-" * len(line)]
    for r in cells:
        out.append("  ".join(c.ljust(w) if i != 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    out.append("-" * len(line))
    for _, r in totals.iterrows():
        out.append(f"{r['layer']}: {int(r['params']):,}")
    shared = [s for s in body["shared"] if s]
    if shared:
        out.append("shared (counted once): " + "; ".join(shared))
    return "\n".join(out)


def _cell(v, col) -> str:
    if col == "params":
        return f"{int(v):,}"
    if col == "trainable":
        return "" if v is None or v != v else ("yes" if v else "no")
    return str(v)
