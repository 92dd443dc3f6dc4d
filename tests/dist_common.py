"""What tests/ddp_worker.py and tests/fsdp_worker.py share: the global batch, the
model they start from, and a gloo process group on the CPU."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

from tests.fixtures.models import TinyMLP

WORLD, ROWS = 2, 8  # two ranks, 8 rows each


def data():
    """The global batch (WORLD × ROWS rows, iris-like 4 features, 3 classes), seeded."""
    g = torch.Generator().manual_seed(3)
    return torch.randn(WORLD * ROWS, 4, generator=g), torch.randint(0, 3, (WORLD * ROWS,), generator=g)


def rank_batch(rank: int):
    x, y = data()
    return x[rank * ROWS : (rank + 1) * ROWS], y[rank * ROWS : (rank + 1) * ROWS]


def fresh_model():
    torch.manual_seed(0)
    return TinyMLP()


@contextlib.contextmanager
def process_group(rank: int, out: str):
    # a rendezvous file, not a TCP port: no race for a free port on a busy machine
    init = "file://" + os.path.join(out, "rendezvous")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        yield
        dist.barrier()  # both ranks done before either tears gloo down (else an abort at exit)
    finally:
        dist.destroy_process_group()
