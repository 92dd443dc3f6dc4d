"""Two FSDP2 ranks (``fully_shard``, gloo, CPU) train a TinyMLP with nnspec.Recorder;
rank 0 also writes, at every step, the statistics of the whole parameters and
gradients (``full_tensor()``, gathered here only to check); the parent then
computes every recorded number in one process over the same data.

    python tests/fsdp_worker.py OUT_DIR  ->  OUT_DIR/fsdp (the run), expected.json, full.json,
                                             views.json, refused.txt
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnspec
from nnspec.errors import SpecError
from nnspec.numerics import reduce
from tests.dist_common import ROWS, WORLD, data, fresh_model, process_group, rank_batch
from tests.helpers import spec

VIEWS = [
    "loss over steps",
    "params of * over steps | stats",
    "grads of * over steps | norm",
    "grads of * over steps | histogram(bins=16)",
    "activations of act over steps | mean",
    "weights of * over steps | update_ratio",
    "params of * over steps | mean",
    "grads of * over steps | max",
]
REFUSED = ["weights of fc1.weight[0] over steps | norm"]
STEPS, LR = 4, 0.5
PARAMS = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")  # fc2's shards: 2 rows and 1 (uneven)


def whole(t: torch.Tensor) -> dict:
    """The statistics of one whole tensor in one process (the reference for the shards' merge)."""
    t = t.detach()
    return {
        "stats": reduce.stats(t).tolist(),
        "norm": float(t.double().norm()),
        "mean": float(t.double().mean()),
        "max": float(t.max()),
        "histogram": reduce.histogram(t, 16)["counts"].tolist(),
    }


def rank_main(rank: int, out: str) -> None:
    from torch.distributed.fsdp import fully_shard

    with process_group(rank, out):
        x, y = rank_batch(rank)
        model = fresh_model()
        fully_shard(model.fc1)
        fully_shard(model.fc2)
        fully_shard(model)
        try:
            nnspec.Recorder(spec(REFUSED, loss="cross_entropy"), model, run=os.path.join(out, "refused"))
            refused = "not refused"
        except SpecError as e:
            refused = e.message + "\nhint: " + str(e.hint)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        run, full = os.path.join(out, "fsdp"), {}
        with nnspec.Recorder(spec(VIEWS, loss="cross_entropy"), model, run=run, record_every=1) as rec:
            for step in range(STEPS):
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                rec.step(step, loss=loss)
                named = dict(model.named_parameters())
                wholes = {n: (named[n].full_tensor(), named[n].grad.full_tensor()) for n in PARAMS}
                full[str(step)] = {n: {"param": whole(p), "grad": whole(g)} for n, (p, g) in wholes.items()}
                opt.step()
                opt.zero_grad()
        if rank == 0:
            with open(os.path.join(out, "full.json"), "w") as f:
                json.dump(full, f)
            with open(os.path.join(out, "refused.txt"), "w") as f:
                f.write(refused)


def expected() -> dict:
    """The same training in one process: the whole batch, each rank's half as its rank ran it,
    gradients averaged as FSDP's reduce-scatter does."""
    x, y = data()
    model = fresh_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    want: dict = {}
    for step in range(STEPS):
        acts: list = []
        hook = model.act.register_forward_hook(lambda m, a, o, acts=acts: acts.append(o.detach()))
        grads, losses = [], []
        for r in range(WORLD):
            model.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[r * ROWS : (r + 1) * ROWS]), y[r * ROWS : (r + 1) * ROWS])
            loss.backward()
            losses.append(float(loss.detach()))
            grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        hook.remove()
        named = dict(model.named_parameters())
        for n, p in named.items():
            p.grad = sum(g[n] for g in grads) / WORLD
        before = {n: p.detach().clone() for n, p in named.items()}
        want[str(step)] = {
            "loss": sum(losses) / WORLD,
            "act_mean": float(torch.cat(acts).double().mean()),
            "params": {n: {"param": whole(named[n]), "grad": whole(named[n].grad)} for n in PARAMS},
        }
        opt.step()
        opt.zero_grad()
        want[str(step)]["update_ratio"] = {
            n: float((named[n].detach() - before[n]).double().norm() / before[n].double().norm()) for n in PARAMS
        }
    return want


def main(out: str) -> None:
    mp.spawn(rank_main, args=(out,), nprocs=WORLD, join=True)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected(), f)
    with open(os.path.join(out, "views.json"), "w") as f:
        json.dump(VIEWS, f)


if __name__ == "__main__":
    main(sys.argv[1])
