"""From a Trace to a drawable graph: fold repeats, collapse to a depth, lay out.

    Trace (one node per leaf-module call and per functional op)
      ─fold─▶ runs of identical consecutive sibling blocks keep their first
              block, labelled "×N"; edges into and out of the run follow the data
      ─collapse(depth)─▶ one node per call of each module at that depth
              (its insides grouped)
      ─layout─▶ layered (Sugiyama) coordinates from igraph

Folding happens on the trace, before collapsing, so a run folds at every
depth: at the blocks' own depth it is one node ``blocks.0–5 Block ×6``; deeper,
the first block's insides are drawn once, each labelled ``×6``, with the
residual adds inside. A module called more than once gives one node per call
(``dropout (call 2)``), so edges never loop back through a shared module.

The layout is igraph's ``layout_sugiyama``: a maintained C library with
Python wheels on PyPI, a layered layout with crossing minimisation and dummy
vertices for long edges, 5,000 nodes in well under a second. (graphviz needs
a system binary; grandalf is pure Python and slow at that size; networkx has
no layered layout.)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from nnspec.backends import backend_for
from nnspec.backends.base import Backend, params_under
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


@dataclass(frozen=True)
class Run:
    """Identical consecutive sibling blocks (module paths), folded into the first."""

    blocks: tuple

    @property
    def span(self) -> str:
        return f"{self.blocks[0]}–{self.blocks[-1].rsplit('.', 1)[-1]}"


@dataclass
class Folded:
    """A trace with its folded runs: the nodes still drawn, edges between them."""

    keep: list  # trace nodes, in order
    edges: list  # (source id, target id) between kept trace nodes
    runs: list  # Run, shallowest first


class Modules:
    """Module types, parameter counts and signatures by path, each computed once."""

    def __init__(self, be: Backend):
        self.be = be
        self.types = {m.path: m.type for m in be.modules()}
        self._params: dict[str, list] = {}

    def params(self, path: str) -> list:
        if path not in self._params:
            self._params[path] = params_under(self.be, path)
        return self._params[path]

    def count(self, path: str) -> int:
        """Parameters of the module at ``path``, each shared tensor counted once."""
        return sum(p.numel for _, p in self.params(path))

    def signature(self, path: str):
        return self.types.get(path), tuple((n, p.shape) for n, p in self.params(path))


def max_depth(trace: Trace) -> int:
    return max((len(n.scope) for n in trace.nodes if n.kind == "module"), default=1)


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def _under(scope: tuple, parts: tuple) -> bool:
    return scope[: len(parts)] == parts


def find_runs(trace: Trace, mods: Modules, min_run: int = FOLD_MIN) -> tuple[list, dict]:
    """Runs of at least ``min_run`` identical blocks: consecutive sibling modules,
    each called once, of one class and parameter shapes, whose traced insides
    match node for node and edge for edge, each fed by the one before and no
    other node of the trace run between them. Returns the runs (shallowest
    first) and, for every trace node of a folded-away block, its counterpart
    in the run's first block."""
    nodes_of: dict[str, list] = {}  # module path -> its trace nodes, in order
    for n in trace.nodes:
        if n.kind in ("module", "op"):
            for k in range(1, len(n.scope) + 1):
                nodes_of.setdefault(".".join(n.scope[:k]), []).append(n.id)
    children: dict[str, list] = {}
    for path in nodes_of:  # first appearance order
        if trace.calls.get(path, 1) == 1:
            children.setdefault(_parent(path), []).append(path)
    succ: dict[int, set] = {}
    for a, b in trace.edges:
        succ.setdefault(a, set()).add(b)
    by_id = {n.id: n for n in trace.nodes}

    def shape_of(path):
        parts = tuple(path.split("."))
        out = []
        for i in nodes_of[path]:
            n = by_id[i]
            rel = n.scope[len(parts) :]
            out.append((n.kind, n.type, rel, n.name if n.kind == "op" else "", n.calls[len(parts) :]))
        return out

    def inner_edges(path):
        ids = nodes_of[path]
        pos = {i: k for k, i in enumerate(ids)}
        return {(pos[a], pos[b]) for a in ids for b in succ.get(a, ()) if b in pos}

    def follows(prev, cur):
        a, b = nodes_of[prev], nodes_of[cur]
        if any(j in succ.get(i, ()) for i in a for j in b):
            between = [i for i in range(max(a) + 1, min(b)) if by_id[i].kind in ("module", "op")]
            return not between and b == list(range(min(b), max(b) + 1))
        return False

    runs: list[Run] = []
    counterpart: dict[int, int] = {}
    gone: set[int] = set()
    for parent in sorted(children, key=lambda p: p.count(".") if p else -1):
        sibs = [c for c in children[parent] if c and not (set(nodes_of[c]) & gone)]
        i = 0
        while i < len(sibs):
            first = sibs[i]
            sig, shp, inner = mods.signature(first), shape_of(first), inner_edges(first)
            j = i + 1
            while (
                j < len(sibs)
                and mods.signature(sibs[j]) == sig
                and follows(sibs[j - 1], sibs[j])
                and shape_of(sibs[j]) == shp
                and inner_edges(sibs[j]) == inner
            ):
                j += 1
            if j - i >= min_run:
                run = Run(tuple(sibs[i:j]))
                runs.append(run)
                base = nodes_of[first]
                for other in run.blocks[1:]:
                    for a, b in zip(nodes_of[other], base):
                        counterpart[a] = b
                        gone.add(a)
                i = j
            else:
                i += 1
    return runs, counterpart


def fold_trace(trace: Trace, mods: Modules, min_run: int | None) -> Folded:
    """The trace with every run folded into its first block (``min_run`` None: no folding)."""
    dead = dead_ends(trace)
    if not min_run:
        return _without(Folded(list(trace.nodes), list(trace.edges), []), dead)
    runs, counterpart = find_runs(trace, mods, min_run)
    if not runs:
        return _without(Folded(list(trace.nodes), list(trace.edges), []), dead)
    members = []  # per run: (ids in its first block, ids in all its blocks)
    for run in runs:
        parts = [tuple(b.split(".")) for b in run.blocks]
        inside = [n for n in trace.nodes if n.kind in ("module", "op") and any(_under(n.scope, p) for p in parts)]
        members.append(({n.id for n in inside if _under(n.scope, parts[0])}, {n.id for n in inside}))

    def home(i):
        while i in counterpart:
            i = counterpart[i]
        return i

    edges: dict = {}
    for a, b in trace.edges:
        # an edge between two blocks of a run (the chain from one block to the next) is
        # the run itself; edges inside folded-away blocks repeat the first block's
        if any(a in every and b in every and not (a in first and b in first) for first, every in members):
            continue
        if home(a) != home(b):
            edges[(home(a), home(b))] = None
    keep = [n for n in trace.nodes if n.id not in counterpart]
    return _without(Folded(keep, list(edges), runs), dead)


def dead_ends(trace: Trace) -> set:
    """Ops whose result feeds nothing (``mask.sum()`` read by an ``if``, a shape
    check): control flow, not data flow; they are not drawn."""
    succ: dict[int, int] = {}
    pred: dict[int, list] = {}
    for a, b in trace.edges:
        succ[a] = succ.get(a, 0) + 1
        pred.setdefault(b, []).append(a)
    kind = {n.id: n.kind for n in trace.nodes}
    dead: set = set()
    todo = [n.id for n in trace.nodes if n.kind == "op" and not succ.get(n.id)]
    while todo:
        v = todo.pop()
        if v in dead:
            continue
        dead.add(v)
        for p in pred.get(v, ()):
            succ[p] -= 1
            if kind[p] == "op" and not succ[p]:
                todo.append(p)
    return dead


def _without(folded: Folded, dead: set) -> Folded:
    if not dead:
        return folded
    keep = [n for n in folded.keep if n.id not in dead]
    return Folded(keep, [(a, b) for a, b in folded.edges if a not in dead and b not in dead], folded.runs)


def collapse(trace: Trace, folded: Folded, mods: Modules, depth: int, whole_runs: bool = False) -> Graph:
    """One node per call of each module at ``depth`` (or shallower leaf), ops inside
    grouped with it; ``whole_runs`` draws each visible folded run as one node."""
    runs = [(tuple(r.blocks[0].split(".")), r) for r in folded.runs]

    def display(parts: tuple) -> tuple[str, int]:
        """The path as drawn (a folded block's path spans its run) and how many it stands for."""
        path, times = ".".join(parts), 1
        for first, r in reversed(runs):  # deepest first, so outer spans replace last
            if _under(parts, first):
                path = r.span + path[len(r.blocks[0]) :]
                times *= len(r.blocks)
        return path, times

    key_of: dict[int, str] = {}
    info: dict[str, GNode] = {}
    for n in folded.keep:
        if n.kind in ("input", "output"):
            key = n.name
            node = GNode(key, key, key, "", n.shape, 0, n.kind)
            key_of[n.id] = key
            info[key] = node
            continue
        cut = depth
        if whole_runs:
            for first, _ in runs:
                if len(first) <= depth and _under(n.scope, first):
                    cut = min(cut, len(first))
        if len(n.scope) >= cut or n.kind == "module":
            parts = n.scope[:cut]
            path = ".".join(parts)
            call = n.calls[len(parts) - 1] if len(n.calls) >= len(parts) else 1
            many = trace.calls.get(path, 1) > 1
            key = f"{path}:{call}" if many else path
            shown, times = display(parts)
            if key not in info:
                type_ = mods.types.get(path, n.type)
                label = f"{shown} (call {call})" if many else shown
                label += f"\n{type_}" + (f" ×{times}" if times > 1 else "")
                node = GNode(key, label, type_, shown, n.shape, mods.count(path) * times, "module", fold=times)
            else:
                node = replace(info[key], shape=n.shape)  # the last member's output leaves the group
        else:
            key = f"{n.name}#{n.id}"
            shown, times = display(n.scope)
            label = f"{n.name} ×{times}" if times > 1 else n.name
            node = GNode(key, label, n.name, shown, n.shape, 0, "op", fold=times)
        key_of[n.id] = key
        info[key] = node
    edges: dict = {}
    for s, t in folded.edges:
        a, b = key_of[s], key_of[t]
        if a != b:
            edges[(a, b)] = None
    # a run shows when its blocks are at or above the depth, and not inside a run drawn whole
    visible = [
        r
        for first, r in runs
        if len(first) <= depth and not (whole_runs and any(len(o) < len(first) and _under(first, o) for o, _ in runs))
    ]
    return Graph(list(info.values()), list(edges), depth, folded=sum(len(r.blocks) for r in visible))


def build(trace: Trace, model, depth: int | None = None, folding: bool | None = None) -> Graph:
    """The graph at ``depth`` (default: the deepest that fits ``FITS`` nodes).

    Folding (unless ``folding`` is False) tries, until the graph fits: runs of
    three or more (``folding`` True: two), then runs of two, then each folded
    run drawn as one node; past the budget the last of these is kept."""
    mods = Modules(backend_for(model))
    folds: dict = {}

    def attempt(d: int, min_run: int | None, whole: bool) -> Graph:
        if min_run not in folds:
            folds[min_run] = fold_trace(trace, mods, min_run)
        return collapse(trace, folds[min_run], mods, d, whole)

    return fitting(attempt, lambda g: len(g.nodes), max_depth(trace), depth, folding)


def fold_ladder(folding: bool | None) -> list[tuple[int | None, bool]]:
    """The foldings tried in turn until a graph fits: (shortest run folded, runs drawn whole)."""
    if folding is False:
        return [(None, False)]
    if folding:
        return [(2, False), (2, True)]
    return [(FOLD_MIN, False), (2, False), (2, True)]


def fitting(attempt, size, deepest: int, depth: int | None = None, folding: bool | None = None):
    """What ``build`` draws, for any drawing: ``attempt(depth, min_run, whole)`` at ``depth``
    (default the deepest whose drawing has at most ``FITS`` nodes, by ``size``), the first
    folding of ``fold_ladder(folding)`` that fits, else the last."""

    def one(d: int):
        g = None
        for min_run, whole in fold_ladder(folding):
            g = attempt(d, min_run, whole)
            if size(g) <= FITS:
                return g
        return g

    if depth is not None:
        return one(depth)
    best = one(1)
    for d in range(2, deepest + 1):
        g = one(d)
        if size(g) > FITS:
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
    result = g.layout_sugiyama(layers=_layers(g, [n.kind for n in graph.nodes]), maxiter=50)
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


def _layers(g, kinds: list) -> list | None:
    """Ranks by the longest path from the inputs; what the inputs do not reach (a
    position embedding, T5's relative attention bias, made from constants) as
    late as its consumers allow rather than beside the inputs. None (igraph's
    own ranking) when the graph has a cycle."""
    if g.vcount() == 0 or not g.is_dag():
        return None
    order = g.topological_sorting()
    fed = {v for v in range(g.vcount()) if kinds[v] == "input"}
    rank = [0] * g.vcount()
    for v in order:
        for p in g.predecessors(v):
            if p in fed:
                fed.add(v)
                rank[v] = max(rank[v], rank[p] + 1)
    for v in reversed(order):
        succ = g.successors(v)
        if v not in fed and succ:
            rank[v] = min(rank[s] for s in succ) - 1
    low = min(rank)
    return [r - low for r in rank]
