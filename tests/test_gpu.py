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
