"""Move a leading ``[abs |] stats | histogram | mean | max | min | std | norm``
(or ``dead_fraction``, ``nan_count``, ``inf_count``)
into the capture, so the hook keeps a few numbers instead of the tensor.

    activations of * | abs | mean | bar
    ⇒ capture activation(x) reduce(abs | mean), transforms: (), mark: bar
"""

from __future__ import annotations

from dataclasses import replace

from ..compiler import Reduce, ViewPlan, with_captures
from ..query import DEFAULT_BINS, TRANSFORMS

_OPS = ("stats", "histogram", "mean", "max", "min", "std", "norm", "dead_fraction", "nan_count", "inf_count")


def pushdown_reductions(vp: ViewPlan) -> ViewPlan:
    steps = list(vp.transforms)
    take_abs = bool(steps) and steps[0].name == "abs"
    head = steps[1] if take_abs and len(steps) > 1 else (steps[0] if steps and not take_abs else None)
    if head is None or head.name not in _OPS or head.arg("dim") is not None:
        return vp
    assert head.name in TRANSFORMS
    reduce = Reduce(
        head.name,
        abs=take_abs,
        bins=head.arg("bins", DEFAULT_BINS) if head.name == "histogram" else None,
        range=tuple(head.arg("range")) if head.name == "histogram" and head.arg("range") else None,
    )
    rest = steps[(2 if take_abs else 1) :]
    captures = [replace(c, reduce=reduce) for c in vp.captures]
    return with_captures(vp, captures, rest)
