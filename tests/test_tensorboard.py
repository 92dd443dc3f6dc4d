"""TensorBoard both ways: logs written by TensorBoard's writer drawn through specs (--run), and
runs exported as event files read back by TensorBoard's own EventAccumulator."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import yaml

import nnspec
from nnspec.cli.main import main
from nnspec.execute.data import histogram_edges
from nnspec.numerics.reduce import STATS_FIELDS
from nnspec.runs import tensorboard as tb
from nnspec.runs.store import Run
from tests.fixtures.models import TinyMLP
from tests.helpers import spec, train, view

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.util import tensor_util
from torch.utils.tensorboard import SummaryWriter

STEPS = [0, 10, 20, 30, 40]


def _accumulator(directory: str):
    acc = ea.EventAccumulator(
        directory, size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0, ea.COMPRESSED_HISTOGRAMS: 1}
    )
    acc.Reload()
    return acc


def _team_logs(directory: str, bins="auto") -> dict:
    """What a team's loop logs with torch's SummaryWriter (TensorBoard's event file writer)."""
    rng = np.random.default_rng(0)
    written: dict = {"loss": {}, "norm": {}, "hist": {}, "grad_hist": {}}
    w = SummaryWriter(log_dir=directory)
    for i, s in enumerate(STEPS):
        loss = 1.0 / (i + 1.3)
        w.add_scalar("train/loss", loss, s)  # TensorBoard's float32 simple_value
        written["loss"][s] = float(np.float32(loss))
        norm = 0.1 + i / 7
        w.add_scalar("grad/fc1.weight/norm", norm, s, new_style=True, double_precision=True)
        written["norm"][s] = norm
        values = rng.normal(size=200) * (1 + i)
        w.add_histogram("fc1.weight", values, s, bins=bins)
        written["hist"][s] = values
        g = rng.normal(size=50)
        w.add_histogram("fc2.weight.grad", g, s, bins=12)
        written["grad_hist"][s] = g
    w.add_scalar("lr", 0.01, 0)
    w.close()
    return written


def _render(views, runs):
    return nnspec.render(spec(views, loss="cross_entropy"), runs=runs)


def test_a_spec_draws_a_teams_tensorboard_logs_with_the_numbers_written(tmp_path):
    logs = str(tmp_path / "tb" / "baseline")
    written = _team_logs(logs)
    dash = _render(
        [
            "loss over steps",
            "grads of fc1.weight over steps | norm",
            "weights of fc1 over steps | histogram(bins=10) | ridgeline",
            "grads of fc2.weight over steps | histogram(bins=12)",
            "activations of act over steps | stats",
        ],
        [logs],
    )
    loss = view(dash, 0).data
    assert loss["step"].tolist() == STEPS
    assert loss["value"].tolist() == [written["loss"][s] for s in STEPS]  # exactly what TensorBoard stored
    assert set(loss["run"]) == {"baseline"}
    norms = view(dash, 1).data
    assert norms["layer"].unique().tolist() == ["fc1.weight"]
    assert norms["value"].tolist() == [written["norm"][s] for s in STEPS]
    for i, key in ((2, "hist"), (3, "grad_hist")):
        hist = view(dash, i).data
        assert sorted(hist["step"].unique()) == STEPS
        for s in STEPS:
            counts, edges = np.histogram(written[key][s], bins="auto" if key == "hist" else 12)
            rows = hist[hist.step == s].sort_values("value")  # the ridgeline's bins, then its closing point
            n, scale = len(counts), np.abs(edges).max()
            assert rows["count"].tolist()[:n] == counts.tolist()  # exact counts
            # edges: nnspec's equal bins over TensorBoard's first and last limit, to float64 rounding
            np.testing.assert_allclose(rows["value"][:n], edges[:-1], rtol=0, atol=1e-12 * scale)
            np.testing.assert_allclose(rows["bin_end"][:n], edges[1:], rtol=0, atol=1e-12 * scale)
            assert rows["value"].iloc[0] == edges[0] and rows["bin_end"].iloc[n - 1] == edges[-1]
    # bins=10 was asked, TensorBoard stored its own buckets: said so
    assert any("buckets TensorBoard stored" in n for n in view(dash, 2).notes)
    # a view the logs cannot answer fails alone, naming what is there, at its query
    err = dash.views[4].error
    assert err is not None and "activation/act/stats" in err and "'train/loss'" in err and "'fc1.weight'" in err
    assert "loss over steps" not in err and "activations of act" in err


def test_tensorflow_buckets_are_refused_by_name_not_rebinned(tmp_path):
    logs = str(tmp_path / "tf")
    _team_logs(logs, bins="tensorflow")
    dash = _render(["weights of fc1 over steps | histogram(bins=10)", "loss over steps"], [logs])
    assert "unequal widths" in dash.views[0].error and "'fc1.weight'" in dash.views[0].error
    assert dash.views[1].error is None


def test_a_logdir_of_runs_names_them(tmp_path):
    _team_logs(str(tmp_path / "tb" / "a"))
    _team_logs(str(tmp_path / "tb" / "b"))
    with pytest.raises(nnspec.errors.SpecError, match=r"log directory of runs \(a, b\), not one run"):
        _render(["loss over steps"], [str(tmp_path / "tb")])
    dash = _render(["loss over steps"], [str(tmp_path / "tb" / "a"), str(tmp_path / "tb" / "b")])
    assert set(view(dash, 0).data["run"]) == {"a", "b"}


def test_render_run_on_tensorboard_logs_from_the_command_line(tmp_path, capsys):
    _team_logs(str(tmp_path / "tb" / "a"))
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(
        yaml.safe_dump(spec(["loss over steps", "weights of fc1 over steps | histogram(bins=10)"], loss=None))
    )
    out = str(tmp_path / "out")
    assert main(["render", str(spec_file), "-o", out, "-q", "--run", str(tmp_path / "tb" / "a")]) == 0
    assert main(["render", str(spec_file), "-o", out, "-q", "--run", str(tmp_path / "tb")]) == 1
    assert "TensorBoard log directory of runs (a), not one run" in capsys.readouterr().err


HEALTH = [
    "loss over steps",
    "grads of *.weight over steps | norm",
    "activations of act over steps | stats",
    "activations of fc1 over steps | histogram(bins=8)",
    "weights of fc1 over steps | histogram(bins=6, range=[-0.3, 0.3])",
    "weights of fc1 over steps | update_ratio",
    "activations of act over steps | dead_fraction",
]


def _recorded(tmp_path) -> str:
    torch.manual_seed(0)
    model = TinyMLP()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
    run = str(tmp_path / "runs" / "exp1")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with nnspec.Recorder(spec(HEALTH, loss="cross_entropy"), model, run=run, record_every=2) as rec:
        train(rec, model, x, y, opt, 7)
    return run


class _Key:
    def __init__(self, key):
        self.series_key = key


def test_export_is_read_back_by_tensorboard_exactly(tmp_path, capsys):
    run = _recorded(tmp_path)
    out = str(tmp_path / "tb" / "exp1")
    assert main(["export", "tensorboard", run, out]) == 0
    files = capsys.readouterr().out.split()
    assert files and all(os.path.basename(f).startswith("events.out.tfevents.") for f in files)
    acc = _accumulator(out)
    tags = acc.Tags()

    def scalars(t):
        return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(t)]

    r = Run(run)
    try:
        assert scalars("loss") == r.losses()
        assert r.series  # every series of the run, every step, every number
        for key in r.series:
            t, op = tb.tag(key), key.split(" | ", 1)[1]
            rows = r.records(_Key(key))
            assert rows
            if "stats" in op:
                for j, f in enumerate(STATS_FIELDS):
                    assert scalars(f"{t}/{f}") == [(s, float(v[j])) for s, v in rows]
            elif "histogram" in op:
                got = acc.Histograms(t)
                assert [e.step for e in got] == [s for s, _ in rows]
                for e, (_, v) in zip(got, rows):
                    h, counts = e.histogram_value, v[5:]
                    lo, hi = float(v[0]), float(v[1])
                    assert list(h.bucket) == [0.0, *counts.tolist()]
                    assert list(h.bucket_limit) == [lo, *histogram_edges(lo, hi, len(counts))[1]]
                    assert (h.min, h.max, h.num) == (lo, hi, float(counts.sum()))
                outside = [(s, float(v[4])) for s, v in rows if v[4]]
                assert scalars(f"{t}/outside") == outside if outside else f"{t}/outside" not in tags["tensors"]
            else:
                assert scalars(t) == [(s, float(v[0])) for s, v in rows]
    finally:
        r.close()
    # and the exported logs draw through the spec exactly as the run itself
    mine, theirs = _render(HEALTH, [run]), _render(HEALTH, [out])
    for a, b in zip(mine.views, theirs.views):
        assert a.error is None and b.error is None, (a.error, b.error)
        assert a.data.equals(b.data), a.query


def test_export_refuses_bad_inputs_and_never_overwrites(tmp_path, capsys):
    run = _recorded(tmp_path)
    assert main(["export", "tensorboard", str(tmp_path / "nowhere"), str(tmp_path / "o")]) == 1
    assert "no run at" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")
    out = str(tmp_path / "o2")
    assert main(["export", "tensorboard", run, out]) == 0
    before = {f: os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)}
    assert main(["export", "tensorboard", run, out]) == 1
    assert "holds TensorBoard event files already" in capsys.readouterr().err
    assert {f: os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)} == before
    (tmp_path / "file").write_text("x")
    assert main(["export", "tensorboard", run, str(tmp_path / "file")]) == 1
    assert main(["export", "tensorboard", run, str(tmp_path / "file" / "under")]) == 1
    assert "cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["export", "csv", run, out])
    assert e.value.code == 2


def test_damaged_event_files_are_the_runs_error_or_noted(tmp_path):
    logs = tmp_path / "bad"
    logs.mkdir()
    (logs / "events.out.tfevents.1.host").write_bytes(b"\xff" * 64)
    with pytest.raises(nnspec.errors.SpecError, match="cannot read TensorBoard logs .*no record could be read"):
        _render(["loss over steps"], [str(logs)])
    good = str(tmp_path / "good")
    written = _team_logs(good)
    (path,) = [os.path.join(good, f) for f in os.listdir(good)]
    data = open(path, "rb").read()
    for name, damaged in (("cut", data[:-7]), ("flipped", data[:-40] + bytes([data[-40] ^ 0xFF]) + data[-39:])):
        os.makedirs(tmp_path / name)
        with open(tmp_path / name / os.path.basename(path), "wb") as f:
            f.write(damaged)
        v = view(_render(["loss over steps"], [str(tmp_path / name)]))
        assert v.data["value"].tolist() == [written["loss"][s] for s in STEPS]  # what came before, drawn
        assert any("could not be read" in n for n in v.notes), v.notes


def test_the_first_nonfinite_step_of_tensorboard_logs_is_marked(tmp_path):
    from nnspec.execute import messages

    logs = str(tmp_path / "nan")
    w = SummaryWriter(log_dir=logs)
    for s, v in ((0, 1.0), (10, float("nan")), (20, 0.5)):
        w.add_scalar("loss", v, s)
    w.close()
    v = view(_render(["loss over steps"], [logs]))
    assert v.data["step"].tolist() == [0, 10, 20]
    assert messages.note_first_nonfinite_step(10) in v.notes


def test_scalars_from_tensorboards_own_writer(tmp_path):
    from tensorboard.summary import Writer

    logs = str(tmp_path / "own")
    w = Writer(logs)  # tensorboard's own writer: scalars as float32 tensors
    for i, s in enumerate(STEPS):
        w.add_scalar("loss", 1.0 / (i + 3), s)
        w.add_scalar("grad/fc2.weight/norm", 0.5 + i, s)
    w.close()
    dash = _render(["loss over steps", "grads of fc2.weight over steps | norm"], [logs])
    assert view(dash, 0).data["value"].tolist() == [float(np.float32(1.0 / (i + 3))) for i in range(5)]
    assert view(dash, 1).data["value"].tolist() == [0.5 + i for i in range(5)]
    assert view(dash, 1).data["step"].tolist() == STEPS


def test_any_scalar_tag_of_a_teams_logs_is_drawn(tmp_path):
    """``scalars of PATTERN over steps``: the tags a team logs (train/accuracy, lr) by glob,
    each a series with exactly the values TensorBoard stored; no match names the tags there."""
    logs = str(tmp_path / "tb" / "baseline")
    _team_logs(logs)
    w = SummaryWriter(log_dir=logs)
    acc = {s: 0.5 + s / 100 for s in STEPS}
    for s in STEPS:
        w.add_scalar("train/accuracy", acc[s], s, new_style=True, double_precision=True)
    w.close()
    dash = _render(["scalars of train/* over steps", "scalars of lr over steps", "scalars of val/* over steps"], [logs])
    train = view(dash, 0).data
    assert sorted(train["layer"].unique()) == ["train/accuracy", "train/loss"]
    got = train[train.layer == "train/accuracy"]
    assert got["step"].tolist() == STEPS and got["value"].tolist() == [acc[s] for s in STEPS]
    assert view(dash, 1).data["value"].tolist() == [pytest.approx(0.01)]
    err = dash.views[2].error
    assert "no scalar matching val/*" in err and "train/accuracy" in err and "lr" in err
    assert dash.views[0].error is None and dash.views[1].error is None


def test_scalars_of_a_recorded_run_are_its_loss(tmp_path):
    from nnspec.runs.recorder import Recorder

    torch.manual_seed(0)
    model = TinyMLP()
    run = str(tmp_path / "r")
    rec = Recorder(spec(["loss over steps"]), model, run, record_every=1)
    losses = []
    for step in range(3):
        loss = model(torch.randn(4, 4)).pow(2).mean()
        loss.backward()
        rec.step(step, loss)
        losses.append(float(loss.detach()))
        model.zero_grad()
    rec.close()
    data = view(_render(["scalars over steps"], [run])).data
    assert data["layer"].unique().tolist() == ["loss"]
    assert data["value"].tolist() == pytest.approx(losses, rel=1e-12)


# -- hyperparameters (the hparams plugin) --------------------------------------------------------
def _session_start(directory: str) -> dict:
    """The hparams plugin's session start info in ``directory``'s own event files, read with
    TensorBoard's own accumulator and plugin metadata parser."""
    from tensorboard.plugins.hparams import metadata

    content = _accumulator(directory).PluginTagToContent(metadata.PLUGIN_NAME)
    info = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


def test_hparams_logged_with_add_hparams_are_the_runs_table(tmp_path):
    logs = str(tmp_path / "tb" / "baseline")
    _team_logs(logs)
    with SummaryWriter(log_dir=logs) as w:  # default run_name: written into logs/<time>/
        w.add_hparams({"lr": 0.01, "batch": 32, "optimizer": "Adam", "nesterov": False}, {"hparam/loss": 0.3})
    assert len(tb.logdir_runs(logs)) == 1
    r = tb.TensorBoardRun(logs)
    assert r.hparams == {"lr": 0.01, "batch": 32, "optimizer": "Adam", "nesterov": False}
    assert isinstance(r.hparams["batch"], int)  # the plugin's doubles: whole numbers back as integers
    dash = _render(["loss over steps"], [logs])
    assert dash.runs == [{"run": "baseline", "batch": 32, "lr": 0.01, "nesterov": False, "optimizer": "Adam"}]
    assert '"optimizer"' in dash.html() and '"Adam"' in dash.html()  # the page's Runs table


def test_hparams_in_the_runs_own_files_win_and_logs_without_any_have_none(tmp_path):
    from tensorboard.plugins.hparams import summary_v2

    plain = str(tmp_path / "plain")
    _team_logs(plain)
    assert tb.TensorBoardRun(plain).hparams == {}
    logs = str(tmp_path / "own")
    _team_logs(logs)
    with SummaryWriter(log_dir=logs) as w:
        w.add_hparams({"lr": 0.5, "seed": 1}, {}, run_name="older")
        w.file_writer.add_summary(summary_v2.hparams_pb({"lr": 0.25, "width": 1.5}))  # TensorBoard's own writer
    assert tb.TensorBoardRun(logs).hparams == {"lr": 0.25, "seed": 1, "width": 1.5}


def test_damaged_hparams_are_noted_and_the_run_still_draws(tmp_path):
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata

    logs = str(tmp_path / "damaged")
    written = _team_logs(logs)
    bad = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=b"\xff\xff\xff"))
    with SummaryWriter(log_dir=logs) as w:
        w.file_writer.add_summary(Summary(value=[Summary.Value(tag="_hparams_/session_start_info", metadata=bad)]))
    r = tb.TensorBoardRun(logs)
    assert r.hparams == {}
    assert any("the hyperparameters in its event files could not be read" in n for n in r.notes), r.notes
    dash = _render(["loss over steps"], [logs])
    assert dash.views[0].error is None and dash.views[0].data["value"].tolist() == list(written["loss"].values())


def _recorded_with_hparams(tmp_path) -> str:
    """A short run with its optimizer's arguments and the user's hyperparameters, a list and a null among them."""
    torch.manual_seed(0)
    model = TinyMLP()
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    run = str(tmp_path / "runs" / "exp1")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    user = {"width": 6, "tags": ["a", "b"], "note": None}
    with nnspec.Recorder(spec(["loss over steps"], loss="cross_entropy"), model, run=run, record_every=1,
                         optimizer=opt, hparams=user) as rec:  # fmt: skip
        train(rec, model, x, y, opt, 3)
    return run


def test_export_writes_the_runs_hparams_for_tensorboards_hparams_plugin(tmp_path, capsys):
    run = _recorded_with_hparams(tmp_path)
    r = Run(run)
    hparams = r.hparams
    r.close()
    assert hparams["optimizer"] == "Adam" and hparams["optimizer.betas"] == [0.9, 0.999] and hparams["note"] is None
    out = str(tmp_path / "tb" / "exp1")
    assert main(["export", "tensorboard", run, out]) == 0
    stored = _session_start(out)
    want = {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in hparams.items()}
    assert stored == {k: float(v) if type(v) is int else v for k, v in want.items()}  # numbers are doubles
    assert tb.TensorBoardRun(out).hparams == want  # and read back as the run's own
    assert _render(["loss over steps"], [out]).runs == [{"run": "exp1", **want}]


# -- an export is all or nothing -----------------------------------------------------------------
def _failing_writer(monkeypatch, after: int):
    """SummaryWriter.add_scalar raising a full disk's error at each writer's ``after``-th call."""
    original = SummaryWriter.add_scalar

    def add_scalar(self, *args, **kwargs):
        self._test_calls = getattr(self, "_test_calls", 0) + 1
        if self._test_calls == after:
            raise OSError(28, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SummaryWriter, "add_scalar", add_scalar)


def test_an_export_failing_midway_leaves_nothing_and_says_where(tmp_path, capsys, monkeypatch):
    run = _recorded(tmp_path)
    parent = tmp_path / "tb"
    parent.mkdir()
    (parent / "existing").mkdir()
    (parent / "existing" / "notes.txt").write_text("kept")
    _failing_writer(monkeypatch, after=12)
    for out in (parent / "new", parent / "existing"):
        assert main(["export", "tensorboard", run, str(out)]) == 1
        err = capsys.readouterr().err
        assert f"exporting run '{run}' to '{out}' failed at series '" in err and "at step " in err, err
        assert "No space left on device" in err and f"nothing was written to '{out}'" in err
        assert "Traceback" not in err
    assert sorted(os.listdir(parent)) == ["existing"]  # no new directory, no temporary one beside
    assert os.listdir(parent / "existing") == ["notes.txt"]
    assert (parent / "existing" / "notes.txt").read_text() == "kept"
    monkeypatch.undo()  # the same export, the writer working: complete, in place
    assert main(["export", "tensorboard", run, str(parent / "existing")]) == 0
    assert tb.is_logdir(str(parent / "existing")) and sorted(os.listdir(parent)) == ["existing"]
    mine, theirs = (
        _render(["loss over steps"], [r]).views[0].data.drop(columns="run") for r in (run, str(parent / "existing"))
    )
    assert mine.equals(theirs)


def test_an_export_failing_from_the_command_line_is_exit_1_without_a_traceback(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    run = _recorded(tmp_path)
    out = tmp_path / "tb" / "exp1"
    code = (
        "import sys, torch.utils.tensorboard as t\n"
        "def boom(self, *a, **k): raise OSError(5, 'Input/output error')\n"
        "t.SummaryWriter.add_histogram_raw = boom\n"
        "from nnspec.cli.main import main\n"
        f"sys.exit(main(['export', 'tensorboard', {run!r}, {str(out)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "failed at series '" in done.stderr and "histogram" in done.stderr and "Input/output error" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() and not out.parent.exists()  # nor the parent the export would have made
