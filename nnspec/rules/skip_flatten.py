"""Drop a ``flatten`` whose values only feed a whole-tensor reduction.

``weights of conv1 | flatten | stats`` reduces the same values as
``weights of conv1 | stats``; without the flatten the reduction can move into
the capture (pushdown_reductions), so nothing is kept but the result.
"""

from __future__ import annotations

from ..compiler import ViewPlan, with_captures

_REDUCTIONS = ("stats", "histogram", "mean", "max", "min", "std", "norm")


def skip_flatten(vp: ViewPlan) -> ViewPlan:
    steps = list(vp.transforms)
    keep = [s for i, s in enumerate(steps) if not (s.name == "flatten" and _reduced_after(steps[i + 1 :]))]
    return vp if len(keep) == len(steps) else with_captures(vp, vp.captures, keep)


def _reduced_after(rest) -> bool:
    for s in rest:
        if s.name in ("abs", "flatten"):
            continue
        return s.name in _REDUCTIONS and s.arg("dim") is None
    return False
