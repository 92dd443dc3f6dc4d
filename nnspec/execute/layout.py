"""From a Trace to a drawable graph: collapse to a depth, fold repeats, lay out.

    Trace (leaf modules + functional ops)
      ─collapse(depth)─▶ one node per module at that depth (its insides grouped)
      ─fold─▶ runs of identical consecutive blocks become one node "×N"
      ─layout─▶ layered (Sugiyama) coordinates from igraph

The layout is igraph's ``layout_sugiyama``: a maintained C library with
Python wheels on PyPI, a layered layout with crossing minimisation and dummy
vertices for long edges, 5,000 nodes in well under a second. (graphviz needs
a system binary; grandalf is pure Python and slow at that size; networkx has
no layered layout.)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from nnspec.backends import backend_for
from nnspec.backends.base import Backend, module_at, params_under
from nnspec.backends.pytorch.trace import Trace

FITS = 60  # "what fits": the deepest depth whose graph has at most this many nodes
FOLD_MIN = 3  # runs of identical blocks at least this long fold by default


@dataclass(frozen=True)
class GNode:
    id: str
    label: str
    type: str
    path: str
    shape: tuple | None
    params: int
    kind: str  # input | module | op | output
    members: tuple = ()
    fold: int = 1


@dataclass
class Graph:
    nodes: list
    edges: list  # (source id, target id)
    depth: int
    folded: int = 0
    notes: list = field(default_factory=list)


def _params_under(be: Backend, path: str) -> int:
    """Parameters of the module at ``path``, each shared tensor counted once."""
    return sum(p.numel for _, p in params_under(be, path))


def max_depth(trace: Trace) -> int:
    return max((len(n.scope) for n in trace.nodes if n.kind == "module"), default=1)


def collapse(trace: Trace, be: Backend, depth: int) -> Graph:
    """One node per module at ``depth`` (or shallower leaf), ops inside grouped with it."""
    key_of: dict[int, str] = {}
    info: dict[str, GNode] = {}
    for n in trace.nodes:
        if n.kind in ("input", "output"):
            key = n.kind
            node = GNode(key, key, key, "", n.shape, 0, n.kind)
        elif len(n.scope) >= depth or (n.kind == "module" and len(n.scope) <= depth):
            parts = n.scope[:depth] if len(n.scope) >= depth else n.scope
            key = ".".join(parts)
            if key not in info:
                type_ = module_at(be, key).type
                node = GNode(key, f"{key}\n{type_}", type_, key, n.shape, _params_under(be, key), "module")
            else:
                node = replace(info[key], shape=n.shape)  # the last member's output leaves the group
        else:
            key = f"{n.name}#{n.id}"
            node = GNode(key, n.name, n.name, ".".join(n.scope), n.shape, 0, "op")
        key_of[n.id] = key
        info[key] = node
    edges = []
    for s, t in trace.edges:
        a, b = key_of[s], key_of[t]
        if a != b and (a, b) not in edges:
            edges.append((a, b))
    return Graph(list(info.values()), edges, depth)


def _signature(be: Backend, path: str):
    return module_at(be, path).type, tuple((n, p.shape) for n, p in params_under(be, path))


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def fold(graph: Graph, be: Backend, min_run: int = FOLD_MIN) -> Graph:
    """Fold chains of identical sibling blocks (same class and parameter shapes,
    each feeding only the next) into one node labelled ``×N``."""
    succ: dict[str, list] = {}
    pred: dict[str, list] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    by_id = {n.id: n for n in graph.nodes}
    runs, used = [], set()
    for n in graph.nodes:
        if n.kind != "module" or n.id in used:
            continue
        run = [n.id]
        while True:
            nxt = succ.get(run[-1], [])
            if len(nxt) != 1 or by_id[nxt[0]].kind != "module" or len(pred.get(nxt[0], [])) != 1:
                break
            cand = nxt[0]
            same = _parent(cand) == _parent(n.id) and _signature(be, cand) == _signature(be, n.id)
            if not same:
                break
            run.append(cand)
        if len(run) >= min_run:
            runs.append(run)
            used.update(run)
    if not runs:
        return graph
    rename = {}
    nodes = []
    folded_ids = {m for r in runs for m in r}
    for r in runs:
        first, last = by_id[r[0]], by_id[r[-1]]
        span = f"{r[0]}–{r[-1].rsplit('.', 1)[-1]}"
        node = GNode(
            r[0], f"{span}\n{first.type} ×{len(r)}", first.type, span, last.shape,
            sum(by_id[m].params for m in r), "module", tuple(r), len(r),
        )  # fmt: skip
        for m in r:
            rename[m] = node.id
        nodes.append((first, node))
    replaced = {first.id: node for first, node in nodes}
    out_nodes = [replaced.get(n.id, n) for n in graph.nodes if n.id not in folded_ids or n.id in replaced]
    edges = []
    for a, b in graph.edges:
        a, b = rename.get(a, a), rename.get(b, b)
        if a != b and (a, b) not in edges:
            edges.append((a, b))
    return Graph(out_nodes, edges, graph.depth, folded=sum(len(r) for r in runs))


def build(trace: Trace, model, depth: int | None = None, folding: bool | None = None) -> Graph:
    be = backend_for(model)
    """The graph at ``depth`` (default: the deepest that fits), folded unless ``folding`` is False."""

    def one(d):
        g = collapse(trace, be, d)
        if folding is None or folding:
            g = fold(g, be, FOLD_MIN if folding is None else 2)
        return g

    if depth is not None:
        return one(depth)
    best = one(1)
    for d in range(2, max_depth(trace) + 1):
        g = one(d)
        if len(g.nodes) > FITS:
            break
        best = g
    return best


@dataclass
class Layout:
    pos: dict  # node id -> (x, y)
    paths: list  # per edge: (source, target, [(x, y), ...]) through bends
    width: float
    height: float


def layout(graph: Graph, direction: str = "TB") -> Layout:
    """Layered layout: ranks top to bottom (``TB``) or left to right (``LR``)."""
    import igraph as ig

    index = {n.id: i for i, n in enumerate(graph.nodes)}
    g = ig.Graph(n=len(graph.nodes), edges=[(index[a], index[b]) for a, b in graph.edges], directed=True)
    result = g.layout_sugiyama(maxiter=50)
    # igraph 1.x returns the layout and, per edge, the bend points through its dummy vertices
    lay, bends = result if isinstance(result, tuple) else (result, None)
    coords = lay.coords

    def point(i):
        across, rank = coords[i][0], coords[i][1]
        return (rank, across) if direction == "LR" else (across, rank)

    def flip(xy):
        return (xy[1], xy[0]) if direction == "LR" else (xy[0], xy[1])

    pos = {n.id: point(i) for i, n in enumerate(graph.nodes)}
    paths = []
    for k, (a, b) in enumerate(graph.edges):
        mid = [flip(tuple(c)) for c in (bends[k] if bends is not None else [])]
        paths.append((a, b, [pos[a], *mid, pos[b]]))
    xs = [p[0] for p in pos.values()] or [0]
    ys = [p[1] for p in pos.values()] or [0]
    return Layout(pos, paths, max(xs) - min(xs), max(ys) - min(ys))
