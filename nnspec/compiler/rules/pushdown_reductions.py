"""Move a leading ``[abs |] <reduction>`` that a capture hook can run (see
``REDUCTIONS[name].pushdown``: stats, histogram, mean, max, min, std, norm,
dead_fraction, nan_count, inf_count) into the capture, so the hook keeps a
few numbers instead of the tensor. With ``dim=`` the reduction gives a
tensor, and stays a transform.

    activations of * | abs | mean | bar
    ⇒ capture activation(x) reduce(abs | mean), transforms: (), mark: bar
"""

from __future__ import annotations

from dataclasses import replace

from nnspec.compiler.plan import Reduce, ViewPlan, with_captures
from nnspec.numerics.reductions import REDUCTIONS
from nnspec.query.catalog import SOURCES, TRANSFORMS


def pushdown_reductions(vp: ViewPlan) -> ViewPlan:
    if SOURCES[vp.query.source.kind].yields != "tensors":
        return vp  # a graph's colour query has its own captures, already rewritten
    steps = list(vp.transforms)
    take_abs = bool(steps) and steps[0].name == "abs"
    head = steps[1] if take_abs and len(steps) > 1 else (steps[0] if steps and not take_abs else None)
    if head is None or head.name not in REDUCTIONS or head.arg("dim") is not None:
        return vp
    if not REDUCTIONS[head.name].pushdown:
        return vp
    args = TRANSFORMS[head.name].bind(head.args)  # a histogram's bins (the default filled in) and range
    bins, rng = args.get("bins"), args.get("range")
    reduce = Reduce(
        head.name,
        abs=take_abs,
        bins=bins if isinstance(bins, int) else None,
        range=tuple(rng) if isinstance(rng, tuple) else None,
    )
    rest = steps[(2 if take_abs else 1) :]
    captures = [replace(c, reduce=reduce) for c in vp.captures]
    return with_captures(vp, captures, rest)
