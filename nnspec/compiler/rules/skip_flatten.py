"""Drop a ``flatten`` whose values only feed a whole-tensor reduction.

``weights of conv1 | flatten | stats`` reduces the same values as
``weights of conv1 | stats``; without the flatten the reduction can move into
the capture (pushdown_reductions), so nothing is kept but the result. Which
reductions allow it: ``REDUCTIONS[name].skips_flatten``.
"""

from __future__ import annotations

from nnspec.compiler.plan import ViewPlan, with_captures
from nnspec.numerics.reductions import REDUCTIONS
from nnspec.query.ast import Step


def skip_flatten(vp: ViewPlan) -> ViewPlan:
    steps = list(vp.transforms)
    keep = [s for i, s in enumerate(steps) if not (s.name == "flatten" and _reduced_after(steps[i + 1 :]))]
    return vp if len(keep) == len(steps) else with_captures(vp, vp.captures, keep)


def _reduced_after(rest: list[Step]) -> bool:
    for s in rest:
        if s.name in ("abs", "flatten"):
            continue
        r = REDUCTIONS.get(s.name)
        return r is not None and r.skips_flatten and s.arg("dim") is None
    return False
