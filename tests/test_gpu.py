"""On CUDA the numbers are the CPU's (run where a GPU exists; skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

import nnspec
from tests.fixtures.models import NaNModel, TinyMLP
from tests.helpers import spec

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

VIEWS = [
    "activations of * | stats",
    "activations of fc1 | histogram(bins=9)",
    "grads of *.weight | norm",
    "output_grads of fc1 | heatmap",
    "weights of fc1 | heatmap",
]


def _frames(model, x, y):
    dash = nnspec.render(spec(VIEWS), model=model, inputs=x, target=y)
    assert dash.ok, [v.error for v in dash.views]
    return [v.data for v in dash.views]


def test_cuda_matches_cpu():
    torch.manual_seed(0)
    cpu = TinyMLP()
    gpu = TinyMLP().cuda()
    gpu.load_state_dict(cpu.state_dict())
    x, y = torch.randn(32, 4), torch.randn(32, 3)
    for a, b in zip(_frames(cpu, x, y), _frames(gpu, x.cuda(), y.cuda()), strict=True):
        assert list(a.columns) == list(b.columns)
        for c in a.columns:
            if a[c].dtype.kind == "f":
                assert a[c].to_numpy() == pytest.approx(b[c].to_numpy(), rel=1e-4, abs=1e-6), c
            else:
                assert a[c].tolist() == b[c].tolist(), c
    assert next(gpu.parameters()).is_cuda  # left where it was


def test_cuda_counts_nonfinite():
    torch.manual_seed(0)
    m = NaNModel().cuda()
    dash = nnspec.render(spec(["activations of poison | stats"], loss=None), model=m, inputs=torch.randn(5, 3).cuda())
    row = dash.views[0].data.iloc[0]
    assert (row["nan"], row["inf"]) == (1, 2)


def test_batched_reductions_on_cuda_equal_the_cpu_ones():
    from nnspec.numerics import batched, reduce
    from tests.test_batched import HIST_KEYS, _zoo

    tensors = _zoo()
    on_gpu = [t.cuda() for t in tensors]
    for chunk, dirty in ((64, 3), (batched.CHUNK, None)):
        stats = batched.stats_many(on_gpu, chunk=chunk, dirty_rows=dirty).cpu()
        for t, row in zip(tensors, stats, strict=True):
            want = reduce.stats(t)
            assert torch.allclose(row, want, rtol=1e-5, atol=1e-6, equal_nan=True), (t.dtype, t.numel())
        for range_ in (None, (-1.0, 2.0)):
            hists = batched.histogram_many(on_gpu, 64, range_, chunk=chunk, dirty_rows=dirty)
            for t, h in zip(tensors, hists, strict=True):
                want = reduce.histogram(t, 64, range_)
                for k in HIST_KEYS:
                    assert h[k].dtype == want[k].dtype, k
                # CUDA's float rounding may move a value within rounding of an edge (as histogram_sync_free's)
                assert (h["counts"] - want["counts"]).abs().sum() <= (0 if t.dtype in reduce.HALF else 2), k
    for t, v in zip(tensors, batched.norm_many(on_gpu), strict=True):
        assert float(v) == pytest.approx(float(reduce.scalar(t, "norm")), rel=1e-5, nan_ok=True)


def _same_values(want, got) -> None:
    """The CPU's in-hook values and the GPU's deferred ones agree: histograms within 2 counts
    (bins computed in float32 on different hardware), the rest to float32 precision."""
    for key, a in want.values.items():
        b = got.values[key]
        if isinstance(a, dict):
            assert (a["counts"] - b["counts"]).abs().sum() <= 2 and int(a["nan"]) == int(b["nan"]), key
        else:
            assert torch.allclose(a.double(), b.double(), rtol=1e-4, atol=1e-6, equal_nan=True), key


def _synchronising_only_at_the_flush(monkeypatch) -> None:
    """CUDA's default path (deferred); the flush may synchronise, nothing before it may
    (the test sets ``set_sync_debug_mode("error")`` around the pass)."""
    from nnspec.capture import run as capture
    from nnspec.numerics import batched

    monkeypatch.delenv(batched.ENV, raising=False)
    flush = capture._flush

    def flush_synchronising(out):
        torch.cuda.set_sync_debug_mode("default")
        flush(out)

    monkeypatch.setattr(capture, "_flush", flush_synchronising)


def test_deferred_capture_has_no_host_synchronisation_until_the_flush(monkeypatch):
    from nnspec.capture import run as capture
    from nnspec.compiler.compile import compile_plan
    from nnspec.inputs.batch import Batch
    from nnspec.numerics import batched
    from nnspec.spec.load import load_spec
    from tests.test_batched import _Net

    _synchronising_only_at_the_flush(monkeypatch)
    torch.manual_seed(0)
    cpu = _Net().eval()
    gpu = _Net().cuda().eval()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(6, 8)
    queries = ["activations of * | stats", "activations of * | histogram(bins=16)", "activations of * | norm"]
    spec = load_spec({"nnspec": 1, "views": [{"query": q} for q in queries]})
    kept = []
    keep = batched.Deferred.keep
    monkeypatch.setattr(batched.Deferred, "keep", lambda self, t, op, *a: kept.append(op) or keep(self, t, op, *a))
    want = capture.run(compile_plan(spec, cpu), cpu, Batch.of(x))
    assert not kept  # the CPU reduces in the hooks
    plan = compile_plan(spec, gpu)
    batch = Batch.of(x.cuda())
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronisation before the flush raises
    try:
        got = capture.run(plan, gpu, batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(kept) == 3 * 3 and not got.errors  # the Identity passes the ReLU's output on: recalled, not kept
    _same_values(want, got)


def test_deferred_capture_of_in_place_residuals_on_cuda_equals_the_cpu_one(monkeypatch):
    """The hooks' fast path on CUDA (a lone tensor output kept once per version): a norm's
    output written by ``+=`` and an in-place ReLU after its hook, an Identity passing
    the result on; no synchronisation before the flush; the CPU's in-hook numbers."""
    from nnspec.capture import run as capture
    from nnspec.compiler.compile import compile_plan
    from nnspec.inputs.batch import Batch
    from nnspec.spec.load import load_spec
    from tests.test_batched import _Residual

    _synchronising_only_at_the_flush(monkeypatch)
    torch.manual_seed(0)
    cpu = _Residual().eval()
    cpu.bn.running_mean.normal_()
    gpu = _Residual().cuda().eval()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(64, 16)
    queries = ["activations of * | stats", "activations of * | histogram(bins=7)", "activations of * | norm"]
    spec = load_spec({"nnspec": 1, "views": [{"query": q} for q in queries]})
    want = capture.run(compile_plan(spec, cpu), cpu, Batch.of(x))
    plan = compile_plan(spec, gpu)
    batch = Batch.of(x.cuda())
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = capture.run(plan, gpu, batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert not got.errors and got.values.keys() == want.values.keys()
    assert float(got.values[("activation", "bn", "", "stats")][3]) < 0  # before the += and the ReLU
    _same_values(want, got)
