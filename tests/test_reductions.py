"""Each registered reduction against an independent NumPy computation, and
the recorder's partial → combine → finish over chunks against the reduction
of their concatenation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnspec.compiler.plan import Reduce
from nnspec.numerics import partials, reduce
from nnspec.numerics.reduce import STATS_FIELDS
from nnspec.numerics.reductions import HISTOGRAM_HEAD, REDUCTIONS
from nnspec.numerics.small import SMALL, widen


# -- NumPy references, in float64, of what each reduction documents ------------------------
def _units(a: np.ndarray) -> np.ndarray:
    """dead_fraction's units: every position after the first (batch) dimension."""
    return a.reshape(a.shape[0], -1) if a.ndim >= 2 else a.reshape(1, -1)


def _stats(a: np.ndarray) -> np.ndarray:
    """Moments over the finite values only; NaN and Inf counted apart."""
    f = a[np.isfinite(a)]
    row = [a.size, f.mean(), f.std(ddof=1), f.min(), f.max(), np.abs(f).mean(), (f == 0).mean()]
    return np.array(row + [np.isnan(a).sum(), np.isinf(a).sum()], dtype=np.float64)


def _histogram(a: np.ndarray, bins: int = 50, range: tuple | None = None) -> dict:
    """Bins over the finite values (the last bin closed); NaN, Inf and values outside a given range counted apart."""
    f = a[np.isfinite(a)]
    lo, hi = range if range is not None else widen(float(f.min()), float(f.max()))
    inside = f[(f >= lo) & (f <= hi)]
    counts, _ = np.histogram(inside, bins=bins, range=(lo, hi))
    return {
        "counts": counts,
        "lo": lo,
        "hi": hi,
        "nan": np.isnan(a).sum(),
        "inf": np.isinf(a).sum(),
        "outside": f.size - inside.size,
    }


REFERENCE = {
    # NaN and ±Inf reach these as IEEE arithmetic has them, as NumPy's
    "mean": lambda a, dim=None: np.mean(a, axis=dim),
    "max": lambda a, dim=None: np.max(a, axis=dim),
    "min": lambda a, dim=None: np.min(a, axis=dim),
    "std": lambda a, dim=None: np.std(a, axis=dim, ddof=1),
    "norm": lambda a, dim=None: np.sqrt(np.sum(a * a, axis=dim)),
    # the share of units never > 0 over the batch; NaN counts as not active
    "dead_fraction": lambda a: 1.0 - (_units(a) > 0).any(axis=0).mean(),
    "nan_count": lambda a: np.isnan(a).sum(),
    "inf_count": lambda a: np.isinf(a).sum(),
    "stats": _stats,
    "histogram": _histogram,
    "update_ratio": lambda before, after: np.linalg.norm(after - before) / np.linalg.norm(before),
}
OF_A_TENSOR = [n for n, r in REDUCTIONS.items() if n != "update_ratio"]
COMBINING = [n for n, r in REDUCTIONS.items() if r.combines]


def test_every_reduction_has_a_reference():
    assert set(REFERENCE) == set(REDUCTIONS)


def _tensor(shape, dtype, dirty: bool) -> torch.Tensor:
    """Seeded values around -1: some units never active, some exact zeros; ``dirty``: NaN, +Inf, -Inf too."""
    g = torch.Generator().manual_seed(7)
    t = torch.randn(*shape, generator=g, dtype=torch.float64) - 1.0
    t[t < -2.5] = 0.0
    if dirty:
        flat = t.view(-1)
        flat[3], flat[11], flat[-5] = float("nan"), float("inf"), float("-inf")
    return t.to(dtype)


SHAPES = {"small": (6, 5, 4), "large": (8, 3, SMALL // 16)}  # the NumPy path of stats/histogram, and torch's
assert 8 * 3 * (SMALL // 16) > SMALL


def _close(got, want, dtype):
    rtol = 1e-5 if dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64), np.asarray(want), rtol=rtol, atol=rtol, equal_nan=True
    )


def _check(name: str, got, want, dtype) -> None:
    if name == "histogram":
        assert got["lo"] == pytest.approx(want["lo"]) and got["hi"] == pytest.approx(want["hi"])
        for k in ("nan", "inf", "outside"):
            assert int(got[k]) == want[k], k
        counts = got["counts"].numpy()
        assert counts.sum() == want["counts"].sum()
        # bins are found in the tensor's precision: in float32 a value within rounding of an edge may cross it
        assert np.abs(counts - want["counts"]).sum() <= (0 if dtype == torch.float64 else 2)
    else:
        _close(got, want, dtype)


@pytest.mark.parametrize("dirty", [False, True], ids=["finite", "nan-inf"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("size", list(SHAPES))
@pytest.mark.parametrize("name", OF_A_TENSOR)
def test_reduction_equals_numpy(name, size, dtype, dirty):
    t = _tensor(SHAPES[size], dtype, dirty)
    a = t.double().numpy()
    with np.errstate(all="ignore"):
        want = REFERENCE[name](a)
    _check(name, REDUCTIONS[name].compute(t), want, dtype)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("name", [n for n, r in REDUCTIONS.items() if r.dim])
def test_reduction_along_a_dim_equals_numpy(name, dim):
    t = _tensor(SHAPES["small"], torch.float64, dirty=False)
    got = REDUCTIONS[name].compute(t, dim=dim)
    want = REFERENCE[name](t.numpy(), dim=dim)
    assert tuple(got.shape) == want.shape
    _close(got, want, torch.float64)


@pytest.mark.parametrize(
    "bins,range",
    [(9, None), (7, (-1.0, 0.5)), (1, None), (50, (-10.0, 10.0))],
)
def test_histogram_arguments(bins, range):
    t = _tensor(SHAPES["small"], torch.float64, dirty=True)
    _check(
        "histogram",
        REDUCTIONS["histogram"].compute(t, bins=bins, range=range),
        _histogram(t.numpy(), bins, range),
        torch.float64,
    )


def test_histogram_of_one_value_is_widened():
    h = REDUCTIONS["histogram"].compute(torch.full((10,), 2.0), bins=4)
    assert (float(h["lo"]), float(h["hi"])) == (1.5, 2.5)
    assert h["counts"].tolist() == _histogram(np.full(10, 2.0), 4)["counts"].tolist()


def test_update_ratio_equals_numpy():
    g = torch.Generator().manual_seed(3)
    before = torch.randn(5, 4, generator=g)
    after = before - 0.01 * torch.randn(5, 4, generator=g)
    got = REDUCTIONS["update_ratio"].compute(before, after)
    _close(got, REFERENCE["update_ratio"](before.double().numpy(), after.double().numpy()), torch.float32)


# -- partial → combine → finish ----------------------------------------------------------
def _record(name: str, value) -> np.ndarray:
    """The record a run stores for ``compute``'s result (the layout in numerics.reductions)."""
    if REDUCTIONS[name].gives == "histogram":
        head = [float(value[k]) for k in HISTOGRAM_HEAD]
        return np.concatenate([head, value["counts"].numpy()])
    return np.atleast_1d(np.asarray(value, dtype=np.float64))


@pytest.mark.parametrize("dirty", [False, True], ids=["finite", "nan-inf"])
@pytest.mark.parametrize("take_abs", [False, True], ids=["", "abs"])
@pytest.mark.parametrize("name", COMBINING)
def test_three_chunks_combine_to_the_whole(name, take_abs, dirty):
    whole = _tensor((9, 5, 4), torch.float64, dirty)
    chunks = list(whole.split(3))  # three batches, as three ranks see them
    seen = whole.abs() if take_abs else whole
    finite = seen[torch.isfinite(seen)]
    agree = lambda t: widen(float(finite.min()), float(finite.max()))  # noqa: E731 - DDP's agreed histogram range
    r = Reduce(name, abs=take_abs, bins=9 if name == "histogram" else None)

    parts = [partials.partial(r, c, agree_range=agree) for c in chunks]
    got = partials.finish(r, partials.combine(r, parts)).numpy()

    _close(got, partials.finish(r, partials.partial(r, whole, agree_range=agree)).numpy(), torch.float64)
    kwargs = {"bins": 9} if name == "histogram" else {}
    _close(got, _record(name, REDUCTIONS[name].compute(seen, **kwargs)), torch.float64)


def test_a_histogram_with_a_range_combines_its_outside_counts():
    whole = _tensor((9, 5, 4), torch.float64, dirty=True)
    r = Reduce("histogram", bins=6, range=(-1.5, 0.5))
    got = partials.finish(r, partials.combine(r, [partials.partial(r, c) for c in whole.split(3)]))
    want = _histogram(whole.numpy(), 6, (-1.5, 0.5))
    assert got[: len(HISTOGRAM_HEAD)].tolist() == [want[k] for k in HISTOGRAM_HEAD]
    assert got[len(HISTOGRAM_HEAD) :].tolist() == want["counts"].tolist()


def test_stats_records_are_in_stats_fields_order():
    t = _tensor(SHAPES["small"], torch.float64, dirty=True)
    r = Reduce("stats")
    assert len(partials.finish(r, partials.partial(r, t))) == len(STATS_FIELDS)


def test_update_ratio_is_not_recorded_from_one_tensor():
    assert not REDUCTIONS["update_ratio"].combines and not REDUCTIONS["update_ratio"].pushdown
    with pytest.raises(ValueError, match="update_ratio"):
        partials.partial(Reduce("update_ratio"), torch.ones(3))


# -- half precision: reduced as its float32 values -------------------------------------------
@pytest.mark.parametrize("range_", [None, (-0.05, 0.04)], ids=["auto", "range"])
@pytest.mark.parametrize("n", [4096, 3 * SMALL], ids=["numpy-path", "torch-path"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_half_histogram_bins_equal_numpy_of_the_float32_values(dtype, n, range_):
    g = torch.Generator().manual_seed(5)
    t = (torch.randn(n, generator=g) * 0.02).to(dtype)
    a = t.float().numpy()  # exactly the half values
    inside = a if range_ is None else a[(a >= range_[0]) & (a <= range_[1])]
    want, edges = np.histogram(inside, bins=50, range=range_)
    for h in (
        REDUCTIONS["histogram"].compute(t, range=range_),
        reduce.histogram_sync_free(t.float(), 50, range_, True),
    ):
        assert h["counts"].tolist() == want.tolist()
        assert int(h["outside"]) == a.size - inside.size
        assert float(h["lo"]) == pytest.approx(float(edges[0])) and float(h["hi"]) == pytest.approx(float(edges[-1]))


@pytest.mark.parametrize("n", [4096, 3 * SMALL], ids=["numpy-path", "torch-path"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_half_stats_and_mean_are_those_of_the_float32_values(dtype, n):
    g = torch.Generator().manual_seed(6)
    t = (torch.randn(n, generator=g) * 0.02 + 0.01).to(dtype)
    a = t.double().numpy()
    stats = REDUCTIONS["stats"].compute(t).numpy()
    _close(stats, _stats(a), torch.float32)  # as a float32 tensor's
    assert stats[1] == pytest.approx(a.mean(), rel=2e-6)  # the mean: float32 sums of float32 values
    assert float(REDUCTIONS["mean"].compute(t)) == pytest.approx(a.mean(), rel=2e-6)
    assert float(REDUCTIONS["std"].compute(t)) == pytest.approx(a.std(ddof=1), rel=2e-6)
    assert float(REDUCTIONS["norm"].compute(t)) == pytest.approx(np.sqrt((a * a).sum()), rel=1e-5)


# -- blocks of a matrix (downsample, heatmaps past their budget) -------------------------------
def _numpy_block(b: np.ndarray, agg: str) -> float:
    b = b[np.isfinite(b)]
    if agg == "absmax":
        hi, lo = b.max(), b.min()
        return float(hi if abs(hi) >= abs(lo) else lo)
    return float({"mean": b.mean(), "rms": np.sqrt((b * b).mean()), "std": b.std()}[agg])


@pytest.mark.parametrize("agg", reduce.BLOCK_AGGS)
def test_block_reduce_equals_numpy(agg):
    g = torch.Generator().manual_seed(8)
    t = torch.randn(37, 53, generator=g) * 3 + 1
    t[3, 4], t[30, 52] = float("nan"), float("inf")
    r_edges, c_edges = reduce.block_edges(37, 4), reduce.block_edges(53, 6)
    got, bad = reduce.block_reduce(t, r_edges, c_edges, agg)
    a = t.double().numpy()
    for i in range(4):
        for j in range(6):
            block = a[r_edges[i] : r_edges[i + 1], c_edges[j] : c_edges[j + 1]]
            assert float(bad[i, j]) == (~np.isfinite(block)).sum()
            assert float(got[i, j]) == pytest.approx(_numpy_block(block, agg), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("agg", reduce.BLOCK_AGGS)
def test_downsample_agg_equals_numpy(agg):
    import nnspec
    from tests.helpers import spec, view

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(40, 30))
    dash = nnspec.render(spec([f"weights of 0 | downsample(max=100, agg={agg}) | heatmap"], loss=None), model=model)
    v = view(dash)
    (note,) = [n for n in v.notes if "30×40 → " in n]
    rows, cols = (int(x) for x in note.split("→ ")[1].split(",")[0].split("×"))
    assert rows * cols <= 100
    w = model[0].weight.detach().double().numpy()
    frame = v.data
    assert len(frame) == rows * cols
    for r in frame.itertuples():  # near-equal blocks: block i spans floor(i·n/k) … floor((i+1)·n/k)
        block = w[r.row * 30 // rows : (r.row + 1) * 30 // rows, r.col * 40 // cols : (r.col + 1) * 40 // cols]
        assert r.value == pytest.approx(_numpy_block(block, agg), rel=1e-6, abs=1e-6)


# -- the tuned torch path against the implementation it replaced (issue 15) --------------------
def _old_finite_stats(t, n_total, nan, inf, total=None):
    """``reduce._finite_stats`` before issue 15 (zero count as the sum of |sign|)."""
    import math

    n = t.numel()
    flat = t.reshape(-1)
    s = (flat.sum() if total is None else total).double()
    mn, mx = torch.aminmax(flat)
    sumsq = torch.dot(flat, flat).double()
    signs = torch.sign(flat)
    abssum = torch.dot(flat, signs).double()
    nonzero = signs.abs_().sum().double()
    mean = s / n
    var = (sumsq - s * mean) / max(n - 1, 1)
    if bool(var <= 1e-4 * sumsq / n):
        var = torch.linalg.vector_norm(flat - mean.to(flat.dtype)).double() ** 2 / max(n - 1, 1)
    std = torch.sqrt(var.clamp(min=0)) if n > 1 else var * math.nan
    parts = [mean.new_tensor(float(n_total)), mean, std, mn.double(), mx.double(), abssum / n, (n - nonzero) / n]
    return torch.stack(parts + [nan.double(), inf.double()])


def _old_stats_torch(t):
    zero = torch.zeros((), dtype=torch.float64)
    total = t.sum()
    if bool(torch.isfinite(total)):
        return _old_finite_stats(t, t.numel(), zero, zero, total)
    ok = torch.isfinite(t)
    return _old_finite_stats(t[ok], t.numel(), torch.isnan(t).sum().double(), torch.isinf(t).sum().double())


def _old_histogram_torch(t, bins, range_=None):
    """``reduce.histogram_torch`` before issue 15 (float -> uint8 directly), float32/64."""
    t = t.reshape(-1)
    nan = inf = t.new_zeros((), dtype=torch.int64)
    vals = t
    mn, mx = torch.aminmax(t)
    if not bool(torch.isfinite(mn) & torch.isfinite(mx)):
        finite = torch.isfinite(t)
        nan, inf = torch.isnan(t).sum(), torch.isinf(t).sum()
        vals = t[finite]
        mn, mx = torch.aminmax(vals)
    if range_ is None:
        lo, hi = mn.double(), mx.double()
        same = hi <= lo
        lo, hi = torch.where(same, lo - 0.5, lo), torch.where(same, hi + 0.5, hi)
    else:
        lo = torch.tensor(float(range_[0]), dtype=torch.float64)
        hi = torch.tensor(float(range_[1]), dtype=torch.float64)
    scale = bins / (hi - lo)
    pos = torch.sub(vals, lo.to(vals.dtype)).mul_(scale.to(vals.dtype))
    if range_ is not None:
        pos.clamp_(0, bins)
    small = torch.uint8 if bins < 255 else torch.int32
    counts = torch.bincount(pos.to(small), minlength=bins + 1).to(torch.int64)
    counts = torch.cat([counts[: bins - 1], counts[bins - 1 : bins + 1].sum().reshape(1)])
    outside = counts.new_zeros(())
    if range_ is not None:
        below, above = (vals < lo.to(vals.dtype)).sum(), (vals > hi.to(vals.dtype)).sum()
        counts[0] -= below
        counts[-1] -= above
        outside = below + above
    return {"counts": counts, "lo": lo, "hi": hi, "nan": nan, "inf": inf, "outside": outside}


def _kinds(n: int, dtype: torch.dtype, seed: int) -> dict[str, torch.Tensor]:
    """Tensors that exercise every branch: plain, ReLU-like (many zeros), a large
    mean (the two-pass variance), bin-edge values, and NaN/Inf."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=dtype)
    dirty = x.clone()
    dirty[::97] = float("nan")
    dirty[5::89] = float("inf")
    dirty[7::83] = -float("inf")
    return {
        "randn": x,
        "relu": x.clamp(min=0),
        "offset": x * 1e-3 + 100.0,
        "grid": torch.randint(-8, 9, (n,), generator=g).to(dtype) / 4,
        "dirty": dirty,
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("n", [SMALL + 1, 3 * SMALL + 7])
def test_stats_equal_the_implementation_they_replaced(n, dtype, monkeypatch):
    monkeypatch.setattr(reduce, "_CHUNK", 4096)  # the chunked zero count too
    for name, t in _kinds(n, dtype, 11).items():
        got, old = reduce.stats(t, reduce.Scratch()).numpy(), _old_stats_torch(t).numpy()
        assert got[[0, 3, 4, 6, 7, 8]].tolist() == old[[0, 3, 4, 6, 7, 8]].tolist(), name  # counts, min, max exact
        tol = 1e-6 if dtype == torch.float32 else 1e-12
        # mean and std: float32 sums in another order (nnspec's one-read kernel, shifted
        # by a value of the data), closer to float64 than before; checked against it below
        np.testing.assert_allclose(np.delete(got, [1, 2]), np.delete(old, [1, 2]), rtol=tol, err_msg=name)
        _close(got, _stats(t.double().numpy()), dtype)


@pytest.mark.parametrize("range_", [None, (-1.0, 1.5)], ids=["auto", "range"])
@pytest.mark.parametrize("bins", [50, 64, 300])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_histogram_bins_equal_the_implementation_they_replaced(dtype, bins, range_):
    for name, t in _kinds(3 * SMALL + 7, dtype, 12).items():
        got, old = reduce.histogram(t, bins, range_, reduce.Scratch()), _old_histogram_torch(t, bins, range_)
        for k in ("counts", *HISTOGRAM_HEAD):
            assert got[k].tolist() == old[k].tolist(), (name, k)


# -- reductions already made are reused, on one thread ------------------------------------------
def _capture_counting(model, query, monkeypatch):
    from nnspec.capture import run as capture
    from nnspec.compiler.compile import compile_plan
    from nnspec.inputs.batch import Batch
    from nnspec.spec.load import load_spec

    calls = []
    real = {"stats": reduce.stats, "histogram": reduce.histogram}
    for op, fn in real.items():
        monkeypatch.setattr(reduce, op, lambda t, *a, fn=fn, **k: calls.append(t.shape) or fn(t, *a, **k))
    plan = compile_plan(load_spec({"nnspec": 1, "views": [{"query": query}]}), model)
    out = capture.run(plan, model, Batch.of(torch.randn(4, 8, generator=torch.Generator().manual_seed(1))))
    return out.values, calls


@pytest.mark.parametrize("query", ["activations of * | stats", "activations of * | histogram(bins=20)"])
def test_a_tensor_passed_on_unchanged_is_reduced_once(query, monkeypatch):
    nn = torch.nn
    model = nn.Sequential(nn.Linear(8, 30), nn.Identity(), nn.Dropout(0.5), nn.ReLU(), nn.Identity()).eval()
    values, calls = _capture_counting(model, query, monkeypatch)
    assert len(calls) == 2  # the Linear's output and the ReLU's: the Identity and Dropout pass them on
    first = [values[k] for k in sorted(values) if k[1] in ("0", "1", "2")]
    for v in first[1:]:
        if isinstance(v, dict):
            assert all(v[k].tolist() == first[0][k].tolist() for k in v)
        else:
            assert v.tolist() == first[0].tolist()


def test_a_tensor_written_in_place_is_reduced_again(monkeypatch):
    nn = torch.nn
    model = nn.Sequential(nn.Linear(8, 30), nn.ReLU(inplace=True)).eval()  # the same tensor, changed
    values, calls = _capture_counting(model, "activations of * | stats", monkeypatch)
    assert len(calls) == 2
    before, after = (values[k] for k in sorted(values))
    assert float(before[3]) < 0 and float(after[3]) == 0.0  # min before and after the ReLU


def test_remembered_reductions_die_with_their_tensor():
    scratch = reduce.Scratch()
    t = torch.randn(100)
    scratch.remember(t, "x", 1)
    assert scratch.recall(t, "x") == 1 and scratch.recall(t.view(10, 10), "x") is None
    assert scratch.recall(t, "y") is None
    t.add_(1)  # a new version
    assert scratch.recall(t, "x") is None
    scratch.remember(t, "x", 2)
    del t
    assert not scratch._memo
    with torch.inference_mode():
        u = torch.ones(3)
    scratch.remember(u, "x", 3)  # no version counter: never remembered
    assert scratch.recall(u, "x") is None


def test_cpu_reductions_run_on_one_thread_and_restore_the_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = reduce.steady(lambda t: torch.get_num_threads())(torch.ones(1000))
        assert seen == 1 and torch.get_num_threads() == 2
        big = reduce.steady(lambda t: torch.get_num_threads())(torch.ones(reduce.ONE_THREAD_MAX + 1))
        assert big == 2
        with pytest.raises(ZeroDivisionError):
            reduce.steady(lambda t: 1 / 0)(torch.ones(3))
        assert torch.get_num_threads() == 2
        reduce.stats(torch.randn(SMALL * 2))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
