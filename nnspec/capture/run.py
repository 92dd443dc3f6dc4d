"""Stage 4a: run the passes a Plan asks for and collect its captures.

    1. parameters (no pass)
    2. forward pass with hooks on the planned modules only
    3. at most one backward pass: torch.autograd.grad over exactly the
       tensors that views need, so no ``.grad`` of the user's is touched
    4. everything moves to the CPU in one go at the end

The model is a guest: hooks, train/eval flags and requires_grad are restored
in ``finally`` whatever happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nnspec.backends import backend_for
from nnspec.backends.base import Backend, PassFailed
from nnspec.capture import messages
from nnspec.compiler.plan import BACKWARD_KINDS, HOOK_KINDS, Capture, Plan
from nnspec.errors import ModelError, SpecError
from nnspec.inputs import messages as inputs_messages
from nnspec.numerics import reduce


@dataclass
class Captured:
    scratch: reduce.Scratch = field(default_factory=reduce.Scratch, repr=False)
    values: dict = field(default_factory=dict)  # Capture.key -> tensor or reduction (CPU)
    errors: dict = field(default_factory=dict)  # Capture.key -> message
    notes: dict = field(default_factory=dict)  # Capture.key -> [note]
    shapes: dict = field(default_factory=dict)  # (kind, target) -> shape before indexing
    dtypes: dict = field(default_factory=dict)  # (kind, target) -> dtype


def select(c: Capture, t: torch.Tensor) -> torch.Tensor:
    """The capture's index applied to ``t`` (``t`` itself without one)."""
    if c.index is None:
        return t
    try:
        return t[c.index.as_torch()]
    except IndexError:
        raise _IndexProblem(messages.index_out_of_range(c.target or "input", t.shape, str(c.index))) from None


def apply(c: Capture, t: torch.Tensor, scratch: reduce.Scratch | None = None):
    """Index, then reduce or keep a copy, on the tensor's own device."""
    t = select(c, t).detach()
    r = c.reduce
    if r is None:
        return t.clone()
    if r.abs:
        t = t.abs()
    if r.op == "stats":
        return reduce.stats(t, scratch)
    if r.op == "histogram":
        return reduce.histogram(t, r.bins, r.range, scratch)
    return reduce.scalar(t, r.op)


class _IndexProblem(Exception):
    pass


def first_tensor(be: Backend, value):
    """The first tensor of a module's output or arguments, and how many there are."""
    ts = be.tensors(value)
    return (ts[0] if ts else None), len(ts)


def run(plan: Plan, model, x=None, y=None, loss_fn=None) -> Captured:
    """The plan's captures from ``model`` (a model or its backend)."""
    be = backend_for(model)
    out = Captured()
    grads_wanted = tuple(c.target for c in plan.captures if c.kind == "grad")
    with be.guest(grads_wanted):
        _params(plan, be, out)  # 1. parameters
        if plan.forward:
            _passes(plan, be, x, y, loss_fn, out)  # 2. and 3.
    out.values = _to_cpu(out.values)  # 4.
    out.scratch = None
    return out


def _params(plan: Plan, be: Backend, out: Captured) -> None:
    for c in plan.captures:
        if c.kind == "param":
            _store(c, be.tensor(c.target), out)


def _store(c: Capture, t, out: Captured) -> None:
    out.shapes.setdefault((c.kind, c.target), tuple(t.shape))
    out.dtypes.setdefault((c.kind, c.target), t.dtype)
    try:
        out.values[c.key] = apply(c, t, out.scratch)
    except _IndexProblem as e:
        out.errors[c.key] = str(e)


def _passes(plan: Plan, be: Backend, x, y, loss_fn, out: Captured) -> None:
    by_module: dict[str, list[Capture]] = {}
    for c in plan.captures:
        if c.kind in HOOK_KINDS:
            by_module.setdefault(c.target, []).append(c)  # trace and attention have their own machinery
    x = be.to_device(x)
    y = be.to_device(y)
    if any(c.kind == "input_grad" for c in plan.captures):
        if not torch.is_floating_point(x):
            raise SpecError(messages.no_input_grad(str(x.dtype)))
        x = x.detach().clone().requires_grad_(True)
    traces = [c for c in plan.captures if c.kind == "trace"]
    attn = [c for c in plan.captures if c.kind == "attention"]
    outputs: dict[str, torch.Tensor] = {}  # module outputs whose gradient a view needs
    seen: set[str] = set()

    def on_call(path: str, caps: list[Capture]):
        def record(args, kwargs, output):
            if path in seen:
                return  # a module called twice: the first call is what views show
            seen.add(path)
            t, count = first_tensor(be, output)
            if t is None:
                for c in caps:
                    if c.kind != "input":
                        out.errors[c.key] = inputs_messages.no_tensor_output(path)
            for c in caps:
                if c.kind == "input":
                    ti, _ = first_tensor(be, args)
                    if ti is None:
                        out.errors[c.key] = inputs_messages.no_tensor_output(path)
                    else:
                        _store(c, ti, out)
                elif t is not None and c.kind == "activation":
                    if count > 1:
                        out.notes.setdefault(c.key, []).append(messages.note_first_output(path, count))
                    _store(c, t, out)
                elif t is not None and c.kind == "output_grad":
                    if t.requires_grad:
                        outputs[path] = t
                    out.shapes.setdefault((c.kind, path), tuple(t.shape))

        return record

    calls = {path: on_call(path, caps) for path, caps in by_module.items()}
    try:
        done = be.forward(x, calls, grad=plan.backward, trace=bool(traces), attention=tuple(c.target for c in attn))
    except PassFailed as e:
        raise ModelError(messages.forward_failed(str(e), e.ran)) from e.error
    for caps in by_module.values():  # a module the forward pass did not call (a branch not taken)
        for c in caps:
            if c.kind != "output_grad" and c.key not in out.values and c.key not in out.errors:
                out.errors[c.key] = messages.module_not_called(c.target)
    for c in traces:
        out.values[c.key] = done.trace
    for c in attn:
        if c.target in done.attention:
            _store(c, done.attention[c.target], out)
        else:
            out.errors[c.key] = messages.attention_not_called(c.target)
    if plan.backward:
        _backward(plan, be, x, y, loss_fn, done.result, outputs, out)


def _backward(plan: Plan, be: Backend, x, y, loss_fn, result, outputs, out: Captured) -> None:
    if loss_fn is None:
        kind = next(c.kind for c in plan.captures if c.kind in BACKWARD_KINDS)
        raise SpecError(messages.needs_loss(kind + "s"), None, messages.needs_loss_hint())
    if loss_fn.needs_target and y is None:
        raise SpecError(
            messages.loss_needs_target(loss_fn.name),
            plan.spec.loss_span,
            messages.loss_needs_target_hint(),
        )
    loss = loss_fn(result, y)
    wanted: dict[tuple, torch.Tensor] = {}
    for c in plan.captures:
        if c.kind == "grad":
            wanted[("grad", c.target)] = be.tensor(c.target)
        elif c.kind == "output_grad" and c.target in outputs:
            wanted[("output_grad", c.target)] = outputs[c.target]
        elif c.kind == "input_grad":
            wanted[("input_grad", "")] = x
    try:
        got = be.backward(loss, wanted)
    except PassFailed as e:
        raise ModelError(messages.backward_failed(str(e))) from e.error
    for c in plan.captures:
        if c.kind not in BACKWARD_KINDS:
            continue
        g = got.get((c.kind, c.target))
        if g is None:
            out.errors[c.key] = messages.frozen_no_grad(c.target or "the input")
        else:
            _store(c, g, out)


def _to_cpu(values: dict) -> dict:
    def cpu(v):
        if isinstance(v, torch.Tensor):
            return v.cpu()
        if isinstance(v, dict):
            return {k: cpu(x) for k, x in v.items()}
        return v

    return {k: cpu(v) for k, v in values.items()}


def probe_shapes(model, x) -> dict:
    """Output and input shapes of every module from one no-grad forward (for EXPLAIN)."""
    return backend_for(model).shapes(x)
