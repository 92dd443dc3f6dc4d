"""``expect:`` checks: a query that gives a value per layer (or per layer and
recorded step), compared with a number. Every value must pass; NaN fails.

    expect:
      - activations of * | dead_fraction < 0.5
      - weights of * | nan_count == 0
      - grads of *.weight over steps | norm > 1e-6
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

from nnspec.errors import (
    InternalError,
    NnspecError,
    SpecError,
    format_error,
)
from nnspec.execute import messages
from nnspec.execute.gather import gather
from nnspec.execute.transforms import run_transforms

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}
SHOWN = 6  # failing values listed per check


@dataclass
class CheckResult:
    text: str
    passed: bool = False
    values: list = field(default_factory=list)  # (layer, step or None, value)
    failures: list = field(default_factory=list)  # the values that did not pass
    error: str | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"ERROR {self.text}\n{_indent(self.error)}"
        if self.passed:
            vals = [v for _, _, v in self.values]
            span = f"{min(vals):.4g}" if min(vals) == max(vals) else f"{min(vals):.4g} … {max(vals):.4g}"
            return f"PASS  {self.text}  ({_count(self.values)}: {span})"
        shown = ", ".join(_value(r) for r in self.failures[:SHOWN])
        more = len(self.failures) - SHOWN
        return f"FAIL  {self.text}: {shown}" + (f" and {more} more" if more > 0 else "")


def _count(values: list) -> str:
    layers = len({layer for layer, _, _ in values})
    steps = len({step for _, step, _ in values if step is not None})
    return f"{layers} layer{'s' if layers != 1 else ''}" + (f" × {steps} steps" if steps else "")


def _value(row) -> str:
    layer, step, value = row
    return f"{layer}{f' @ step {step}' if step is not None else ''} = {value:.4g}"


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())


def evaluate(checks, captured, ctx, failure: NnspecError | None = None) -> list[CheckResult]:
    """Each check's values and verdict; a check that cannot run reports its error."""
    results = []
    for vp in checks:
        res = CheckResult(vp.view.query)
        try:
            if vp.error is not None:
                raise vp.error
            if failure is not None and any(c.kind != "param" for c in vp.captures):
                raise failure
            res.values = _values(vp, captured, ctx)
            op, bound = vp.query.compare
            res.failures = [r for r in res.values if not _passes(r[2], op, bound)]
            res.passed = not res.failures
        except NnspecError as e:
            res.error = format_error(e)
        except Exception as e:  # our bug: this check fails, the others still run
            res.error = format_error(InternalError(messages.internal_view_error(f"{type(e).__name__}: {e}")))
        results.append(res)
    return results


def _values(vp, captured, ctx) -> list:
    data = run_transforms(gather(vp, captured, ctx), vp.transforms)
    if data.kind == "scalar":
        return [(r.layer, None, float(r.value)) for r in data.table.itertuples()]
    if data.kind == "series":
        several = data.table["run"].nunique() > 1
        return [
            (f"{r.run}/{r.layer}" if several else r.layer, int(r.step), float(r.value)) for r in data.table.itertuples()
        ]
    kind = {"stats": "a stats table", "histogram": "histograms", "tensors": "whole tensors"}.get(data.kind, data.kind)
    raise SpecError(messages.check_needs_values(kind), vp.query.span, messages.check_needs_values_hint())


def _passes(value: float, op: str, bound) -> bool:
    return not math.isnan(value) and OPS[op](value, bound)
