"""nnspec's own CPU kernels (nnspec/numerics/kernels.c through numerics/native.py):
the stats vector in one read and histogram counts in one more, against numpy in
float64 and against the torch reductions they stand in for (the torch path is what
runs without a C compiler, or with NNSPEC_NATIVE=0)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from nnspec.numerics import native, reduce

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: the torch path runs")


@pytest.fixture
def torch_path(monkeypatch):
    """Within the block, the torch reductions (as on a machine without a compiler)."""

    class Path:
        def __enter__(self):
            monkeypatch.setenv("NNSPEC_NATIVE", "0")
            native.library.cache_clear()

        def __exit__(self, *exc):
            monkeypatch.setenv("NNSPEC_NATIVE", "1")
            native.library.cache_clear()

    yield Path()
    native.library.cache_clear()


def _tensors():
    g = torch.Generator().manual_seed(0)
    yield "normal", torch.randn(200_003, generator=g)
    yield "shifted (mean ≫ std)", torch.randn(300_000, generator=g) * 1e3 + 5e4
    yield "relu (many zeros, -0.0)", torch.relu(torch.randn(500_000, generator=g)) * torch.sign(torch.randn(500_000))
    yield "tiny", torch.randn(100_000, generator=g) * 1e-30
    yield "constant", torch.full((80_000,), 3.0)
    yield "huge", torch.randn(90_000, generator=g) * 1e30
    yield "strided", torch.randn(1000, 300, generator=g).t()
    yield "on bin edges", (torch.arange(131_072) % 65).float() / 64


@pytest.mark.parametrize("name,t", list(_tensors()))
def test_native_stats_equal_numpy_in_float64(name, t):
    assert native.library() is not None
    got = reduce.stats_torch(t).numpy()
    a = t.reshape(-1).double().numpy()
    want = [a.size, a.mean(), a.std(ddof=1), a.min(), a.max(), np.abs(a).mean(), np.mean(a == 0), 0, 0]
    assert got[1] == pytest.approx(want[1], abs=1e-6 * (want[2] + abs(want[1])))  # float32 sums, near-zero means
    got[1] = want[1]
    np.testing.assert_allclose(got, want, rtol=2e-6)


@pytest.mark.parametrize("name,t", list(_tensors()))
@pytest.mark.parametrize("bins,range_", [(64, None), (10, None), (300, None), (64, (-1.0, 2.0)), (7, (0.0, 0.5))])
def test_native_histograms_equal_the_torch_path_bin_for_bin(name, t, bins, range_, torch_path):
    got = reduce.histogram_torch(t, bins, range_)
    with torch_path:
        assert native.library() is None
        want = reduce.histogram_torch(t, bins, range_)
    for key in want:
        assert torch.equal(got[key], want[key]), (key, got[key], want[key])


def test_native_stats_are_at_least_as_close_to_numpy_as_the_torch_path(torch_path):
    t = torch.randn(300_000, generator=torch.Generator().manual_seed(1)) * 1e3 + 5e4
    a = t.double().numpy()
    std = a.std(ddof=1)
    got = float(reduce.stats_torch(t)[2])
    with torch_path:
        old = float(reduce.stats_torch(t)[2])
    assert abs(got - std) <= abs(old - std)
    assert got == pytest.approx(std, rel=1e-6)


def test_non_finite_values_take_the_counting_path():
    t = torch.randn(100_000, generator=torch.Generator().manual_seed(4))
    t[[3, 50, 70_000]] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    got = reduce.stats_torch(t).numpy()
    a = t.double().numpy()
    f = a[np.isfinite(a)]
    assert got[1] == pytest.approx(f.mean(), abs=1e-6 * f.std())  # float32 sums: a mean near zero, to its scale
    got[1] = f.mean()
    np.testing.assert_allclose(
        got[:6], [a.size, f.mean(), f.std(ddof=1), f.min(), f.max(), np.abs(f).mean()], rtol=2e-6
    )
    assert list(got[7:]) == [1, 2]
    h = reduce.histogram_torch(t, 16)
    assert int(h["nan"]) == 1 and int(h["inf"]) == 2 and int(h["counts"].sum()) == 100_000 - 3
    assert np.array_equal(h["counts"].numpy(), np.histogram(f.astype(np.float32), 16)[0])


@pytest.mark.parametrize("n", [64, 4097, native.EXACT_MAX])
def test_small_tensors_stats_are_float64_exact(n):
    """Up to EXACT_MAX elements the sums are carried in double: NumPy's float64 stats."""
    t = torch.randn(n, generator=torch.Generator().manual_seed(n)) * 0.01 + 3.0
    a = t.double().numpy()
    got = reduce.stats(t).numpy()
    want = [a.size, a.mean(), a.std(ddof=1), a.min(), a.max(), np.abs(a).mean(), np.mean(a == 0), 0, 0]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_large_tensor_gives_the_same_numbers_on_any_thread_count(monkeypatch, torch_path):
    """Pieces fixed by the size alone: on 1 thread or many, the same sums in the same order."""
    monkeypatch.setattr(native, "threads", lambda: 1)
    t = torch.randn(native.PARALLEL_MIN * 3 + 12_345, generator=torch.Generator().manual_seed(2)) * 2 + 1
    one = (reduce.stats_torch(t), reduce.histogram_torch(t, 64), reduce.histogram_torch(t, 10, (-1.0, 2.0)))
    monkeypatch.setattr(native, "threads", lambda: 4)  # more threads than this machine's cores: still right
    many = (reduce.stats_torch(t), reduce.histogram_torch(t, 64), reduce.histogram_torch(t, 10, (-1.0, 2.0)))
    assert torch.equal(one[0], many[0])
    for a, b in zip(one[1:], many[1:]):
        assert all(torch.equal(a[k], b[k]) for k in a)
    x = t.double().numpy()
    np.testing.assert_allclose(many[0][1:3].numpy(), [x.mean(), x.std(ddof=1)], rtol=1e-6)
    with torch_path:  # the torch passes, bin for bin
        want = (reduce.histogram_torch(t, 64), reduce.histogram_torch(t, 10, (-1.0, 2.0)))
    for a, b in zip(many[1:], want):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_nan_in_any_piece_of_a_large_tensor_is_found(monkeypatch):
    monkeypatch.setattr(native, "threads", lambda: 2)
    t = torch.randn(native.PARALLEL_MIN * 2, generator=torch.Generator().manual_seed(3))
    t[native.PARALLEL_MIN + native.PIECE + 5] = float("nan")  # in a middle piece
    t[7] = float("-inf")
    got = reduce.stats_torch(t).numpy()
    assert list(got[7:]) == [1, 1]
    f = t.double().numpy()
    f = f[np.isfinite(f)]
    np.testing.assert_allclose(got[1:5], [f.mean(), f.std(ddof=1), f.min(), f.max()], rtol=1e-5)  # torch's sums
    h = reduce.histogram_torch(t, 16)
    assert int(h["nan"]) == 1 and int(h["inf"]) == 1 and int(h["counts"].sum()) == t.numel() - 2


def test_without_a_compiler_the_torch_path_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("NNSPEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    native.library.cache_clear()
    try:
        assert native.library() is None and not native.usable(torch.ones(10))
        t = torch.randn(100_000)
        np.testing.assert_allclose(reduce.stats_torch(t)[1].item(), t.double().mean().item(), rtol=1e-5)
    finally:
        native.library.cache_clear()


def test_a_failing_build_falls_back_and_leaves_no_library(monkeypatch, tmp_path):
    broken = tmp_path / "cc"
    broken.write_text("#!/bin/sh\necho 'cc: internal compiler error' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("NNSPEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(broken))
    native.library.cache_clear()
    try:
        assert native.library() is None
        assert not list((tmp_path / "cache").glob("*.so"))
    finally:
        native.library.cache_clear()


def test_the_library_is_built_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("NNSPEC_CACHE", str(tmp_path / "cache"))
    native.library.cache_clear()
    try:
        assert native.library() is not None
        (built,) = (tmp_path / "cache").glob("kernels-*.so")
        stamp = built.stat().st_mtime_ns
        native.library.cache_clear()
        assert native.library() is not None
        assert built.stat().st_mtime_ns == stamp and len(list((tmp_path / "cache").iterdir())) == 1
    finally:
        native.library.cache_clear()


def test_torch_held_to_one_thread_for_a_reduction_leaves_the_kernels_the_callers_threads(monkeypatch):
    """reduce.steady runs torch's small ops on one thread; nnspec's kernels still split a
    large tensor over the threads the caller gave torch (at most the cores)."""
    seen: list[int] = []
    real = native.threads
    monkeypatch.setattr(native, "threads", lambda: seen.append(real()) or seen[-1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        reduce.stats(torch.randn(native.PARALLEL_MIN + 1))
        inside = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    cores = len(__import__("os").sched_getaffinity(0))
    assert seen == [min(2, cores)] and inside == 2


def test_a_histogram_after_stats_of_the_same_tensor_reuses_its_min_and_max(monkeypatch):
    """The Recorder and capture reduce a tensor's stats before its histogram: the histogram
    skips its min/max read, with the same counts; after an in-place change it reads again."""
    t = torch.randn(300_000, generator=torch.Generator().manual_seed(5))
    want = reduce.histogram(t, 64)
    reads: list[int] = []
    minmax = native.minmax
    monkeypatch.setattr(native, "minmax", lambda x: reads.append(x.numel()) or minmax(x))
    scratch = reduce.Scratch()
    reduce.stats(t, scratch)
    got = reduce.histogram(t, 64, scratch=scratch)
    assert reads == [] and all(torch.equal(got[k], want[k]) for k in want)
    t.mul_(2)  # the version counter moves: what stats saw is not this tensor any more
    got = reduce.histogram(t, 64, scratch=scratch)
    assert reads == [t.numel()] and float(got["hi"]) == pytest.approx(float(want["hi"]) * 2)
    t[0] = float("nan")  # stats of a tensor with NaN leave nothing: its finite min/max are not its ends
    reduce.stats(t, scratch)
    assert int(reduce.histogram(t, 64, scratch=scratch)["nan"]) == 1


def test_a_capture_with_stats_and_a_histogram_of_one_module_reads_its_min_and_max_once(monkeypatch):
    """Capture hands the reductions the hooked tensor itself (not a fresh detached view, whose
    Scratch entry would die with it), so the histogram takes the stats' min and max."""
    import nnspec

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 8))
    x = torch.randn(256, 64)
    alone = nnspec.render({"nnspec": 1, "views": [{"query": "activations of * | histogram"}]}, model=model, inputs=x)
    reads: list[int] = []
    minmax = native.minmax
    monkeypatch.setattr(native, "minmax", lambda t: reads.append(t.numel()) or minmax(t))
    views = [{"query": "activations of * | stats"}, {"query": "activations of * | histogram"}]
    both = nnspec.render({"nnspec": 1, "views": views}, model=model, inputs=x)
    assert reads == [] and both.ok
    pd.testing.assert_frame_equal(both.views[1].data, alone.views[0].data)
