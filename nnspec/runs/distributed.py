"""The recorder under ``torch.distributed``: reduce small statistics across
ranks, never gather tensors; rank 0 writes the run.

Parameters and their gradients are the same on every DDP rank after the
backward pass, so rank 0 records them alone. Activations differ per rank
(each rank sees its own data): their partials (``partials.partial``) are
gathered, a few numbers per layer, and merged exactly.
"""

from __future__ import annotations

import torch

from nnspec.backends import backend_for
from nnspec.errors import SpecError
from nnspec.numerics.small import widen
from nnspec.runs import messages


class Ranks:
    """This process's place in the default process group."""

    def __init__(self):
        import torch.distributed as dist

        self.dist = dist
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.backend = dist.get_backend()

    @staticmethod
    def detect() -> Ranks | None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return Ranks()
        return None

    @property
    def writes(self) -> bool:
        return self.rank == 0

    def _device(self, t: torch.Tensor) -> torch.device:
        return t.device if self.backend == "nccl" else torch.device("cpu")

    def agree_range(self, t: torch.Tensor) -> tuple[float, float]:
        """The finite min..max over every rank's tensor (one small all_reduce),
        widened by ±0.5 when it is a single value, as ``reduce.histogram`` does."""
        t = t.detach().float().reshape(-1)
        big = torch.finfo(torch.float64).max
        ok = torch.isfinite(t)
        lo = torch.where(ok, t.double(), big).amin() if t.numel() else torch.tensor(big)
        hi = torch.where(ok, t.double(), -big).amax() if t.numel() else torch.tensor(-big)
        both = torch.stack([-lo, hi]).to(self._device(t))
        self.dist.all_reduce(both, op=self.dist.ReduceOp.MAX)
        lo, hi = -float(both[0]), float(both[1])
        if hi < lo:  # no finite value on any rank
            lo = hi = 0.0
        return widen(lo, hi)

    def gather(self, parts: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Every rank's vectors, in one all_gather: result[i] = [rank 0's i-th, rank 1's i-th, …]."""
        if not parts:
            return []
        sizes = [p.numel() for p in parts]
        device = self._device(parts[0])
        flat = torch.cat([p.reshape(-1).double().to(device) for p in parts])
        lengths = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(self.world)]
        self.dist.all_gather(lengths, torch.tensor([flat.numel()], device=device))
        if len({int(n) for n in lengths}) > 1:
            raise SpecError(messages.ranks_disagree([int(n) for n in lengths]))
        everyone = [torch.empty_like(flat) for _ in range(self.world)]
        self.dist.all_gather(everyone, flat)
        split = [list(t.cpu().split(sizes)) for t in everyone]
        return [[split[r][i] for r in range(self.world)] for i in range(len(parts))]


def unwrap(model):
    """The user's module inside DDP (names in the spec are the user's names)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def is_sharded(model) -> bool:
    """FSDP (either API): each rank holds a shard of every parameter."""
    names = {m.type for m in backend_for(model).modules()}
    return bool(names & {"FullyShardedDataParallel"}) or any(n.startswith("FSDP") for n in names)
