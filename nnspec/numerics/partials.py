"""Per-step reductions of recorded captures, in a form that adds up across ranks.

    tensor ──partial()──▶ a small float64 vector, on the tensor's device (in the hook)
           ──combine()──▶ one vector from every rank's   (DDP: counts, sums, min, max
                                                          and histogram bins exact)
           ──finish()───▶ the record a run stores: STATS_FIELDS, a histogram, or one value

Each reduction's own pieces are on its record in ``reductions.REDUCTIONS``
(with the layout of the records); these functions are what the recorder calls.
"""

from __future__ import annotations

import torch

from nnspec.numerics.reduce import Scratch
from nnspec.numerics.reductions import HISTOGRAM_HEAD, REDUCTIONS, AgreeRange, Params, Reduction


def _combining(r: Params) -> Reduction:
    red = REDUCTIONS[r.op]
    if red.partial is None:
        raise ValueError(f"reduction {r.op!r} is not recorded from one tensor at a time")
    return red


def partial(
    r: Params, t: torch.Tensor, scratch: Scratch | None = None, agree_range: AgreeRange | None = None
) -> torch.Tensor:
    """The reduction of one rank's tensor, as a vector ``combine`` can merge.

    ``agree_range`` (DDP): a function from a tensor to the (lo, hi) every rank
    uses for an automatic histogram, so that bins line up across ranks.
    """
    fn = _combining(r).partial
    assert fn is not None
    if r.abs:
        t = t.detach().abs()
    with torch.no_grad():  # not detached: the Scratch knows a tensor by the object that holds it
        return fn(t, r, scratch, agree_range)


def combine(r: Params, parts: list[torch.Tensor]) -> torch.Tensor:
    """Every rank's partial as one, as if the ranks' tensors were concatenated."""
    if len(parts) == 1:
        return parts[0]
    fn = _combining(r).combine
    assert fn is not None
    return fn(torch.stack([x.double().cpu() for x in parts]))


def finish(r: Params, part: torch.Tensor) -> torch.Tensor:
    """The record to store, from a (combined) partial."""
    return REDUCTIONS[r.op].finish(part)


__all__ = ["HISTOGRAM_HEAD", "combine", "finish", "partial"]
