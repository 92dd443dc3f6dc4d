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

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from . import attention, messages, reduce
from .compiler import Capture, Plan
from .errors import ModelError, SpecError
from .trace import Tracer, tensors
from .trace import paused as trace_paused


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


def _first_tensor(value):
    """The first tensor of a module's output or arguments, and how many there are."""
    ts = tensors(value)
    return (ts[0] if ts else None), len(ts)


@contextmanager
def guest(model, params_needing_grad=()):
    """Leave ``model`` exactly as found: modes, requires_grad, hooks (by the caller)."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p in params_needing_grad:
            p.requires_grad_(True)
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


def run(plan: Plan, model, x=None, y=None, loss_fn=None) -> Captured:
    out = Captured()
    params = dict(model.named_parameters())
    grads_wanted = [c for c in plan.captures if c.kind == "grad"]
    with guest(model, [params[c.target] for c in grads_wanted]):
        _params(plan, params, out)  # 1. parameters
        if plan.forward:
            _passes(plan, model, params, x, y, loss_fn, out)  # 2. and 3.
    out.values = _to_cpu(out.values)  # 4.
    out.scratch = None
    return out


def _params(plan: Plan, params: dict, out: Captured) -> None:
    for c in plan.captures:
        if c.kind == "param":
            _store(c, params[c.target], out)


def _store(c: Capture, t, out: Captured) -> None:
    out.shapes.setdefault((c.kind, c.target), tuple(t.shape))
    out.dtypes.setdefault((c.kind, c.target), t.dtype)
    try:
        out.values[c.key] = apply(c, t, out.scratch)
    except _IndexProblem as e:
        out.errors[c.key] = str(e)


def _passes(plan, model, params, x, y, loss_fn, out: Captured) -> None:
    by_module: dict[str, list[Capture]] = {}
    for c in plan.captures:
        if c.kind in ("activation", "input", "output_grad"):
            by_module.setdefault(c.target, []).append(c)  # trace and attention have their own machinery
    modules = dict(model.named_modules())
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = _to(x, device)
    y = _to(y, device)
    needs_input_grad = any(c.kind == "input_grad" for c in plan.captures)
    if needs_input_grad:
        if not torch.is_floating_point(x):
            raise SpecError(messages.no_input_grad(str(x.dtype)))
        x = x.detach().clone().requires_grad_(True)
    traces = [c for c in plan.captures if c.kind == "trace"]
    attn = [c for c in plan.captures if c.kind == "attention"]
    tracer = Tracer(model) if traces else None
    outputs: dict[str, torch.Tensor] = {}  # module outputs whose gradient a view needs
    seen: set[str] = set()
    ran: list[str] = []
    names = {id(m): n for n, m in modules.items()}

    def track(module, args, output):
        ran.append(names.get(id(module), type(module).__name__))

    def hook_for(path: str, caps: list[Capture]):
        def hook(module, args, output):
            with trace_paused(tracer):
                record(module, args, output)

        def record(module, args, output):
            if path in seen:
                return  # a module called twice: the first call is what views show
            seen.add(path)
            t, count = _first_tensor(output)
            if t is None:
                for c in caps:
                    if c.kind != "input":
                        out.errors[c.key] = messages.no_tensor_output(path)
            for c in caps:
                if c.kind == "input":
                    ti, _ = _first_tensor(args)
                    if ti is None:
                        out.errors[c.key] = messages.no_tensor_output(path)
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

        return hook

    weights: dict = {}
    handles = [torch.nn.modules.module.register_module_forward_hook(track)]
    try:
        for path, caps in by_module.items():
            handles.append(modules[path].register_forward_hook(hook_for(path, caps)))
        with torch.set_grad_enabled(plan.backward), attention.recording(model, [c.target for c in attn], weights):
            try:
                result = tracer.run(model, x) if tracer else model(x)
            except Exception as e:
                raise ModelError(messages.forward_failed(f"{type(e).__name__}: {e}", _unique(ran))) from e
    finally:
        for h in handles:
            h.remove()
    for caps in by_module.values():  # a module the forward pass did not call (a branch not taken)
        for c in caps:
            if c.kind != "output_grad" and c.key not in out.values and c.key not in out.errors:
                out.errors[c.key] = messages.module_not_called(c.target)
    for c in traces:
        out.values[c.key] = tracer.trace
    for c in attn:
        if c.target in weights:
            _store(c, weights[c.target], out)
        else:
            out.errors[c.key] = messages.attention_not_called(c.target)
    if plan.backward:
        _backward(plan, params, x, y, loss_fn, result, outputs, out)


def _backward(plan, params, x, y, loss_fn, result, outputs, out: Captured) -> None:
    if loss_fn is None:
        kind = next(c.kind for c in plan.captures if c.kind in ("grad", "output_grad", "input_grad"))
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
            wanted[("grad", c.target)] = params[c.target]
        elif c.kind == "output_grad" and c.target in outputs:
            wanted[("output_grad", c.target)] = outputs[c.target]
        elif c.kind == "input_grad":
            wanted[("input_grad", "")] = x
    keys = list(wanted)
    try:
        grads = torch.autograd.grad(loss, [wanted[k] for k in keys], allow_unused=True)
    except Exception as e:
        raise ModelError(messages.backward_failed(f"{type(e).__name__}: {e}")) from e
    got = dict(zip(keys, grads))
    for c in plan.captures:
        if c.kind not in ("grad", "output_grad", "input_grad"):
            continue
        g = got.get((c.kind, c.target))
        if g is None:
            out.errors[c.key] = messages.frozen_no_grad(c.target or "the input")
        else:
            _store(c, g, out)


def _to(t, device):
    return t.to(device) if isinstance(t, torch.Tensor) else t


def _to_cpu(values: dict) -> dict:
    def cpu(v):
        if isinstance(v, torch.Tensor):
            return v.cpu()
        if isinstance(v, dict):
            return {k: cpu(x) for k, x in v.items()}
        return v

    return {k: cpu(v) for k, v in values.items()}


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def probe_shapes(model, x) -> dict:
    """Output and input shapes of every module from one no-grad forward (for EXPLAIN)."""
    shapes: dict = {}
    modules = dict(model.named_modules())
    handles = []

    def hook_for(path):
        def hook(module, args, output):
            t, _ = _first_tensor(output)
            ti, _ = _first_tensor(args)
            if t is not None:
                shapes.setdefault(("activation", path), tuple(t.shape))
                shapes.setdefault(("output_grad", path), tuple(t.shape))
                if isinstance(module, torch.nn.MultiheadAttention) and t.dim() == 3:
                    b, length = (t.shape[0], t.shape[1]) if module.batch_first else (t.shape[1], t.shape[0])
                    shapes.setdefault(("attention", path), (b, module.num_heads, length, length))
            if ti is not None:
                shapes.setdefault(("input", path), tuple(ti.shape))

        return hook

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if x is not None:
        with guest(model):
            try:
                for path, m in modules.items():
                    if path:
                        handles.append(m.register_forward_hook(hook_for(path)))
                with torch.no_grad():
                    model(_to(x, device))
            except Exception:
                pass  # EXPLAIN still works, with '?' for what it could not see
            finally:
                for h in handles:
                    h.remove()
    for name, p in model.named_parameters():
        shapes[("param", name)] = shapes[("grad", name)] = tuple(p.shape)
    if x is not None:
        shapes[("input_grad", "")] = tuple(x.shape)
    return shapes
