"""Two DDP ranks (gloo, CPU) train a TinyMLP with nnspec.Recorder; the parent
then computes every recorded number in one process over the same data.

    python tests/ddp_worker.py OUT_DIR   ->  OUT_DIR/ddp (the run), expected.json, views.json
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnspec
from nnspec.numerics import reduce
from tests.dist_common import ROWS, WORLD, data, fresh_model, process_group, rank_batch
from tests.helpers import spec, train

VIEWS = [
    "loss over steps",
    "grads of fc1.weight over steps | norm",
    "activations of act over steps | stats",
    "activations of fc1 over steps | histogram(bins=8)",
    "activations of act over steps | dead_fraction",
    "activations of fc1 over steps | mean",
]
STEPS = 4


def rank_main(rank: int, out: str) -> None:
    with process_group(rank, out):
        x, y = rank_batch(rank)
        model = DistributedDataParallel(fresh_model())
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        run = os.path.join(out, "ddp")
        with nnspec.Recorder(spec(VIEWS, loss="cross_entropy"), model, run=run, record_every=1) as rec:
            train(rec, model, x, y, opt, STEPS)


def expected() -> dict:
    """The same training in one process: each shard's forward as its rank ran it,
    gradients averaged as DDP does, statistics over the shards' activations together."""
    x, y = data()
    model = fresh_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    want = {str(i): {} for i in range(len(VIEWS))}
    for step in range(STEPS):
        acts = {"fc1": [], "act": []}
        hooks = [
            getattr(model, k).register_forward_hook(lambda m, a, o, k=k, acts=acts: acts[k].append(o.detach()))
            for k in acts
        ]
        grads, losses = [], []
        for r in range(WORLD):
            model.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[r * ROWS : (r + 1) * ROWS]), y[r * ROWS : (r + 1) * ROWS])
            loss.backward()
            losses.append(float(loss))
            grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        for h in hooks:
            h.remove()
        for n, p in model.named_parameters():
            p.grad = sum(g[n] / WORLD for g in grads)
        fc1, act = torch.cat(acts["fc1"]), torch.cat(acts["act"])
        s = str(step)
        want["0"][s] = [sum(losses) / WORLD]
        want["1"][s] = [float(model.fc1.weight.grad.norm())]
        a = act.double()
        want["2"][s] = {
            "exact": [a.numel(), float(a.min()), float(a.max()), 0],
            "close": [float(a.mean()), float(a.std()), float(a.abs().mean())],
        }
        want["3"][s] = reduce.histogram(fc1, 8)["counts"].tolist()
        want["4"][s] = [float(((act > 0).sum(0) == 0).double().mean())]
        want["5"][s] = [float(fc1.double().mean())]
        opt.step()
        opt.zero_grad()
    return want


def main(out: str) -> None:
    mp.spawn(rank_main, args=(out,), nprocs=WORLD, join=True)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected(), f)
    with open(os.path.join(out, "views.json"), "w") as f:
        json.dump(VIEWS, f)


if __name__ == "__main__":
    main(sys.argv[1])
