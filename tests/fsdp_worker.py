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
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnspec
from nnspec.errors import SpecError
from nnspec.numerics import reduce
from tests.fixtures.models import TinyMLP
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
STEPS, WORLD, ROWS, LR = 4, 2, 8, 0.5
PARAMS = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")  # fc2's shards: 2 rows and 1 (uneven)


def data():
    g = torch.Generator().manual_seed(3)
    return torch.randn(WORLD * ROWS, 4, generator=g), torch.randint(0, 3, (WORLD * ROWS,), generator=g)


def fresh_model():
    torch.manual_seed(0)
    return TinyMLP()


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

    init = "file://" + os.path.join(out, "rendezvous")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        x, y = data()
        x, y = x[rank * ROWS : (rank + 1) * ROWS], y[rank * ROWS : (rank + 1) * ROWS]
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
        dist.barrier()  # both ranks done before either tears gloo down (else an abort at exit)
    finally:
        dist.destroy_process_group()


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
