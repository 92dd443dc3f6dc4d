"""The recorder under ``torch.distributed``: reduce small statistics across
ranks, never gather tensors; rank 0 writes the run.

Parameters and their gradients are the same on every DDP rank after the
backward pass, so rank 0 records them alone. Activations differ per rank
(each rank sees its own data): their partials (``partials.partial``) are
gathered, a few numbers per layer, and merged exactly.

Under FSDP2 (``fully_shard``) every parameter and gradient is a DTensor
sharded along dim 0: each rank reduces its local shard (``to_local()``, no
padding) into the same partials and they merge as activations' do, so the
ranks' shards count as the whole tensor, concatenated. Views that need the
elements' places (an index) are refused by ``shard_problem``.
"""

from __future__ import annotations

import torch

from nnspec.backends import backend_for
from nnspec.errors import SpecError
from nnspec.numerics import partials
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


_PARAM_KINDS = ("param", "grad", "update")


def shard_problem(model, plan, ranks: Ranks | None) -> SpecError | None:
    """Why a sharded ``model``'s parameter views cannot be recorded exactly, or None.

    Recorded exactly: FSDP2 (``fully_shard``) parameters, DTensors sharded on a
    one-dimensional mesh of every rank, under reductions whose partials combine
    (every reduction a run records; ``dead_fraction`` only under ``Shard(0)``).
    Refused: FSDP1 (flat parameters), other placements (HSDP's replicas would
    count twice), and an index (a rank does not hold the rows it names; the
    whole tensor is never gathered)."""
    from torch.distributed.tensor import DTensor, Shard

    be = backend_for(model)
    if "FullyShardedDataParallel" in {m.type for m in be.modules()}:
        return SpecError(messages.fsdp_params())
    world = ranks.world if ranks is not None else 1
    recorded = {c.key for c in plan.recorded}
    for vp in plan.views:
        for c in vp.captures if vp.error is None else ():
            if c.kind not in _PARAM_KINDS or c.key not in recorded:
                continue
            span = vp.view.query_span or vp.view.span
            p = be.tensor(c.target)
            if c.index is not None:
                return SpecError(messages.fsdp_index(c.target, str(c.index)), span, messages.fsdp_hint())
            if not isinstance(p, DTensor):
                return SpecError(messages.fsdp_not_dtensor(c.target), span, messages.fsdp_hint())
            place = p.placements[0]
            # dead_fraction's units are the positions after dim 0: the same on every rank only under Shard(0)
            units = c.reduce is None or c.reduce.op != "dead_fraction" or getattr(place, "dim", None) == 0
            if p.device_mesh.ndim != 1 or p.device_mesh.size() != world or not isinstance(place, Shard) or not units:
                return SpecError(messages.fsdp_placement(c.target, str(p.placements)), span, messages.fsdp_hint())
    return None


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (FSDP2's, without padding); any other tensor as it is."""
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def shard_partial(ranks: Ranks | None, c, t: torch.Tensor, scratch) -> torch.Tensor:
    """The partial of this rank's shard of ``t``; an automatic histogram range is agreed
    across ranks first, so that the shards' bins line up."""
    return partials.partial(c.reduce, local(t), scratch, ranks.agree_range if ranks is not None else None)


def merge_shards(ranks: Ranks | None, parts: list) -> dict:
    """Records from ``(capture, this rank's partial)`` pairs: every rank's partials in
    one all_gather, combined as if the shards were one tensor (``partials.combine``)."""
    if not parts:
        return {}
    mine = [p for _, p in parts]
    everyone = ranks.gather(mine) if ranks is not None else [[p] for p in mine]
    return {
        c.key: partials.finish(c.reduce, partials.combine(c.reduce, ps)).cpu() for (c, _), ps in zip(parts, everyone)
    }


def shard_update_ratios(ranks: Ranks | None, pairs: list) -> dict:
    """‖Δw‖/‖w‖ from ``(capture, shard before, shard now)``: the squared norms of every
    rank's shards add up (one all_gather of two numbers a parameter)."""
    if not pairs:
        return {}
    mine = [
        torch.stack([(now - before).double().pow(2).sum(), before.double().pow(2).sum()]) for _, before, now in pairs
    ]
    everyone = ranks.gather(mine) if ranks is not None else [[p] for p in mine]
    out = {}
    for (c, _, _), ps in zip(pairs, everyone):
        delta, weight = torch.stack(ps).sum(dim=0)
        out[c.key] = (delta.sqrt() / weight.sqrt()).reshape(1).cpu()
    return out
