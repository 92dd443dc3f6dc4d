"""The graph explorer's payload: the whole hierarchy of a traced model, for the
page's ``assets/graph.js`` to fold, unfold, expand and collapse in the browser.

    {"v": 1,
     "n": [[id, kind, name, scope, shape, calls], ...]   trace nodes (dead ends left out);
                                                         kind i(nput) m(odule) p (op) o(utput);
                                                         calls: which call of each scope prefix, [] if all first
     "e": [[source, target], ...]                        trace edges between those nodes
     "m": {path: {"t": type, "p": params, "c": calls, "i": in shape, "o": out shape, "g": 1 if a group}}
     "r": [{"b": [block paths], "ids": [[node ids of block 0], [of block 1], ...]}, ...]   runs, shallowest first
     "init": {"x": [expanded groups], "f": [folded runs]}}   the state ``layout.build`` draws

A state is (expanded groups, folded runs). Its graph (``visible``, which
graph.js mirrors line for line): a folded run maps every node of its other
blocks onto the same node of its first block, and drops the edges between
its blocks (the chain); a node then shows as its shallowest enclosing group
that is not expanded (``path`` or ``path:call`` for a module called more than
once), or as itself (a leaf module, ``name#id`` for an op, the name of an
input or output). ``tests/test_explore.py`` checks that the initial state's
graph is ``layout.build``'s, node for node and edge for edge.
"""

from __future__ import annotations

from nnspec.backends import backend_for
from nnspec.backends.pytorch.trace import Trace
from nnspec.execute import layout as G

KINDS = {"input": "i", "module": "m", "op": "p", "output": "o"}


def payload(trace: Trace, model, args: dict | None = None) -> dict:
    """The payload for ``trace`` of ``model``; ``args`` the graph's own (``depth``, ``fold``)."""
    args = args or {}
    mods = G.Modules(backend_for(model))
    dead = G.dead_ends(trace)
    nodes = [n for n in trace.nodes if n.id not in dead]
    out: dict = {"v": 1, "n": [_node(n) for n in nodes]}
    out["e"] = [[a, b] for a, b in dict.fromkeys(trace.edges) if a not in dead and b not in dead]
    out["m"] = _modules(trace, nodes, mods)
    found = {m: G.find_runs(trace, mods, m)[0] for m in (G.FOLD_MIN, 2)}
    runs = list({r.blocks: r for m in found for r in found[m]}.values())
    runs.sort(key=lambda r: r.blocks[0].count("."))
    out["r"] = [_run(r, nodes) for r in runs]
    out["init"] = initial(out, found, args.get("depth"), args.get("fold"))
    return out


def _node(n) -> list:
    calls = list(n.calls) if any(c != 1 for c in n.calls) else []
    return [n.id, KINDS[n.kind], n.name, ".".join(n.scope), list(n.shape) if n.shape else None, calls]


def _modules(trace: Trace, nodes: list, mods) -> dict:
    groups: set = set()
    paths: dict = {"": None}
    for n in nodes:
        if n.kind not in ("module", "op"):
            continue
        inner = len(n.scope) if n.kind == "op" else len(n.scope) - 1
        for k in range(1, len(n.scope) + 1):
            path = ".".join(n.scope[:k])
            paths[path] = None
            if k <= inner:
                groups.add(path)
    out = {}
    for path in paths:
        io = trace.module_io.get(path)
        entry = {"t": mods.types.get(path, ""), "p": mods.count(path), "c": trace.calls.get(path, 1)}
        if io:
            entry |= {"i": list(io[0]) if io[0] else None, "o": list(io[1]) if io[1] else None}
        if path in groups:
            entry["g"] = 1
        out[path] = entry
    return out


def _run(run, nodes: list) -> dict:
    ids = []
    for block in run.blocks:
        parts = tuple(block.split("."))
        ids.append([n.id for n in nodes if n.kind in ("module", "op") and n.scope[: len(parts)] == parts])
    return {"b": list(run.blocks), "ids": ids}


def initial(data: dict, found: dict, depth: int | None, folding: bool | None) -> dict:
    """The state ``layout.build`` draws: its ladder of foldings at the deepest depth that fits."""
    index = {tuple(r["b"]): i for i, r in enumerate(data["r"])}
    groups = [p for p, m in data["m"].items() if m.get("g")]

    def state(d: int, min_run, whole: bool) -> dict:
        folded = [index[r.blocks] for r in found[min_run]] if min_run else []
        firsts = {data["r"][i]["b"][0] for i in folded} if whole else set()
        expanded = [p for p in groups if p.count(".") + 1 < d and p not in firsts]
        return {"x": expanded, "f": folded}

    deepest = max((m.count(".") + 1 for m in data["m"] if m), default=1)
    return G.fitting(state, lambda s: len(visible(data, s["x"], s["f"])[0]), deepest, depth, folding)


def visible(data: dict, expanded, folded) -> tuple[dict, set]:
    """The graph of one state: ``{key: trace node ids drawn as it}`` and the edges between keys."""
    counterpart: dict = {}
    members: dict = {}  # node id -> [(first block ids, every block's ids)] of the folded runs holding it
    for i in sorted(folded):
        ids = data["r"][i]["ids"]
        if ids[0] and ids[0][0] in counterpart:
            continue  # inside a block another folded run already maps away
        first, every = set(ids[0]), {x for block in ids for x in block}
        for block in ids[1:]:
            counterpart.update(zip(block, ids[0]))
        for x in every:
            members.setdefault(x, []).append((first, every))

    def home(x):
        while x in counterpart:
            x = counterpart[x]
        return x

    open_ = set(expanded)
    mods = data["m"]
    key_of: dict = {}
    shown: dict = {}
    for id_, kind, name, scope, _, calls in data["n"]:
        if id_ in counterpart:
            continue
        key = _key(kind, id_, name, scope, calls, open_, mods)
        key_of[id_] = key
        shown.setdefault(key, []).append(id_)
    edges = set()
    for a, b in data["e"]:
        if any(b in every and not (a in first and b in first) for first, every in members.get(a, ())):
            continue  # the chain between two blocks of a folded run
        ka, kb = key_of[home(a)], key_of[home(b)]
        if ka != kb:
            edges.add((ka, kb))
    return shown, edges


def _key(kind: str, id_: int, name: str, scope: str, calls: list, open_: set, mods: dict) -> str:
    if kind in ("i", "o"):
        return name
    parts = scope.split(".") if scope else []
    for k in range(1, len(parts) + 1):
        path = ".".join(parts[:k])
        if path not in open_ or k == len(parts) and kind == "m":
            if mods[path]["c"] > 1:
                return f"{path}:{calls[k - 1] if len(calls) >= k else 1}"
            return path
    return f"{name}#{id_}"
