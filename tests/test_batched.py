"""The deferred, batched reductions (nnspec.numerics.batched) give the numbers of
the per-tensor ones (reduce.stats, reduce.histogram, the norm) and of NumPy, on
the CPU: many tensors of different sizes and dtypes, NaN and ±Inf, empty and
all-non-finite tensors, every path of the row partials (all rows masked, the
fast pass with a few masked rows, too many dirty rows), batches split by the
memory budget. And a capture run forced onto the deferred path records what
the in-hook path records."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nnspec.capture import run as capture
from nnspec.compiler.compile import compile_plan
from nnspec.inputs.batch import Batch, make_loss
from nnspec.numerics import batched, reduce
from nnspec.spec.load import load_spec

HIST_KEYS = ("counts", "lo", "hi", "nan", "inf", "outside")


def _dirty(t: torch.Tensor, every: int) -> torch.Tensor:
    """``t`` with NaN, +Inf and -Inf sprinkled every ``every`` elements."""
    t = t.clone()
    flat = t.view(-1)
    flat[::every] = math.nan
    flat[1::every] = math.inf
    flat[2::every] = -math.inf
    return t


def _zoo() -> list[torch.Tensor]:
    """Tensors of many sizes and kinds: the cases the per-tensor reductions special-case."""
    g = torch.Generator().manual_seed(3)
    r = lambda *shape, dtype=torch.float32: torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    relu = r(4, 33, 17).clamp(min=0)  # many exact zeros
    return [
        r(5000),
        _dirty(r(3, 700), 97),
        torch.tensor([]),
        torch.full((6,), math.nan),
        torch.tensor([math.inf, -math.inf, math.nan]),
        torch.tensor([2.5]),
        torch.full((100,), 3.0),
        r(8, 257, dtype=torch.float64),
        _dirty(r(1000, dtype=torch.float64), 13),
        r(300, dtype=torch.bfloat16),
        _dirty(r(999, dtype=torch.float16), 50),
        torch.arange(-20, 37),
        torch.randint(0, 5, (4, 9), generator=g, dtype=torch.int32),
        relu,
        r(64, 40) + 1000.0,  # |mean| ≫ std
        r(4096 * 3),  # whole rows, no pads
        r(2, 3, 4, 5)[:, 1],  # not contiguous
    ]


# (chunk, dirty_rows): every row masked; the fast pass with a few masked rows; too many dirty rows
PATHS = {"masked": (64, 10_000), "fast": (64, 3), "overflow": (8, 1), "default": (batched.CHUNK, None)}


def _stats_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    rtol = 1e-10 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=rtol, atol=rtol, equal_nan=True)


@pytest.mark.parametrize("path", list(PATHS))
def test_stats_equal_the_per_tensor_stats(path):
    chunk, dirty = PATHS[path]
    tensors = _zoo()
    got = batched.stats_many(tensors, chunk=chunk, dirty_rows=dirty)
    assert got.shape == (len(tensors), 9) and got.dtype == torch.float64
    for t, row in zip(tensors, got, strict=True):
        _stats_close(row, reduce.stats(t), t.dtype)


def test_stats_equal_numpy():
    for t in _zoo():
        a = t.double().numpy().reshape(-1)
        f = a[np.isfinite(a)]
        row = batched.stats_many([t], chunk=64, dirty_rows=2)[0].numpy()
        assert row[0] == a.size and row[7] == np.isnan(a).sum() and row[8] == np.isinf(a).sum()
        if f.size == 0:
            assert np.isnan(row[1:7]).all()
            continue
        std = f.std(ddof=1) if f.size > 1 else math.nan
        want = [f.mean(), std, f.min(), f.max(), np.abs(f).mean(), (f == 0).mean()]
        np.testing.assert_allclose(row[1:7], want, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("range_", [None, (-1.0, 2.0), (0.0, 0.5)], ids=["auto", "range", "narrow"])
@pytest.mark.parametrize("bins", [1, 7, 64, 300])
@pytest.mark.parametrize("path", list(PATHS))
def test_histograms_equal_the_per_tensor_histograms(path, bins, range_):
    chunk, dirty = PATHS[path]
    tensors = _zoo()
    got = batched.histogram_many(tensors, bins, range_, chunk=chunk, dirty_rows=dirty)
    for t, h in zip(tensors, got, strict=True):
        want = reduce.histogram(t, bins, range_)
        for k in HIST_KEYS:
            assert h[k].dtype == want[k].dtype, k
            assert torch.equal(h[k], want[k]), (k, t.dtype, t.numel())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_histograms_bin_as_numpy_bins_the_float32_values(dtype):
    g = torch.Generator().manual_seed(5)
    tensors = [(torch.randn(n, generator=g) * s).to(dtype) for n, s in ((5000, 1.0), (777, 30.0), (64, 0.01))]
    for range_ in (None, (-1.0, 1.0)):
        for t, h in zip(tensors, batched.histogram_many(tensors, 50, range_, chunk=64, dirty_rows=2), strict=True):
            a = t.float().numpy()  # exactly the half values; numpy's own range from them when none is given
            inside = a if range_ is None else a[(a >= range_[0]) & (a <= range_[1])]
            counts, _ = np.histogram(inside, bins=50, range=range_)
            assert h["counts"].tolist() == counts.tolist()
            assert int(h["outside"]) == a.size - inside.size


def test_norms_equal_the_per_tensor_norm():
    tensors = _zoo()
    for t, v in zip(tensors, batched.norm_many(tensors), strict=True):
        want = reduce.scalar(t, "norm")
        assert v.dtype == want.dtype and v.shape == want.shape
        assert float(v) == pytest.approx(float(want), rel=1e-5, nan_ok=True)


def test_batches_split_by_the_budget_keep_their_order(monkeypatch):
    monkeypatch.setattr(batched, "BUDGET", 1 << 10)
    tensors = _zoo()  # float32, float64 and halves interleaved: several batches, results in order
    assert len(batched._batches(tensors, chunk=64)) > 3
    for t, row in zip(tensors, batched.stats_many(tensors, chunk=64, dirty_rows=2), strict=True):
        _stats_close(row, reduce.stats(t), t.dtype)
    for t, h in zip(tensors, batched.histogram_many(tensors, 9, chunk=64, dirty_rows=2), strict=True):
        want = reduce.histogram(t, 9)
        assert all(torch.equal(h[k], want[k]) for k in HIST_KEYS)


def test_only_batches_with_too_many_dirty_rows_are_masked_again(monkeypatch):
    monkeypatch.setattr(batched, "BUDGET", 64 * 300)
    g = torch.Generator().manual_seed(2)
    clean = [torch.randn(64 * 250, generator=g), torch.randn(64 * 7 + 5, generator=g)]
    sick = _dirty(torch.randn(64 * 280, generator=g), 50)  # every row dirty: more than the default budget
    tensors = [clean[0], clean[1], sick]
    assert batched._batches(tensors, chunk=64) == [[0, 1], [2]]
    runs = []
    masked = batched._masked_partials
    monkeypatch.setattr(batched, "_masked_partials", lambda x: runs.append(x.shape[0]) or masked(x))
    got = batched.stats_many(tensors, chunk=64)
    assert 280 in runs and 258 not in runs  # the sick batch again, every row masked; not the clean one
    for t, row in zip(tensors, got, strict=True):
        _stats_close(row, reduce.stats(t), t.dtype)
    for t, h in zip(tensors, batched.histogram_many(tensors, 12, chunk=64), strict=True):
        want = reduce.histogram(t, 12)
        assert all(torch.equal(h[k], want[k]) for k in HIST_KEYS)


def test_scatter_count_is_bincount():
    idx = torch.randint(0, 50, (10_000,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(batched.scatter_count(idx, 60).long(), torch.bincount(idx, minlength=60))


def test_nothing_to_reduce():
    assert batched.stats_many([]).shape == (0, 9)
    assert batched.histogram_many([], 5) == []
    assert batched.norm_many([]) == []


def test_kept_tensors_are_copies_reduced_at_flush():
    d = batched.Deferred()
    t = torch.tensor([-2.0, 1.0, 3.0])
    s = d.keep(t, "stats")
    h = d.keep(t, "histogram", bins=4, range_=(0.0, 4.0), absolute=True)
    n = d.keep(torch.arange(4), "norm")
    t.clamp_(min=0)  # an in-place write after the hook (ReLU(inplace=True)) changes nothing kept
    assert d.kept_bytes == 3 * 4 * 2 + 4 * 4
    with pytest.raises(RuntimeError):
        batched.resolved(s)
    d.flush()
    assert not d.groups
    assert float(batched.resolved(s)[3]) == -2.0
    hist = batched.resolved(h)
    assert isinstance(hist, dict) and hist["counts"].tolist() == [0, 1, 1, 1]
    assert batched.resolved(h) is not hist  # each capture its own dict
    assert float(batched.resolved(n)) == pytest.approx(math.sqrt(14))
    assert batched.resolved(7) == 7


def test_a_flush_that_runs_out_of_memory_reduces_one_tensor_at_a_time(monkeypatch):
    def full(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    for name in ("stats_many", "histogram_rows", "norm_many"):
        monkeypatch.setattr(batched, name, full)
    d = batched.Deferred()
    tensors = _zoo()
    kept = [(t, d.keep(t, "stats"), d.keep(t, "histogram", bins=9), d.keep(t, "norm")) for t in tensors]
    d.flush()
    for t, s, h, n in kept:
        _stats_close(batched.resolved(s), reduce.stats(t), t.dtype)
        want = reduce.histogram(t, 9)
        assert all(torch.equal(batched.resolved(h)[k], want[k]) for k in HIST_KEYS)
        torch.testing.assert_close(batched.resolved(n), reduce.scalar(t, "norm"), rtol=0, atol=0, equal_nan=True)


def test_the_path_is_chosen_by_device_and_env(monkeypatch):
    cpu = torch.ones(3)
    monkeypatch.delenv(batched.ENV, raising=False)
    assert batched.mode() == "auto" and not batched.defers(cpu, "stats", "auto")
    monkeypatch.setattr(batched, "DEVICES", ("cpu",))  # as a CUDA tensor is treated
    assert batched.defers(cpu, "stats", "auto") and not batched.defers(cpu, "mean", "auto")
    assert not batched.defers(cpu, "stats", "in-hook")
    monkeypatch.setenv(batched.ENV, "deferred")
    assert batched.mode() == "deferred"
    monkeypatch.setenv(batched.ENV, "nonsense")
    assert batched.mode() == "auto"


class _Net(torch.nn.Module):
    """In-place ReLU after a Linear (the kept copy must be the Linear's output), an
    Identity passing a tensor on (reduced once)."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 4100)  # more than a row of CHUNK: a pad
        self.relu = torch.nn.ReLU(inplace=True)
        self.same = torch.nn.Identity()
        self.fc2 = torch.nn.Linear(4100, 3)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(self.same(self.relu(h)))


QUERIES = [
    "activations of * | stats",
    "activations of * | histogram(bins=16)",
    "activations of * | histogram(bins=5, range=[-1, 1])",
    "activations of * | norm",
    "activations of fc1 | abs | stats",
    "activations of fc1 [0, :100] | stats",
    "activations of * | mean",
    "weights of * | stats",
    "grads of *.weight | histogram(bins=8)",
]


def _capture(monkeypatch, path: str):
    monkeypatch.setenv(batched.ENV, path)
    torch.manual_seed(0)
    model = _Net().eval()
    x = torch.randn(6, 8)
    spec = load_spec({"nnspec": 1, "views": [{"query": q} for q in QUERIES], "loss": "mse"})
    plan = compile_plan(spec, model)
    loss = make_loss(spec.loss, spec.base_dir, spec.loss_span, spec.model.output)
    return capture.run(plan, model, Batch.of(x, torch.randn(6, 3)), loss)


def test_a_deferred_capture_records_what_the_in_hook_one_records(monkeypatch):
    kept = []
    keep = batched.Deferred.keep
    monkeypatch.setattr(batched.Deferred, "keep", lambda self, t, op, *a: kept.append(op) or keep(self, t, op, *a))
    hook = _capture(monkeypatch, "in-hook")
    assert not kept
    deferred = _capture(monkeypatch, "deferred")
    assert set(kept) == {"stats", "histogram", "norm"}  # mean stays in the hook
    fc1 = deferred.values[next(k for k in deferred.values if k[:2] == ("activation", "fc1") and k[-1] == "stats")]
    assert float(fc1[3]) < 0  # the Linear's own min: the kept copy, not what ReLU(inplace=True) left
    assert hook.values.keys() == deferred.values.keys() and not deferred.errors and not hook.errors
    assert deferred.deferred is None and deferred.scratch is None
    for key, a in hook.values.items():
        b = deferred.values[key]
        if isinstance(a, dict):
            assert a.keys() == b.keys()
            for k in a:
                assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), (key, k)
        else:
            assert a.dtype == b.dtype and a.shape == b.shape, key
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=str(key))


def test_keep_once_keeps_a_tensor_once_per_version_and_reduction():
    d = batched.Deferred()
    t = torch.tensor([-2.0, 1.0, 3.0])
    a = d.keep_once(t, "stats")
    assert d.keep_once(t, "stats") is a  # passed on unchanged (an Identity): one copy
    assert d.keep_once(t.view(3), "stats") is a  # the same memory, seen through a view
    assert d.keep_once(t, "norm") is not a and d.keep_once(t, "stats", absolute=True) is not a
    t.clamp_(min=0)  # written in place (ReLU(inplace=True)): a new version, a new copy
    b = d.keep_once(t, "stats")
    assert b is not a
    d.flush()
    assert float(batched.resolved(a)[3]) == -2.0 and float(batched.resolved(b)[3]) == 0.0
    assert not d._seen  # nothing held after the flush
    with torch.inference_mode():
        frozen = torch.ones(2)
    p, q = d.keep_once(frozen, "stats"), d.keep_once(frozen, "stats")  # no version counter: no memo
    assert p is not q


class _Residual(torch.nn.Module):
    """ResNet's bottleneck ending: a norm's output gets ``+= identity`` and an in-place
    ReLU after its hook, an Identity passes the result on; the hooks' copies must be
    what each module returned."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 16)
        self.bn = torch.nn.BatchNorm1d(16)
        self.relu = torch.nn.ReLU(inplace=True)
        self.same = torch.nn.Identity()
        self.head = torch.nn.Linear(16, 2)

    def forward(self, x):
        out = self.bn(self.fc(x))
        out += x
        return self.head(self.same(self.relu(out)))


def test_a_deferred_capture_keeps_what_each_module_returned_before_in_place_writes(monkeypatch):
    torch.manual_seed(0)
    model = _Residual().eval()
    model.bn.running_mean.normal_()
    x = torch.randn(64, 16)
    mine = {}  # independent hooks: a copy of each output when the module returns
    handles = [
        getattr(model, n).register_forward_hook(lambda m, a, o, n=n: mine.__setitem__(n, o.detach().clone()))
        for n in ("fc", "bn", "relu", "same", "head")
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    queries = ["activations of * | stats", "activations of * | histogram(bins=7)", "activations of * | norm"]
    spec = load_spec({"nnspec": 1, "views": [{"query": q} for q in queries]})
    kept = []
    keep = batched.Deferred.keep
    monkeypatch.setattr(batched.Deferred, "keep", lambda self, t, op, *a: kept.append(op) or keep(self, t, op, *a))
    monkeypatch.setenv(batched.ENV, "deferred")
    got = capture.run(compile_plan(spec, model), model, Batch.of(x))
    assert not got.errors and len(kept) == 3 * 4  # fc, bn, relu, head: the Identity's is the ReLU's
    for key, v in got.values.items():
        want = mine[key[1]]
        if key[3] == "stats":
            _stats_close(v, reduce.stats(want), want.dtype)
        elif key[3].startswith("histogram"):
            h = reduce.histogram(want, 7)
            assert all(torch.equal(v[k], h[k]) for k in HIST_KEYS), key
        else:
            torch.testing.assert_close(v, reduce.scalar(want, "norm"))
    assert float(got.values[("activation", "bn", "", "stats")][3]) < 0  # before the += and the ReLU
