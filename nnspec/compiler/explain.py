"""EXPLAIN for a Plan: passes, hooked modules, what each capture keeps, bytes."""

from __future__ import annotations

from collections.abc import Sequence

from nnspec.compiler.plan import BACKWARD_KINDS, Capture, Plan, Shapes
from nnspec.numerics.batched import BATCHED
from nnspec.numerics.reductions import REDUCTIONS

_ELEMENT = 4  # bytes of a float32 element, what a kept tensor usually is


def kept_shape(c: Capture, shapes: Shapes | None) -> tuple[int, ...] | None:
    """Shape of what a capture keeps, or None where unknown before a run."""
    shape = (shapes or {}).get((c.kind, c.target))
    if shape is None:
        return None
    if c.index is None:
        return tuple(shape)
    import torch

    try:
        return tuple(torch.empty(shape, device="meta")[c.index.as_torch()].shape)
    except (IndexError, TypeError):
        return None


def kept_bytes(c: Capture, shapes: Shapes | None) -> int | None:
    r = c.reduce
    if r is not None:
        if r.op == "stats":
            return 9 * 8
        if r.op == "histogram":
            assert r.bins is not None, r  # pushdown_reductions fills in a histogram's bins
            return r.bins * 8 + 5 * 8
        if r.op == "dead_fraction" and c.kind != "param":  # one flag per unit until the step is reduced
            shape = kept_shape(c, shapes)
            return None if shape is None else max(1, _numel(shape[1:]))
        return 8
    shape = kept_shape(c, shapes)
    if shape is None:
        return None
    n = 1
    for s in shape:
        n *= s
    return n * _ELEMENT


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _human(n: int | None) -> str:
    if n is None:
        return "? (shape known after the forward pass)"
    size: float = n
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def explain(plan: Plan, shapes: Shapes | None = None) -> str:
    ran = [
        "forward" if plan.forward else None,
        "backward" if plan.backward else None,
    ]
    passes = [p for p in ran if p] or ["none (parameters only)"]
    lines = [f"PLAN {plan.spec.path or '<spec>'}"]
    if plan.backend:
        lines.append(f"backend: {plan.backend}")
    t = plan.spec.train
    if t is not None:
        opt = ", ".join(f"{k}={v}" for k, v in t.optimizer.items())
        batch = t.batch or "all rows"
        lines.append(f"train: {t.steps} steps before the views (batch {batch}, seed {t.seed}, {opt})")
    lines.append(f"passes: {' + '.join(passes)}")
    if plan.backward:
        lines.append(f"loss: {plan.spec.loss or '(none)'}")
    lines.append(f"hooked modules ({len(plan.hooked)}): {', '.join(plan.hooked) or 'none'}")
    lines.append("captures:")
    total = 0
    unknown = False
    for c in plan.captures:
        if c.kind == "trace":
            lines.append("  trace       every module and functional op  (graph, summary, function *) [during forward]")
            continue
        b = kept_bytes(c, shapes)
        total += b or 0
        unknown |= b is None
        kept = "keep attention weights (batch, head, query, key)" if c.kind == "attention" else "keep tensor"
        what = f"reduce {c.reduce}" if c.reduce else kept + (f" {c.index}" if c.index else "")
        shape = kept_shape(c, shapes) if c.reduce is None else None
        when = "after backward" if c.kind in BACKWARD_KINDS else ("no pass" if c.kind == "param" else "in hook")
        if c.kind == "input":
            when = "in hook, before the module runs"
        target = (c.target or "input") + (f" @{c.output}" if c.output else "")
        shape_txt = f" {shape}" if shape else ""
        lines.append(f"  {c.kind:<11} {target:<28} {what}{shape_txt} [{when}] ~{_human(b)}")
    lines.append(f"bytes kept: ~{_human(total)}" + (" + unknown" if unknown else ""))
    lines += _deferred(plan, shapes)
    if plan.recorded:
        lines += _recorded(plan, shapes)
    lines.append("views:")
    for i, vp in enumerate(plan.views, start=1):
        if vp.error is not None:
            lines.append(f"  {i}. {vp.view.title}: ERROR {vp.error.message}")
            continue
        steps = [str(s) for s in vp.transforms] + [str(vp.mark) if vp.mark else "(natural mark)"]
        lines.append(f"  {i}. {vp.view.title}: {len(vp.layers)} layer(s) | {' | '.join(steps)}")
    if plan.checks:
        lines.append("checks (expect:):")
        for i, vp in enumerate(plan.checks, start=1):
            if vp.error is not None:
                lines.append(f"  {i}. {vp.view.query}: ERROR {vp.error.message}")
            else:
                lines.append(f"  {i}. {vp.view.query}: {len(vp.layers)} layer(s)")
    return "\n".join(lines)


_DEFERRED_KINDS = ("activation", "input", "output_grad")  # reduced from a hook during a pass


def _deferred(plan: Plan, shapes: Shapes | None) -> list[str]:
    """What the GPU path holds during a pass: it copies each tensor it reduces with stats,
    histogram or norm and reduces them together after the pass (``numerics/batched.py``)."""
    held = [c for c in plan.captures if c.kind in _DEFERRED_KINDS and c.reduce is not None and c.reduce.op in BATCHED]
    if not held:
        return []
    sizes = [kept_shape(c, shapes) for c in held]
    total = sum(_numel(s) * _ELEMENT for s in sizes if s is not None)
    unknown = " + unknown" if any(s is None for s in sizes) else ""
    return [
        f"  on a GPU (or NNSPEC_REDUCE=deferred) the pass also holds a copy of the {len(held)} tensor(s) reduced"
        f" by stats, histogram or norm until it ends: ~{_human(total)}{unknown} at most"
    ]


_WHEN_RECORDED = {
    "activation": "in hook, recorded steps only",
    "input": "in hook, recorded steps only",
    "output_grad": "tensor hook, recorded steps only",
    "grad": "reads .grad after backward",
    "param": "at the step",
    "update": "‖Δw‖/‖w‖ over the optimizer step",
}


def _recorded(plan: Plan, shapes: Shapes | None) -> list[str]:
    every = plan.spec.train.record_every if plan.spec.train else None
    when = f"every {every} steps" if every else "at each recorded step"
    lines = [f"recorded {when} (views over steps; written to the run, one SQLite transaction per step):"]
    for c in plan.recorded:
        across = _ACROSS_RANKS.get(c.kind) or (REDUCTIONS[c.reduce.op].across if c.reduce else "")
        across = f"; ranks: {across}" if across else ""
        lines.append(f"  {c.kind:<11} {c.target or 'input':<28} reduce {c.reduce} [{_WHEN_RECORDED[c.kind]}{across}]")
    lines += _DISTRIBUTED
    return lines


_ACROSS_RANKS = {"update": "squared norms of Δw and w add up"}  # not a reduction's combine: the recorder's own

# A plan is compiled before training and knows no process group: this says how either kind of run merges.
_DISTRIBUTED = [
    "  under torch.distributed: each rank reduces its own part, one all_gather of the partials merges them",
    "  exactly (tensors are never gathered); activations: each rank's data; params, grads: rank 0's under DDP",
    "  (the same on every rank), every rank's local shard under FSDP2 (fully_shard); rank 0 writes the run",
]
