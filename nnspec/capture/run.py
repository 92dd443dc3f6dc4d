"""Stage 4a: run the passes a Plan asks for and collect its captures.

    1. parameters (no pass)
    2. forward pass with hooks on the planned modules only
    3. at most one backward pass: torch.autograd.grad over exactly the
       tensors that views need, so no ``.grad`` of the user's is touched
    4. everything moves to the CPU in one go at the end

On a GPU (``batched.mode()``) the hooks only keep a copy of each tensor whose
stats, histogram or norm a view needs, and ``batched.Deferred.flush`` reduces
them all in a few large kernels after the passes: a handful of kernels per
hooked module cost more than the forward pass itself there. On the CPU the
reductions run in the hook, where ``reduce``'s tuned single-thread path wins.

The model is a guest: hooks, train/eval flags and requires_grad are restored
in ``finally`` whatever happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nnspec.backends import backend_for
from nnspec.backends.base import Backend, Call, PassFailed
from nnspec.backends.outputs import available, choose, is_tensor
from nnspec.capture import messages
from nnspec.compiler.plan import BACKWARD_KINDS, CAPTURE_KINDS, HOOK_KINDS, Capture, Plan
from nnspec.errors import ModelError, NnspecError, SpecError
from nnspec.inputs import messages as inputs_messages
from nnspec.numerics import batched, reduce


@dataclass
class Captured:
    scratch: reduce.Scratch = field(default_factory=reduce.Scratch, repr=False)
    values: dict = field(default_factory=dict)  # Capture.key -> tensor or reduction (CPU)
    errors: dict = field(default_factory=dict)  # Capture.key -> message
    notes: dict = field(default_factory=dict)  # Capture.key -> [note]
    shapes: dict = field(default_factory=dict)  # (kind, target) -> shape before indexing
    dtypes: dict = field(default_factory=dict)  # (kind, target) -> dtype
    deferred: batched.Deferred | None = field(default=None, repr=False)  # kept until after the passes
    how: str = field(default="in-hook", repr=False)  # batched.mode() of this run


def stats_first(c: Capture) -> bool:
    """Sort key: histograms after the other reductions, so that one reuses the min and max
    that ``stats`` of the same tensor leaves in the Scratch (``reduce.ENDS``)."""
    return c.reduce is not None and c.reduce.op == "histogram"


def select(c: Capture, t: torch.Tensor) -> torch.Tensor:
    """The capture's index applied to ``t`` (``t`` itself without one)."""
    if c.index is None:
        return t
    try:  # torch says IndexError, ValueError (steps), RuntimeError or OverflowError: all the index's fault
        out = t[c.index.as_torch()]
    except (IndexError, ValueError, RuntimeError, OverflowError):
        out = None
    if out is None or out.numel() == 0:  # an index that selects nothing is an index problem too
        raise _IndexProblem(messages.index_out_of_range(c.target or "input", t.shape, str(c.index)))
    return out


Later = tuple[batched.Deferred, str]  # where deferred reductions are kept, and batched.mode()


def apply(c: Capture, t: torch.Tensor, scratch: reduce.Scratch | None = None, later: Later | None = None):
    """Index, then reduce or keep a copy, on the tensor's own device. A reduction of
    a tensor this run already reduced the same way (passed on by an Identity, a
    Dropout in eval mode) is the one made then (``scratch.recall``). With ``later``
    (a Deferred and its mode) a reduction it takes is a ``batched.Pending``."""
    r = c.reduce
    with torch.no_grad():  # not detach(): the Scratch knows a tensor by the object that holds it
        if r is None or scratch is None:
            return _reduced(c, select(c, t), scratch, later)
        what = ("apply", str(c.index), r.op, r.abs, r.bins, r.range)
        done = scratch.recall(t, what)
        if done is not None:
            return done
        value = _reduced(c, select(c, t), scratch, later)
    scratch.remember(t, what, value)
    return value


def _reduced(c: Capture, t: torch.Tensor, scratch: reduce.Scratch | None, later: Later | None = None):
    r = c.reduce
    if r is None:
        return t.clone()
    if later is not None and batched.defers(t, r.op, later[1]):
        return later[0].keep(t, r.op, r.bins, r.range, r.abs)
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


def chosen(value, name: str | None):
    """The tensor a capture shows of a module's output (``@name`` picks a field, key or
    tuple element), what it goes by, and the names of all its tensors."""
    t, label = choose(value, name)
    return t, label, available(value) if not is_tensor(value) else []


def arguments(args: tuple, kwargs: dict) -> dict:
    """A module's arguments by name: ``"0"``, ``"1"``… for positional ones, then keywords."""
    return {str(i): a for i, a in enumerate(args)} | dict(kwargs)


def run(plan: Plan, model, batch=None, loss_fn=None) -> Captured:
    """The plan's captures from ``model`` (a model or its backend) called as ``batch.call``.
    A pass that fails fails the captures that need it, with the reason (``errors``):
    parameters are still read, a forward pass still serves its views when the loss or
    the backward pass fails."""
    be = backend_for(model)
    out = Captured(deferred=batched.Deferred(), how=batched.mode())
    grads_wanted = tuple(c.target for c in plan.captures if c.kind == "grad")
    with be.guest(grads_wanted):
        _params(plan, be, out)  # 1. parameters
        if plan.forward and batch is not None:
            _passes(plan, be, batch, loss_fn, out)  # 2. and 3.
    _flush(out)
    out.values = _to_cpu(out.values)  # 4.
    out.scratch = None
    return out


def _flush(out: Captured) -> None:
    """The deferred reductions, made now, in place of their Pending values."""
    if out.deferred is None:
        return
    out.deferred.flush()
    out.values = {k: batched.resolved(v) for k, v in out.values.items()}
    out.deferred = None


def _params(plan: Plan, be: Backend, out: Captured) -> None:
    for c in plan.captures:
        if c.kind == "param":
            _store(c, be.tensor(c.target), out)


def _store(c: Capture, t, out: Captured) -> None:
    out.shapes.setdefault((c.kind, c.target), tuple(t.shape))
    out.dtypes.setdefault((c.kind, c.target), t.dtype)
    try:
        later = (out.deferred, out.how) if out.deferred is not None else None
        out.values[c.key] = apply(c, t, out.scratch, later)
    except _IndexProblem as e:
        out.errors[c.key] = str(e)


def _fail(captures, kinds, error, out: Captured) -> None:
    """``error`` for every capture of ``kinds`` that has no value or error yet."""
    for c in captures:
        if c.kind in kinds and c.key not in out.values and c.key not in out.errors:
            out.errors[c.key] = error


def _gradient_input(call: Call):
    """The argument ``input_grads`` are taken of: the first floating-point tensor, positional first."""
    for name, v in call.values():
        if isinstance(v, torch.Tensor) and torch.is_floating_point(v):
            return name, v
    return None, None


def _with_grad(call: Call, name: str):
    """The call with argument ``name`` replaced by a copy that requires grad."""
    fresh = {n: (v.detach().clone().requires_grad_(True) if n == name else v) for n, v in call.values()}
    return Call(tuple(fresh[str(i)] for i in range(len(call.args))), {k: fresh[k] for k in call.kwargs})


def _passes(plan: Plan, be: Backend, batch, loss_fn, out: Captured) -> None:
    by_module: dict[str, list[Capture]] = {}
    for c in plan.captures:
        if c.kind in HOOK_KINDS:
            by_module.setdefault(c.target, []).append(c)  # trace and attention have their own machinery
    call = be.to_device(batch.call)
    y = be.to_device(batch.y)
    forward_kinds = tuple(k for k in CAPTURE_KINDS if k not in ("param", "update"))
    x = None
    if any(c.kind == "input_grad" for c in plan.captures):
        name, x = _gradient_input(call)
        if x is None:
            given = ", ".join(f"{n} {str(getattr(v, 'dtype', type(v).__name__))}" for n, v in call.values())
            _fail(plan.captures, ("input_grad",), SpecError(messages.no_input_grad(given), None,
                                                            messages.no_input_grad_hint()), out)  # fmt: skip
        else:
            call = _with_grad(call, name)
            x = dict(call.values())[name]
    traces = [c for c in plan.captures if c.kind == "trace"]
    attn = [c for c in plan.captures if c.kind == "attention"]
    outputs: dict[tuple[str, str | None], torch.Tensor] = {}  # module outputs whose gradient a view needs
    seen: set[str] = set()
    entered: set[str] = set()
    grads = plan.backward  # autograd on for this pass whatever the caller's mode (torch.no_grad())

    # A hook runs once per hooked module per pass, against forward passes of a few ms on a
    # GPU: what can be worked out once (a capture's key, whether it may be kept for a
    # batched reduction) is, here; a module's plain tensor output skips ``_part``.
    deferred, how = out.deferred, out.how
    shapes, dtypes, values = out.shapes, out.dtypes, out.values
    on_device: dict[torch.device, bool] = {}  # device -> batched.defers' answer there

    def fast(c: Capture) -> tuple | None:
        """``Deferred.keep_once``'s reduction arguments for a capture it may take, or None."""
        r = c.reduce
        if deferred is None or how == "in-hook" or c.index is not None or r is None or r.op not in batched.BATCHED:
            return None
        return r.op, r.bins, r.range, r.abs

    def before(path: str, caps: list[Capture]):
        def record(args, kwargs):
            if path in entered:
                return  # a module called twice: the first call is what views show
            entered.add(path)
            named = arguments(args, kwargs)
            for c in caps:  # read before the module runs: an in-place module overwrites its input
                ti = _part(path, c, named, "argument", out)
                if ti is not None:
                    _store(c, ti, out)

        return record

    def after(path: str, caps: list[Capture]):
        todo = [
            (c, c.kind == "activation", c.output is None, c.key, (c.kind, path), fast(c))
            for c in sorted(caps, key=stats_first)  # a histogram then reuses the stats' min and max
        ]

        def record(args, kwargs, output):
            if path in seen:
                return None  # a module called twice: the first call is what views show
            seen.add(path)
            replaced = output
            plain = isinstance(output, torch.Tensor)
            for c, activation, main, key, where, keep in todo:
                if plain and main:
                    t = output  # what _part picks of a lone tensor, with no note
                else:
                    t = _part(path, c, output, "output", out)
                    if t is None:
                        continue
                if activation:
                    if keep is None:
                        _store(c, t, out)
                        continue
                    ok = on_device.get(t.device)
                    if ok is None:
                        ok = on_device[t.device] = batched.defers(t, keep[0], how)
                    if not ok:
                        _store(c, t, out)
                        continue
                    if where not in shapes:
                        shapes[where] = tuple(t.shape)
                    if where not in dtypes:
                        dtypes[where] = t.dtype
                    values[key] = deferred.keep_once(t, *keep)  # type: ignore[union-attr]
                elif c.kind == "output_grad":
                    shapes.setdefault((c.kind, path), tuple(t.shape))
                    if t.requires_grad:
                        outputs[(path, c.output)] = t
                        # later code may write into the output in place (ReLU(inplace=True),
                        # out += identity): it gets a copy, so the gradient is the output's own
                        replaced = _replace(replaced, t, t.clone())
            return None if replaced is output else replaced

        return record

    calls = {}
    enter = {}
    for p, caps in by_module.items():
        outs = [c for c in caps if c.kind != "input"]
        ins = [c for c in caps if c.kind == "input"]
        if outs:
            calls[p] = after(p, outs)
        if ins:
            enter[p] = before(p, ins)
    try:
        done = be.forward(
            call, calls, enter=enter, grad=grads, trace=bool(traces), attention=tuple(c.target for c in attn)
        )
    except PassFailed as e:
        error = ModelError(messages.forward_failed(str(e), e.ran), plan.spec.input.span if plan.spec.input else None)
        _fail(plan.captures, forward_kinds, error, out)
        return
    for p, caps in by_module.items():  # a module the forward pass did not call (a branch not taken)
        if p in seen and (p in entered or p not in enter):
            continue  # its hooks ran: every capture has its value or its error
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
        try:
            _backward(plan, be, call, x, y, loss_fn, done.result, outputs, out)
        except NnspecError as e:
            _fail(plan.captures, BACKWARD_KINDS, e, out)


def _part(path: str, c: Capture, value, what: str, out: Captured):
    """The tensor of a module's output or arguments (``what``) the capture shows, noting
    which one it is when there are several; None, with the capture's error, if none."""
    t, label, names = chosen(value, c.output)
    if t is None:
        if c.output is None:
            out.errors[c.key] = inputs_messages.no_tensor_output(path)
        else:
            out.errors[c.key] = messages.no_such_part(path, c.output, names, what + "s" if what == "argument" else what)
        return None
    if c.output is None and len(names) > 1:
        out.notes.setdefault(c.key, []).append(messages.note_chosen(path, label, names, what))
    return t


def _replace(value, old, new):
    """``value`` with the tensor ``old`` replaced by ``new`` (tuples and lists rebuilt;
    other containers are left as they are)."""
    if value is old:
        return new
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_replace(v, old, new) for v in value)
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    return value


def _backward(plan: Plan, be: Backend, call, x, y, loss_fn, result, outputs, out: Captured) -> None:
    if loss_fn is None:
        kind = next(c.kind for c in plan.captures if c.kind in BACKWARD_KINDS)
        raise SpecError(messages.needs_loss(kind + "s"), None, messages.needs_loss_hint())
    if loss_fn.needs_target and y is None:
        raise SpecError(
            messages.loss_needs_target(loss_fn.name),
            plan.spec.loss_span,
            messages.loss_needs_target_hint(),
        )
    try:
        loss = be.compute_loss(loss_fn, result, y, call)  # with autograd on, in the framework's arithmetic
    except ModelError as e:
        raise ModelError(e.message, e.span or plan.spec.loss_span, e.hint) from e
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1 or not loss.requires_grad:
            raise ModelError(messages.bad_loss_value(loss_fn.name, loss), plan.spec.loss_span)
        with torch.enable_grad():  # inside the user's torch.no_grad() too
            loss = loss.reshape(())
    wanted: dict[tuple, torch.Tensor] = {}
    for c in plan.captures:
        if c.kind == "grad":
            wanted[("grad", c.target, None)] = be.tensor(c.target)
        elif c.kind == "output_grad" and (c.target, c.output) in outputs:
            wanted[("output_grad", c.target, c.output)] = outputs[(c.target, c.output)]
        elif c.kind == "input_grad" and x is not None:
            wanted[("input_grad", "", None)] = x
    try:
        got = be.backward(loss, wanted)
    except PassFailed as e:
        raise ModelError(messages.backward_failed(str(e))) from e.error
    for c in plan.captures:
        if c.kind not in BACKWARD_KINDS or c.key in out.errors:
            continue
        g = got.get((c.kind, c.target, c.output if c.kind == "output_grad" else None))
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


def probe_shapes(model, call) -> dict:
    """Output and input shapes of every module from one no-grad forward (for EXPLAIN)."""
    return backend_for(model).shapes(call)
