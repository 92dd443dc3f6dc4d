"""FSDP2 (``fully_shard``): two gloo ranks on the CPU record parameter and gradient
views from their local shards; every number is checked against the whole tensors
(``full_tensor()`` on rank 0) and against one process over the same data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

import nnspec
from nnspec.runs import messages
from tests.conftest import ROOT
from tests.helpers import spec

STATS = ("numel", "mean", "std", "min", "max", "absmean", "zero_frac", "nan", "inf")
EXACT = ("numel", "min", "max", "nan", "inf")


def _fsdp2() -> bool:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return False
    return torch.distributed.is_available()


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "fsdp_worker.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    views = json.loads((out / "views.json").read_text())
    dash = nnspec.render(spec(views, loss="cross_entropy"), runs=[str(out / "fsdp")])
    for v in dash.views:
        assert v.error is None, v.error
    return dash, json.loads((out / "expected.json").read_text()), json.loads((out / "full.json").read_text()), out


def _check(dash, want_of, exact_bins: bool) -> int:
    """Every recorded number of every view against ``want_of(step)``; returns how many were compared."""
    _, stats, norm, hist, _, _, mean, gmax = (v.data for v in dash.views)
    n = 0
    for s in range(4):
        want = want_of(s)
        for name, w in want["params"].items():
            row = stats[(stats.step == s) & (stats.layer == name)].iloc[0]
            got = [float(row[k]) for k in STATS]
            ref = w["param"]["stats"]
            exact = [got[STATS.index(k)] for k in EXACT], [ref[STATS.index(k)] for k in EXACT]
            assert exact[0] == (exact[1] if exact_bins else pytest.approx(exact[1], rel=1e-6)), name
            assert got == pytest.approx(ref, rel=1e-6, abs=1e-9), name
            g = norm[(norm.step == s) & (norm.layer == name)]["value"].item()
            assert g == pytest.approx(w["grad"]["norm"], rel=1e-6), name
            m = mean[(mean.step == s) & (mean.layer == name)]["value"].item()
            assert m == pytest.approx(w["param"]["mean"], rel=1e-6, abs=1e-9), name
            x = gmax[(gmax.step == s) & (gmax.layer == name)]["value"].item()
            assert x == pytest.approx(w["grad"]["max"], rel=1e-6, abs=1e-9), name
            counts = hist[(hist.step == s) & (hist.layer == name)].sort_values("value")["count"].tolist()[:16]
            assert counts == w["grad"]["histogram"], (s, name)  # bins exactly equal
            n += len(STATS) + 3 + len(counts)
    return n


@pytest.mark.skipif(not _fsdp2(), reason="torch.distributed.fsdp.fully_shard is not available")
def test_fsdp2_shards_reduce_to_what_the_whole_tensors_give(fsdp_run):
    """The merge of the shards' partials is exact: the same numbers as the gathered tensors."""
    dash, _, full, _ = fsdp_run
    n = _check(dash, lambda s: {"params": full[str(s)]}, exact_bins=True)
    assert n > 200


@pytest.mark.skipif(not _fsdp2(), reason="torch.distributed.fsdp.fully_shard is not available")
def test_fsdp2_two_ranks_record_what_one_process_computes_over_the_same_data(fsdp_run):
    dash, expected, _, _ = fsdp_run
    _check(dash, lambda s: expected[str(s)], exact_bins=False)
    loss, act, update = dash.views[0].data, dash.views[4].data, dash.views[5].data
    for s in range(4):
        want = expected[str(s)]
        assert loss[loss.step == s]["value"].item() == pytest.approx(want["loss"], rel=1e-6)
        assert act[act.step == s]["value"].item() == pytest.approx(want["act_mean"], rel=1e-6)
        for name in ("fc1.weight", "fc2.weight"):
            got = update[(update.step == s) & (update.layer == name)]["value"].item()
            assert got == pytest.approx(want["update_ratio"][name], rel=1e-5)


@pytest.mark.skipif(not _fsdp2(), reason="torch.distributed.fsdp.fully_shard is not available")
def test_fsdp2_an_index_into_a_sharded_parameter_is_refused_with_its_place(fsdp_run):
    *_, out = fsdp_run
    message, hint = (out / "refused.txt").read_text().split("\nhint: ")
    assert message == messages.fsdp_index("fc1.weight", "[0]")
    assert hint == messages.fsdp_hint()


class _R:
    def __init__(self, op, bins=None, range=None):
        self.op, self.abs, self.bins, self.range = op, False, bins, range


@pytest.mark.parametrize(
    "op", ["stats", "norm", "mean", "max", "min", "std", "nan_count", "inf_count", "dead_fraction"]
)
def test_shards_of_one_tensor_one_of_them_empty_combine_to_the_whole(op):
    """FSDP2's shards split dim 0 unevenly, and the last rank may hold no rows at all."""
    from nnspec.numerics import partials, reduce

    torch.manual_seed(0)
    t = torch.randn(5, 3)
    t[1, 2] = float("nan")
    shards = (t[:3], t[3:5], t[5:])  # 3 rows, 2, none
    r = _R(op)
    got = partials.finish(r, partials.combine(r, [partials.partial(r, s) for s in shards]))
    want = partials.finish(r, partials.partial(r, t))
    assert got.tolist() == pytest.approx(want.tolist(), rel=1e-12, nan_ok=True)
    if op == "stats":
        assert reduce.stats(t).tolist() == pytest.approx(got.tolist(), rel=1e-12, nan_ok=True)


def test_histogram_shards_with_an_agreed_range_add_up_to_the_whole():
    from nnspec.numerics import partials, reduce

    torch.manual_seed(1)
    t = torch.randn(7, 4)
    shards = (t[:4], t[4:], t[7:])
    lo, hi = float(t.min()), float(t.max())  # what Ranks.agree_range agrees on
    r = _R("histogram", bins=16)
    parts = [partials.partial(r, s, None, lambda _: (lo, hi)) for s in shards]
    got = partials.finish(r, partials.combine(r, parts))
    assert got[5:].tolist() == reduce.histogram(t, 16)["counts"].tolist()


@pytest.fixture
def one_rank(tmp_path):
    """A process group of one rank (gloo), torn down after the test."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="file://" + str(tmp_path / "rendezvous"), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not _fsdp2(), reason="torch.distributed.fsdp.fully_shard is not available")
def test_a_parameter_fully_shard_left_alone_is_refused_with_its_view(one_rank, tmp_path):
    from torch.distributed.fsdp import fully_shard

    from nnspec.errors import SpecError
    from tests.fixtures.models import TinyMLP

    model = TinyMLP()
    fully_shard(model.fc1)  # fc2 (and the root) not sharded: fc2's parameters are plain tensors
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec(["activations of act over steps | mean", "weights of * over steps | norm"])))
    with pytest.raises(SpecError) as e:
        nnspec.Recorder(str(path), model, run=str(tmp_path / "run"))
    assert e.value.message == messages.fsdp_not_dtensor("fc2.weight")
    assert e.value.hint == messages.fsdp_hint()
    span = e.value.span  # the view's place in the spec
    assert span is not None and span.file == str(path)
    assert "weights of *" in path.read_text().splitlines()[span.line - 1]


@pytest.mark.skipif(not _fsdp2(), reason="torch.distributed.fsdp.fully_shard is not available")
def test_one_rank_of_fsdp2_records_what_the_plain_model_does(one_rank, tmp_path):
    from torch.distributed.fsdp import fully_shard

    from tests.fixtures.models import TinyMLP

    views = ["params of * over steps | stats", "grads of * over steps | histogram(bins=8)"]
    x, y = torch.randn(6, 4, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 1, 2])
    runs = []
    for shard in (False, True):
        torch.manual_seed(0)
        model = TinyMLP()
        if shard:
            fully_shard(model)
        run = str(tmp_path / ("sharded" if shard else "plain"))
        with nnspec.Recorder(spec(views, loss="cross_entropy"), model, run=run, record_every=1) as rec:
            for step in range(2):
                torch.nn.functional.cross_entropy(model(x), y).backward()
                rec.step(step)
                model.zero_grad()
        runs.append(run)
    plain, sharded = (nnspec.render(spec(views, loss="cross_entropy"), runs=[r]) for r in runs)
    for a, b in zip(plain.views, sharded.views):
        cols = [c for c in a.data.columns if c not in ("run", "nonfinite_at", "smoothed", "height")]
        assert a.data[cols].to_dict("records") == pytest.approx(b.data[cols].to_dict("records"))
