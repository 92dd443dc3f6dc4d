"""Architecture graphs: capture (one traced forward pass) plus layout, against
the model's own forward pass; and the layout and chart of a synthetic graph
of 5,000 operator nodes.

    python bench/bench_graph.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import interleaved
from nnspec.backends.pytorch.trace import Tracer
from nnspec.execute import layout as G
from nnspec.models import GPT, ResNet


def capture_and_layout(model, x):
    tracer = Tracer(model)
    with torch.no_grad():
        tracer.run(model, x)
    g = G.build(tracer.trace, model)
    G.layout(g)
    return g


def synthetic(n: int = 5000, seed: int = 0) -> G.Graph:
    """A chain of n operator nodes with skip connections every few nodes (a deep residual net's shape)."""
    rnd = random.Random(seed)
    nodes = [
        G.GNode(f"op{i}", f"op{i}", rnd.choice(["add", "matmul", "relu", "cat"]), "", (8,), 0, "op") for i in range(n)
    ]
    edges = [(f"op{i}", f"op{i + 1}") for i in range(n - 1)]
    edges += [(f"op{i}", f"op{i + rnd.randint(2, 6)}") for i in range(0, n - 7, 3)]
    return G.Graph(nodes, edges, depth=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    cases = {
        "GPT-2-small-shaped, 4×128 tokens": (GPT().eval(), torch.randint(0, 50257, (4, 128))),
        "ResNet-50-shaped stages (3, 4, 6, 3 blocks; BasicBlocks), 8×3×64×64": (
            ResNet(widths=(64, 128, 256, 512), blocks=(3, 4, 6, 3), classes=1000).eval(),
            torch.randn(8, 3, 64, 64),
        ),
    }
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| case | measure | result | detail |")
    print("| --- | --- | ---: | --- |")
    for name, (model, x) in cases.items():

        def forward(model=model, x=x):
            with torch.no_grad():
                model(x)

        holder = {}
        fns = {
            "forward": forward,
            "graph": lambda model=model, x=x, holder=holder: holder.setdefault("g", capture_and_layout(model, x)),
        }
        t = interleaved(fns, repeats=args.repeats)
        g = holder["g"]
        print(
            f"| {name} | capture + layout ÷ forward | {t['graph'] / t['forward']:.2f}× | "
            f"forward {t['forward']:.2f} s, graph {t['graph']:.2f} s; {len(g.nodes)} nodes at depth {g.depth}, "
            f"{g.folded} blocks folded |"
        )
    g = synthetic()
    t0 = time.perf_counter()
    lay = G.layout(g)
    t_layout = time.perf_counter() - t0
    import pandas as pd

    from nnspec.execute.data import Data
    from nnspec.marks.graph import visit_graph
    from nnspec.query.ast import Step
    from nnspec.spec.load import ViewSpec

    nodes = pd.DataFrame(
        {
            "id": [n.id for n in g.nodes], "label": [n.label for n in g.nodes], "type": [n.type for n in g.nodes],
            "x": [lay.pos[n.id][0] for n in g.nodes], "y": [lay.pos[n.id][1] for n in g.nodes],
            "path": "", "shape": "8", "params": 0, "fold": 1, "kind": "op",
        }
    )  # fmt: skip
    edges = pd.DataFrame(
        {
            "source": [a for a, _, _ in lay.paths],
            "target": [b for _, b, _ in lay.paths],
            "points": [p for _, _, p in lay.paths],
        }
    )
    t0 = time.perf_counter()
    _, chart, _ = visit_graph(
        Data("graph", table=nodes, edges=edges), Step("graph", (), None), ViewSpec("graph", "graph", max_marks=100_000)
    )
    spec = chart.to_dict()
    t_chart = time.perf_counter() - t0
    print(f"| synthetic, 5,000 operator nodes, {len(g.edges)} edges | Sugiyama layout (igraph) | {t_layout:.2f} s | |")
    print(
        f"| synthetic, 5,000 operator nodes | Vega-Lite chart built | {t_chart:.2f} s | {len(str(spec)) / 1e6:.1f} MB of spec |"
    )


if __name__ == "__main__":
    main()
