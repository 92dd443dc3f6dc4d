"""The recorder: what a spec's views over steps need, recorded at every
``record_every``-th step of a training loop (the user's own, or ``train:``'s).

    rec = nnspec.Recorder("specs/health.yaml", model, run="runs/exp1")
    for step, (x, y) in enumerate(loader):
        loss = loss_fn(model(x), y); loss.backward()
        rec.step(step, loss=loss)          # after backward, before opt.step()
        opt.step(); opt.zero_grad()
    rec.close()

Per recorded step s:
    forward of s     hooks armed (only now) reduce activations on the device
    rec.step(s)      .grad and parameters reduced; records written in one transaction
    next rec.step    ‖w_now − w_s‖/‖w_s‖ for update_ratio (the optimizer step in between)
Between recorded steps no hook is registered at all.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import torch

from nnspec.backends import backend_for
from nnspec.capture.run import _IndexProblem, arguments, chosen, select, stats_first
from nnspec.compiler.compile import compile_plan
from nnspec.compiler.plan import HOOK_KINDS, Available, Capture, Plan
from nnspec.errors import SpecError
from nnspec.inputs import messages as inputs_messages
from nnspec.numerics import batched, partials
from nnspec.numerics.batched import Pending
from nnspec.numerics.reduce import Scratch
from nnspec.numerics.reductions import pack_histogram
from nnspec.runs import messages
from nnspec.runs.distributed import (
    Ranks,
    is_sharded,
    local,
    merge_shards,
    shard_partial,
    shard_problem,
    shard_update_ratios,
    unwrap,
)
from nnspec.runs.hparams import encode, flatten, optimizer_hparams, resolved_vars
from nnspec.runs.store import RunWriter
from nnspec.spec.load import Spec, load_spec

DEFAULT_EVERY = 10


class Recorder:
    """Records the views over steps of ``spec`` for ``model`` into the run ``run``."""

    def __init__(
        self,
        spec,
        model,
        run: str,
        record_every: int | None = None,
        overwrite: bool = False,
        last_step: int | None = None,
        plan: Plan | None = None,
        steps: int | None = None,
        hparams: dict | None = None,
        optimizer=None,
        arm: bool = True,
    ):
        """``last_step`` is recorded too; ``overwrite`` replaces a run that a
        spec's ``train:`` wrote (never one a Recorder wrote), and only when
        ``close()`` finds the new run complete; ``plan``: the render's own (its
        broken views are its business, not the recorder's); ``steps``: how many
        steps the loop plans (a run that stops short says "stopped at step N of
        STEPS"; default ``last_step + 1``). A second writer of the same run
        directory fails at once (a lock per run directory).

        Stored with the run as its hyperparameters (``nnspec.runs.hparams``):
        the spec's variables, ``optimizer``'s class and arguments (defaults
        included) if given, and ``hparams`` (the user's own: ``{"lr": 0.1,
        "seed": 0}``; they win over what nnspec found).

        ``arm=False``: the caller arms the hooks itself (``arm(step)`` before the first
        forward of a step, ``disarm()``), as the framework callbacks do
        (``nnspec.integrations``): ``step()`` then never arms them."""
        found = hparams_of(spec, optimizer)
        self.spec = spec if isinstance(spec, Spec) else load_spec(spec)
        self.model = unwrap(model)
        self.backend = backend_for(self.model)
        self.plan = plan or recording_plan(self.spec, self.model)
        self.captures = self.plan.recorded
        self.every = record_every or (self.spec.train.record_every if self.spec.train else DEFAULT_EVERY)
        self.last_step = last_step
        self.ranks = Ranks.detect()
        self.sharded = is_sharded(self.model)  # FSDP2: every rank reduces its shards of params and grads
        if self.sharded and (problem := shard_problem(self.model, self.plan, self.ranks)) is not None:
            raise problem
        self.writer = None
        if self.ranks is None or self.ranks.writes:
            meta = {
                "nnspec": _version(),
                "spec_name": self.spec.name,
                "spec_hash": self.spec.hash,
                "model_hash": self.backend.fingerprint(),
                "source": "train" if last_step is not None else "recorder",
                "record_every": self.every,
                "world_size": self.ranks.world if self.ranks else 1,
                "hparams": encode({**found, **(hparams or {})}),
            }
            if steps is None and last_step is not None:
                steps = last_step + 1
            self.writer = RunWriter(run, meta, self.captures, replace="train" if overwrite else None, steps=steps)
        self.run = run
        self._armed: ExitStack | None = None  # the hooks of a recorded step's forward pass
        self._parts: dict = {}  # capture key -> partial (this rank's, on the device)
        self._errors: dict = {}
        self._snapshots: dict = {}  # update capture key -> the parameter at the pending step
        self._pending: int | None = None  # the recorded step whose update ratios are still open
        self._scratch = Scratch()
        self.closed = False
        self._auto = arm
        self._given: dict = {}  # step(tensors=...): name -> (value, grad) held by the framework
        self._skipped: dict[str, int] = {}  # modules a recorded step did not run -> the first such step
        self._how = batched.mode()  # on a GPU, parameters and gradients are reduced together at rec.step
        if arm:
            self._arm()  # the first forward may be a recorded step

    # -- the loop's side ---------------------------------------------------------
    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.last_step

    def step(self, step: int, loss=None, tensors: dict | None = None) -> None:
        """Call once per training step, after ``backward()`` and before ``optimizer.step()``.

        ``tensors``: the parameters as the framework holds them, ``{name: (value, grad)}``
        (torch tensors; grad may be None), for a framework whose compiled step keeps them
        out of the model (Keras on JAX); a name not in it is read from the model."""
        if self.closed:
            raise SpecError(messages.recorder_closed())
        self._given = tensors or {}
        try:
            self._step(step, loss)
        finally:
            self._given = {}

    def _step(self, step: int, loss) -> None:
        late = self._updates()
        if self.due(step):
            records = self._collect(step)
            value = self._loss(loss)
            if self.writer is not None:
                self.writer.write_step(step, value, records, late)
            late = None
        elif late is not None and self.writer is not None:
            self.writer.write_late(*late)
        self._disarm()
        if self._auto and self.due(step + 1):
            self._arm()

    def arm(self, step: int) -> None:
        """Hooks on for the forward pass(es) of ``step`` if it is recorded (idempotent);
        ``step()`` or ``disarm()`` removes them."""
        if not self.closed and self.due(step):
            self._arm()

    def disarm(self) -> None:
        """Every hook of the recorder removed (the run stays open)."""
        self._disarm()

    def close(self, finished: bool = True) -> None:
        """Write what is still open, remove every hook; the model is as it was.

        ``finished``: the loop ran to its end, and the run is marked complete
        (a ``with`` block left by an exception closes with ``finished=False``:
        the run says it is unfinished, and a ``train:`` run is discarded)."""
        if self.closed:
            return
        self.closed = True
        ok = False
        try:
            late = self._updates()
            if late is not None and self.writer is not None:
                self.writer.write_late(*late)
            ok = True
        finally:
            self._disarm()
            if self.writer is not None:
                if finished and ok:
                    self.writer.finish()
                else:
                    self.writer.abandon()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(finished=exc_type is None)
        return False

    # -- hooks, armed only for the forward pass of a recorded step ------------------
    def _arm(self) -> None:
        if self._armed is not None:
            return
        after, before, _ = self.taps()
        armed = ExitStack()
        armed.enter_context(self.backend.hooks(after, before))  # inputs: read before an in-place module runs
        self._armed = armed

    def taps(self) -> tuple[dict, dict, dict]:
        """What the hooks of a recorded step's pass call, per module path, for a framework
        that delivers the values itself (Keras on JAX, from its compiled step); the
        step's partials start empty. ``(after, before, backward)``: ``after[path](args,
        kwargs, output)``, ``before[path](args, kwargs)`` and ``backward[path](grads of the
        output)``, every value a torch tensor (or a structure of them)."""
        self._parts, self._errors = {}, {}
        by_module: dict[str, list[Capture]] = {}
        for c in self.captures:
            if c.kind in HOOK_KINDS:
                by_module.setdefault(c.target, []).append(c)
        after = {p: self._hook(p, [c for c in caps if c.kind != "input"]) for p, caps in by_module.items()}
        before = {p: self._enter(p, [c for c in caps if c.kind == "input"]) for p, caps in by_module.items()}
        backward = {
            p: self._backward(p, grads) for p, caps in by_module.items() if (grads := _kind(caps, "output_grad"))
        }
        return after, before, backward

    def _disarm(self) -> None:
        if self._armed is not None:
            self._armed.close()
            self._armed = None

    def _enter(self, path: str, caps: list[Capture]):
        def enter(args, kwargs):
            for c in caps:
                if c.key in self._parts or c.key in self._errors:
                    continue  # a module called twice: its first call is recorded
                t, _, _ = chosen(arguments(args, kwargs), c.output)
                if t is None:
                    self._errors[c.key] = inputs_messages.no_tensor_output(path)
                else:
                    self._reduce(c, t)

        return enter

    def _hook(self, path: str, caps: list[Capture]):
        def hook(args, kwargs, output):
            for c in caps:
                if c.key in self._parts or c.key in self._errors:
                    continue  # a module called twice: its first call is recorded
                t, _, _ = chosen(output, c.output)
                if t is None:
                    self._errors[c.key] = inputs_messages.no_tensor_output(path)
                elif c.kind == "output_grad":
                    if t.requires_grad:
                        self.backend.on_grad(t, self._grad_hook(c))
                else:
                    self._reduce(c, t)

        return hook

    def _backward(self, path: str, caps: list[Capture]):
        def backward(grads):
            for c in caps:
                if c.key in self._parts or c.key in self._errors:
                    continue
                g, _, _ = chosen(grads, c.output)
                if g is None:
                    self._errors[c.key] = inputs_messages.no_tensor_output(path)
                else:
                    self._reduce(c, g)

        return backward

    def _grad_hook(self, c: Capture):
        def hook(grad):
            self._reduce(c, grad)

        return hook

    def _reduce(self, c: Capture, t: torch.Tensor) -> None:
        agree = self.ranks.agree_range if self.ranks is not None and c.kind in HOOK_KINDS else None
        r = c.reduce
        # a tensor passed on unchanged (Identity, Dropout in eval) is reduced once; not
        # with an agreed range, a collective every rank must take part in
        what = None if agree is not None or r is None else ("partial", str(c.index), r.op, r.abs, r.bins, r.range)
        if what is not None:
            done = self._scratch.recall(t, what)
            if isinstance(done, torch.Tensor):
                self._parts[c.key] = done
                return
        try:
            picked = select(c, t)
        except _IndexProblem as e:
            self._errors[c.key] = str(e)
            return
        part = self._parts[c.key] = partials.partial(c.reduce, picked, self._scratch, agree)
        if what is not None:
            self._scratch.remember(t, what, part)

    # -- at rec.step ------------------------------------------------------------------
    def _collect(self, step: int) -> dict:
        """This step's records: activations from the hooks (merged across ranks), then
        gradients and parameters (the same on every DDP rank: rank 0 reduces them)."""
        if self._errors:
            key, problem = next(iter(self._errors.items()))
            self.close(finished=False)
            raise SpecError(messages.record_failed(step, problem))
        forward = [c for c in self.captures if c.kind in HOOK_KINDS]
        missing = [c for c in forward if c.key not in self._parts]
        if missing and (len(missing) == len(forward) or self.ranks is not None):
            # no hook fired at all: rec.step before the pass (under DDP every rank must agree)
            self.close(finished=False)
            raise SpecError(messages.not_recorded(step, missing[0].target), None, messages.not_recorded_hint())
        if missing:  # a branch not taken, a fused path: a gap in those series, said in the run
            self._not_run(step, missing)
            forward = [c for c in forward if c.key in self._parts]
        parts = [self._parts[c.key] for c in forward]
        merged = self.ranks.gather(parts) if self.ranks is not None else [[p] for p in parts]
        records = {}
        for c, ps in zip(forward, merged):
            records[c.key] = partials.finish(c.reduce, partials.combine(c.reduce, ps)).cpu()
        if self.writer is None and not self.sharded:
            return records
        shards: list = []  # FSDP2: (capture, this rank's partial of its shard), merged below
        later = batched.Deferred() if not self.sharded else None  # a GPU's reductions, batched below
        for c in sorted(self.captures, key=stats_first):  # a histogram then reuses the stats' min and max
            if c.kind == "param":
                self._param_record(c, self._tensor(c.target), records, shards, later)
            elif c.kind == "grad":
                g = self._grad(c.target)
                if g is not None:  # no gradient this step (frozen, unused): no record, a gap in the line
                    self._param_record(c, g, records, shards, later)
            elif c.kind == "update":
                self._snapshots[c.key] = select(c, local(self._tensor(c.target).detach())).clone()
        if later is not None and later.groups:
            later.flush()
            for c in self.captures:
                if isinstance(kept := records.get(c.key), Pending):
                    records[c.key] = _finished(c, kept)
        records.update(merge_shards(self.ranks, shards))
        if self._snapshots:
            self._pending = step
        return {k: v.cpu() for k, v in records.items()}

    def _tensor(self, name: str) -> torch.Tensor:
        given = self._given.get(name)
        return given[0] if given is not None else self.backend.tensor(name)

    def _grad(self, name: str) -> torch.Tensor | None:
        given = self._given.get(name)
        return given[1] if given is not None else self.backend.tensor(name).grad

    def _not_run(self, step: int, missing: list[Capture]) -> None:
        new = {c.target: step for c in missing if c.target not in self._skipped}
        if new:
            self._skipped.update(new)
            if self.writer is not None:
                self.writer.not_run(self._skipped)

    def _param_record(
        self, c: Capture, t: torch.Tensor, records: dict, shards: list, later: batched.Deferred | None = None
    ) -> None:
        r = c.reduce
        if self.sharded:  # this rank's shard, merged with the others' in merge_shards
            shards.append((c, shard_partial(self.ranks, c, t, self._scratch)))
        elif later is not None and r is not None and batched.defers(t, r.op, self._how):
            records[c.key] = later.keep(select(c, t), r.op, r.bins, r.range, r.abs)  # one copy, no sync
        else:
            records[c.key] = partials.finish(c.reduce, partials.partial(c.reduce, select(c, t), self._scratch))

    def _updates(self) -> tuple | None:
        """‖Δw‖/‖w‖ of the optimizer step(s) since the pending recorded step."""
        if self._pending is None:
            return None
        out, shards = {}, []
        for c in self.captures:
            if c.kind == "update":
                before = self._snapshots.pop(c.key)
                now = select(c, local(self._tensor(c.target).detach()))
                if self.sharded:  # the squared norms of the shards add up across ranks
                    shards.append((c, before, now))
                    continue
                ratio = torch.linalg.vector_norm((now - before).double()) / torch.linalg.vector_norm(before.double())
                out[c.key] = ratio.reshape(1).cpu()
        out.update(shard_update_ratios(self.ranks, shards))
        step, self._pending = self._pending, None
        return step, out

    def _loss(self, loss) -> float | None:
        if loss is None:
            return None
        value = loss.detach().double().reshape(()) if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        if self.ranks is not None:  # the mean of every rank's loss
            (values,) = self.ranks.gather([value.reshape(1)])
            return float(torch.stack(values).mean())
        return float(value)


def _finished(c: Capture, pending: Pending) -> torch.Tensor:
    """The record of a batched reduction, as ``partials.finish(partial(...))`` makes it."""
    value = batched.resolved(pending)
    if isinstance(value, dict):  # a histogram: its head, then its counts
        value = pack_histogram(value)
    reduction: Any = c.reduce  # a Reduce, which partials takes as its Params
    assert isinstance(value, torch.Tensor) and reduction is not None
    return partials.finish(reduction, value.double().reshape(-1).cpu()).cpu()


def _kind(caps: list[Capture], kind: str) -> list[Capture]:
    return [c for c in caps if c.kind == kind]


def hparams_of(spec, optimizer=None) -> dict:
    """What the Recorder finds by itself: the spec's resolved variables and the optimizer's arguments."""
    out: dict = {}
    try:
        values = resolved_vars(spec)
    except Exception:  # a spec that does not load fails in load_spec, with its location
        values = {}
    if values:
        flatten("vars", values, out)
    if optimizer is not None:
        out.update(optimizer_hparams(optimizer))
    return out


def recording_plan(spec: Spec, model) -> Plan:
    """The spec's views over steps compiled against ``model``; the first broken one is an error."""
    plan = compile_plan(spec, model, available=Available(runs=True))
    for vp in plan.views:
        if vp.error is not None and _over_steps_text(vp.view.query):
            raise vp.error
    return plan


def _over_steps_text(query: str) -> bool:
    return " over steps" in query or query.strip().startswith("loss")


def _version() -> str:
    from nnspec._version import __version__

    return __version__
