"""Views over steps, runs and the recorder: numbers against a hand-written loop."""

from __future__ import annotations

import copy
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import nnspec
from nnspec.cli.main import main
from nnspec.errors import SpecError
from tests.conftest import ROOT
from tests.fixtures.models import TinyMLP
from tests.helpers import iris_spec, spec, view

HEALTH = [
    "loss over steps",
    "grads of *.weight over steps | norm",
    "activations of act over steps | stats",
    "activations of fc1 over steps | histogram(bins=8)",
    "weights of fc1 over steps | update_ratio",
    "activations of act over steps | dead_fraction",
    "weights of * over steps | nan_count",
]


def _data(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _loop(model, rec=None, steps=6, lr=0.1, x=None, y=None, seen=None):
    """Plain SGD on fixed data; ``seen``: per step, what a hand computation needs."""
    x, y = (x, y) if x is not None else _data()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for step in range(steps):
        acts = {}

        def keep(name, acts=acts):
            def hook(module, args, output):
                acts.setdefault(name, output.detach().clone())  # returns None: the output stays

            return hook

        h = [model.fc1.register_forward_hook(keep("fc1")), model.act.register_forward_hook(keep("act"))]
        h = h if seen is not None else [x.remove() for x in h] and []
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        for handle in h:
            handle.remove()
        if seen is not None:
            seen[step] = {
                "loss": float(loss.detach()),
                "acts": acts,
                "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters()},
                "w": model.fc1.weight.detach().clone(),
            }
        if rec is not None:
            rec.step(step, loss=loss)
        opt.step()
        opt.zero_grad()
        if seen is not None:
            seen[step]["w_after"] = model.fc1.weight.detach().clone()
    return model


def _recorded(tmp_path, views=HEALTH, every=2, steps=6, **kw):
    torch.manual_seed(0)
    model = TinyMLP()
    hand = copy.deepcopy(model)
    run = str(tmp_path / "runs" / "exp1")
    with nnspec.Recorder(spec(views, loss="cross_entropy"), model, run=run, record_every=every) as rec:
        _loop(model, rec, steps=steps, **kw)
    seen = {}
    _loop(hand, steps=steps, seen=seen, **kw)
    return run, seen, model


def _render(views, runs, **kw):
    return nnspec.render(spec(views, loss="cross_entropy"), runs=runs, **kw)


def test_the_recorder_records_what_a_hand_computation_gives(tmp_path):
    run, seen, _ = _recorded(tmp_path)
    dash = _render(HEALTH, [run])
    steps = [0, 2, 4]
    loss = view(dash, 0).data
    assert loss["step"].tolist() == steps
    assert loss["value"].tolist() == pytest.approx([seen[s]["loss"] for s in steps], rel=1e-6)
    norms = view(dash, 1).data
    for s in steps:
        for name in ("fc1.weight", "fc2.weight"):
            got = norms[(norms.step == s) & (norms.layer == name)]["value"].item()
            assert got == pytest.approx(float(seen[s]["grads"][name].norm()), rel=1e-5)
    stats = view(dash, 2).data
    for s in steps:
        a = seen[s]["acts"]["act"].double()
        row = stats[stats.step == s].iloc[0]
        assert row["mean"] == pytest.approx(float(a.mean()), rel=1e-6)
        assert row["std"] == pytest.approx(float(a.std()), rel=1e-5)
        assert (row["min"], row["max"]) == (pytest.approx(float(a.min())), pytest.approx(float(a.max())))
        assert row["zero_frac"] == pytest.approx(float((a == 0).double().mean()))
    hist = view(dash, 3).data
    for s in steps:
        a = seen[s]["acts"]["fc1"].numpy().reshape(-1)
        counts, _ = np.histogram(a, bins=8, range=(a.min(), a.max()))
        drawn = hist[(hist.step == s)].sort_values("value")
        assert drawn["count"].tolist()[:8] == counts.tolist()  # then the closing point of the last bin
    ratios = view(dash, 4).data
    for s in steps:
        w, w2 = seen[s]["w"].double(), seen[s]["w_after"].double()
        want = float((w2 - w).norm() / w.norm())
        assert ratios[ratios.step == s]["value"].item() == pytest.approx(want, rel=1e-5)
    dead = view(dash, 5).data
    for s in steps:
        a = seen[s]["acts"]["act"]
        assert dead[dead.step == s]["value"].item() == pytest.approx(float(((a > 0).sum(0) == 0).double().mean()))
    assert set(view(dash, 6).data["value"]) == {0.0}


def test_hooks_exist_only_for_recorded_forward_passes(tmp_path):
    torch.manual_seed(0)
    model = TinyMLP()
    x, y = _data()
    armed = []
    rec = nnspec.Recorder(spec(HEALTH, loss="cross_entropy"), model, run=str(tmp_path / "r"), record_every=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(7):
        armed.append(bool(model.fc1._forward_hooks or model.act._forward_hooks))
        torch.nn.functional.cross_entropy(model(x), y).backward()
        rec.step(step)
        opt.step()
        opt.zero_grad()
    rec.close()
    assert armed == [True, False, False, True, False, False, True]
    assert not model.fc1._forward_hooks and not model.act._forward_hooks


def test_the_model_is_left_as_it_was_also_when_the_loop_raises(tmp_path):
    torch.manual_seed(0)
    model = TinyMLP()
    model.fc2.weight.requires_grad_(False)
    model.eval()
    x, y = _data()
    with pytest.raises(RuntimeError, match="boom"):
        with nnspec.Recorder(spec(HEALTH, loss="cross_entropy"), model, run=str(tmp_path / "r"), record_every=1) as rec:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            grad = model.fc1.weight.grad.clone()
            rec.step(0, loss)
            model(x)  # the next forward is armed: hooks are registered now
            raise RuntimeError("boom")
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m.training
    assert model.fc2.weight.requires_grad is False and model.fc2.weight.grad is None
    assert torch.equal(model.fc1.weight.grad, grad)
    with pytest.raises(SpecError, match="closed"):
        rec.step(1)
    # what was recorded before the error is in the run
    assert view(_render(["loss over steps"], [str(tmp_path / "r")])).data["step"].tolist() == [0]


def test_train_in_a_spec_writes_a_run_and_draws_it(tmp_path):
    d = iris_spec(["loss over steps", "grads of fc1.weight over steps[4:] | norm | line"])
    d["train"] = {"steps": 10, "record_every": 2, "optimizer": {"name": "sgd", "lr": 0.1}, "run": str(tmp_path / "a")}
    dash = nnspec.render(d)
    assert view(dash, 0).data["step"].tolist() == [0, 2, 4, 6, 8, 9]  # and the last step
    assert view(dash, 1).data["step"].tolist() == [4, 6, 8, 9]
    con = sqlite3.connect(tmp_path / "a" / "run.sqlite")
    meta = dict(con.execute("SELECT key, value FROM meta"))
    assert meta["source"] == "train" and meta["spec_hash"] and meta["model_hash"] and meta["record_every"] == "2"
    assert (meta["format"], meta["finished"], meta["steps_planned"], meta["last_step"]) == ("3", "1", "10", "9")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # finished: one self-contained file
    con.close()
    assert sorted(os.listdir(tmp_path / "a")) == ["run.lock", "run.sqlite"]  # no partial, no journal left
    again = nnspec.render(d)  # a spec's own run is replaced by its re-run: same numbers
    assert view(again, 1).data["value"].tolist() == view(dash, 1).data["value"].tolist()


def test_several_runs_side_by_side_and_what_a_run_lacks(tmp_path, capsys):
    runs = []
    for name, lr in (("slow", 0.01), ("fast", 0.5)):
        d = iris_spec(["loss over steps", "weights of fc1 over steps | histogram(bins=10)"])
        d["train"] = {
            "steps": 6,
            "record_every": 2,
            "optimizer": {"name": "sgd", "lr": lr},
            "run": str(tmp_path / name),
        }
        nnspec.render(d)
        runs.append(str(tmp_path / name))
    views = ["loss over steps", "weights of fc1 over steps | histogram(bins=10)", "grads of * over steps | norm"]
    dash = nnspec.render(iris_spec(views), runs=runs)
    loss = view(dash, 0)
    assert sorted(set(loss.data["run"])) == ["fast", "slow"]
    assert loss.vega_lite()["layer"][-1]["encoding"]["color"]["field"] == "run"
    ridges = view(dash, 1).data
    assert sorted(set(ridges["run"])) == ["fast", "slow"]
    by_layer = view(nnspec.render(iris_spec(["loss over steps | line(color=layer)"]), runs=runs))
    enc = by_layer.vega_lite()["layer"][-1]["encoding"]
    assert enc["color"]["field"] == "layer" and enc["strokeDash"]["field"] == "run"  # runs stay separate lines
    lacks = dash.views[2].error
    assert "run 'slow' has no record of grad fc1.weight | norm" in lacks and "add this view" in lacks
    path = tmp_path / "views.yaml"
    import yaml

    path.write_text(yaml.safe_dump(iris_spec(views[:2])))
    assert main(["render", str(path), "-o", str(tmp_path / "out"), "-q", "--run", runs[0], "--run", runs[1]]) == 0
    assert "views over steps: run slow, fast" in (tmp_path / "out" / "views.html").read_text()


def test_the_first_nan_step_is_marked_on_every_series_chart(tmp_path):
    d = iris_spec(
        ["loss over steps", "weights of fc1 over steps | histogram(bins=10)", "activations of * over steps | stats"]
    )
    d["train"] = {"steps": 12, "record_every": 1, "optimizer": {"name": "sgd", "lr": 1e6}, "run": str(tmp_path / "x")}
    dash = nnspec.render(d)
    losses = view(dash, 0).data
    first = int(losses[~np.isfinite(losses["value"].astype(float))]["step"].min())
    for v in dash.views:
        assert v.error is None, v.error
        assert "first NaN/Inf at step" in " ".join(v.notes)
    marked = json.dumps(view(dash, 0).vega_lite())
    assert '"color": "#c0392b"' in marked or '"color":"#c0392b"' in marked
    assert all(view(dash, i).data["nonfinite_at"].dropna().unique().tolist() in ([], [first]) for i in (0, 1, 2))
    assert f"first NaN/Inf at step {first}" in view(dash, 0).notes[0]


def test_views_over_steps_say_what_they_need(tmp_path):
    dash = nnspec.render(iris_spec(["grads of * over steps | norm"]))
    assert "needs a training run" in dash.views[0].error and "--run" in dash.views[0].error
    d = iris_spec(["weights of fc1 over steps | heatmap", "activations of * | update_ratio", "summary over steps"])
    d["train"] = {"steps": 2, "run": str(tmp_path / "e")}
    errors = [v.error for v in nnspec.render(d).views]
    assert "a view over steps records a few numbers" in errors[0]
    assert "update_ratio" in errors[1] and "over steps" in errors[1]
    assert "'summary' cannot be recorded over steps" in errors[2]  # and names the source
    with pytest.raises(SpecError, match="no run at"):
        nnspec.render(iris_spec(["loss over steps"]), runs=[str(tmp_path / "nowhere")])


def test_a_run_is_never_overwritten_by_a_recorder(tmp_path):
    run, _, _ = _recorded(tmp_path, steps=2)
    with pytest.raises(SpecError, match="exists already"):
        nnspec.Recorder(spec(HEALTH, loss="cross_entropy"), TinyMLP(), run=run)


_KILLED = """
import sys, time, torch
sys.path.insert(0, {root!r})
import nnspec
from tests.fixtures.models import TinyMLP
from tests.helpers import spec
views = ["loss over steps", "grads of *.weight over steps | norm", "activations of act over steps | stats"]
torch.manual_seed(0)
model = TinyMLP()
rec = nnspec.Recorder(spec(views, loss="cross_entropy"), model, run={run!r}, record_every=1, steps=10**6)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
for step in range(10**6):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    rec.step(step, loss=loss)
    opt.step(); opt.zero_grad()
    time.sleep(0.002)
"""


@pytest.mark.parametrize("journal", ["wal", "delete"])  # delete: the rollback journal of network file systems
def test_a_run_killed_mid_training_still_renders(tmp_path, journal):
    run = str(tmp_path / "killed")
    env = {**os.environ, "NNSPEC_RUN_JOURNAL": journal}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED.format(root=ROOT, run=run)], env=env)
    db = os.path.join(run, "run.sqlite")
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            time.sleep(0.2)
            if os.path.exists(db):
                try:
                    if sqlite3.connect(db).execute("SELECT count(*) FROM steps").fetchone()[0] >= 20:
                        break
                except sqlite3.Error:
                    pass
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    views = ["loss over steps", "grads of *.weight over steps | norm", "activations of act over steps | stats"]
    dash = _render(views, [run])
    assert nnspec.open_run(run).meta["journal"] == journal
    steps = view(dash, 0).data["step"].tolist()
    assert len(steps) >= 20 and steps == list(range(len(steps)))  # every committed step, no gaps
    for v in dash.views:  # and every series says the run is unfinished
        assert f"is unfinished: stopped at step {steps[-1]:,} of 1,000,000" in " ".join(v.notes), v.notes
    for i in (1, 2):  # every recorded step has all of its records: no half-written step
        per_step = view(dash, i).data.groupby("step").size()
        assert per_step.index.tolist() == steps and per_step.nunique() == 1


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_ddp_two_ranks_record_what_one_process_computes_over_the_same_data(tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "ddp_worker.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    expected = json.loads((tmp_path / "expected.json").read_text())
    views = json.loads((tmp_path / "views.json").read_text())
    dash = _render(views, [str(tmp_path / "ddp")])
    for i, v in enumerate(dash.views):
        assert v.error is None, v.error
        got = v.data
        for s, want in expected[str(i)].items():
            rows = got[got.step == int(s)]
            if "count" in rows:  # histogram: bins exactly equal
                assert rows.sort_values("value")["count"].tolist()[: len(want)] == want
            elif "mean" in rows:
                row = rows.iloc[0]
                assert [int(row["numel"]), float(row["min"]), float(row["max"]), int(row["nan"])] == want["exact"]
                assert [row["mean"], row["std"], row["absmean"]] == pytest.approx(want["close"], rel=1e-6)
            else:
                assert rows["value"].tolist() == pytest.approx(want, rel=1e-5)


_TRAINING = """
import sys
sys.path.insert(0, {root!r})
import nnspec
from tests.helpers import iris_spec
d = iris_spec(["loss over steps"])
d["train"] = {{"steps": 10**6, "record_every": 1, "optimizer": {{"name": "sgd", "lr": 0.01}}, "run": {run!r}}}
nnspec.render(d)
"""


def _train_spec(run, steps):
    d = iris_spec(["loss over steps"])
    d["train"] = {"steps": steps, "record_every": 1, "optimizer": {"name": "sgd", "lr": 0.01}, "run": run}
    return d


def test_a_training_killed_midway_leaves_the_previous_run_and_a_second_writer_fails_at_once(tmp_path):
    run = str(tmp_path / "a")
    first = view(nnspec.render(_train_spec(run, 30))).data["step"].tolist()
    assert first == list(range(30))
    proc = subprocess.Popen([sys.executable, "-c", _TRAINING.format(root=ROOT, run=run)])
    partial = os.path.join(run, "run.sqlite.partial")
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            time.sleep(0.1)
            try:
                if sqlite3.connect(partial).execute("SELECT count(*) FROM steps").fetchone()[0] >= 50:
                    break
            except sqlite3.Error:
                pass
        start = time.monotonic()  # meanwhile a second render of the same run fails at once
        with pytest.raises(SpecError) as e:
            nnspec.render(_train_spec(run, 30))
        assert time.monotonic() - start < 10
        assert f"run '{run}' is being written by another process (pid {proc.pid} on " in e.value.message
        with pytest.raises(SpecError, match="being written by another process"):  # and so does a Recorder
            nnspec.Recorder(spec(["loss over steps"], loss="cross_entropy"), TinyMLP(), run=run)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    dash = nnspec.render(iris_spec(["loss over steps"]), runs=[run])  # the previous complete run, as it was
    assert view(dash).data["step"].tolist() == first and view(dash).notes == []
    again = nnspec.render(_train_spec(run, 5))  # the lock died with the process; the partial is cleaned up
    assert view(again).data["step"].tolist() == list(range(5))
    assert sorted(os.listdir(run)) == ["run.lock", "run.sqlite"]


def test_a_failed_training_keeps_the_previous_run(tmp_path, monkeypatch):
    run = str(tmp_path / "a")
    nnspec.render(_train_spec(run, 6))
    from nnspec.runs import recorder

    def boom(self, step, loss=None):
        if step == 3:
            raise KeyboardInterrupt
        return real(self, step, loss)

    real = recorder.Recorder.step
    monkeypatch.setattr(recorder.Recorder, "step", boom)
    with pytest.raises(KeyboardInterrupt):
        nnspec.render(_train_spec(run, 100))
    monkeypatch.undo()
    assert sorted(os.listdir(run)) == ["run.lock", "run.sqlite"]
    assert view(nnspec.render(iris_spec(["loss over steps"]), runs=[run])).data["step"].tolist() == list(range(6))


def test_recorders_racing_on_one_new_run_get_a_clean_error(tmp_path):
    import threading

    problems, won = [], 0
    for i in range(20):
        run = str(tmp_path / f"race{i}")
        barrier = threading.Barrier(2)
        results = []

        def one(results=results, run=run, barrier=barrier):
            model = TinyMLP()
            s = spec(["loss over steps"], loss="cross_entropy")
            barrier.wait()
            try:
                with nnspec.Recorder(s, model, run=run, record_every=1) as rec:
                    for step in range(3):
                        rec.step(step, loss=1.0)
                results.append("ok")
            except SpecError as e:
                results.append("locked" if "being written" in e.message else "exists" if "exists" in e.message else e)
            except Exception as e:
                results.append(e)

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        problems += [r for r in results if not isinstance(r, str)]
        assert results.count("ok") == 1, results
        won += 1
    assert problems == [] and won == 20


def test_a_recorder_run_left_by_an_exception_says_it_is_unfinished(tmp_path):
    run = str(tmp_path / "r")
    with pytest.raises(RuntimeError):
        with nnspec.Recorder(spec(["loss over steps"], loss="cross_entropy"), TinyMLP(), run=run, steps=3000) as rec:
            rec.step(0, loss=1.0)
            raise RuntimeError("boom")
    notes = view(_render(["loss over steps"], [run])).notes
    assert notes == ["run r is unfinished: stopped at step 0 of 3,000 (killed, or still being written)"]


# -- hyperparameters ------------------------------------------------------------------------------
def test_a_train_run_stores_its_hyperparameters_and_the_dashboard_lists_them(tmp_path):
    from nnspec.runs import messages as runs_messages

    d = iris_spec(["loss over steps", "weights of fc1 | heatmap"])
    d["vars"] = {"lr": 0.05, "width": {"hidden": 6}}
    d["train"] = {
        "steps": 4,
        "batch": 8,
        "seed": 3,
        "record_every": 2,
        "optimizer": {"name": "adam", "lr": "${lr}", "betas": [0.8, 0.99]},
        "run": str(tmp_path / "a"),
    }
    dash = nnspec.render(d, vars={"lr": 0.02})  # --set lr=0.02 wins over the spec's vars
    (row,) = dash.runs
    keys = list(row)
    assert keys[0] == "run" and row["run"] == "a" and keys[1:] == sorted(keys[1:])
    assert row["optimizer"] == "Adam" and row["optimizer.lr"] == 0.02 and row["optimizer.betas"] == [0.8, 0.99]
    assert row["optimizer.weight_decay"] == 0 and row["optimizer.eps"] == 1e-08  # PyTorch's defaults too
    assert (row["steps"], row["batch"], row["seed"]) == (4, 8, 3)
    assert row["vars.lr"] == 0.02 and row["vars.width.hidden"] == 6
    con = sqlite3.connect(tmp_path / "a" / "run.sqlite")
    stored = json.loads(dict(con.execute("SELECT key, value FROM meta"))["hparams"])
    con.close()
    assert stored == {k: v for k, v in row.items() if k != "run"}
    note = runs_messages.note_draws_model(["a"])
    assert note not in dash.views[1].notes  # no --run: the trained model is the run's
    again = nnspec.render(d, runs=[str(tmp_path / "a")])  # drawn from the run alone: the same table
    assert again.runs == dash.runs
    assert note in view(again, 1).notes and note not in view(again, 0).notes  # the model's card says so


def test_a_recorder_stores_the_optimizer_and_what_it_is_told(tmp_path):
    torch.manual_seed(0)
    model = TinyMLP()
    opt = torch.optim.AdamW(model.parameters(), lr=0.003, betas=(0.9, 0.95), weight_decay=0.1)
    run = str(tmp_path / "mine")
    told = {"seed": 7, "steps": 2, "batch": 16, "note": "baseline"}
    s = spec(["loss over steps"], loss="cross_entropy", vars={"depth": 2})
    with nnspec.Recorder(s, model, run=run, record_every=1, optimizer=opt, hparams=told) as rec:
        _loop(model, rec, steps=2)
    (row,) = _render(["loss over steps"], [run]).runs
    assert row["run"] == "mine" and row["optimizer"] == "AdamW"
    assert (row["optimizer.lr"], row["optimizer.betas"], row["optimizer.weight_decay"]) == (0.003, [0.9, 0.95], 0.1)
    assert (row["seed"], row["steps"], row["batch"], row["note"], row["vars.depth"]) == (7, 2, 16, "baseline", 2)


def test_runs_without_hyperparameters_still_load(tmp_path):
    run, _, _ = _recorded(tmp_path, views=["loss over steps"])
    con = sqlite3.connect(os.path.join(run, "run.sqlite"))
    con.execute("DELETE FROM meta WHERE key = 'hparams'")  # a run recorded before runs kept them
    con.commit()
    con.close()
    dash = _render(["loss over steps"], [run])
    assert view(dash).data["step"].tolist() == [0, 2, 4] and dash.runs == [{"run": "exp1"}]
    from nnspec.runs.store import _crc

    for bad in ("[" * 100_000, "{not json", '"text"'):  # a hostile or damaged value: no hyperparameters, no error
        con = sqlite3.connect(os.path.join(run, "run.sqlite"))
        con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('hparams', ?, ?)", (bad[:60_000], _crc("hparams", bad[:60_000]))
        )
        con.commit()
        con.close()
        assert _render(["loss over steps"], [run]).runs == [{"run": "exp1"}]


class _Branchy(torch.nn.Module):
    """A block that runs only when told to (a branch not taken, a fused path)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.extra = torch.nn.Linear(4, 4)
        self.take = True

    def forward(self, x):
        h = self.fc(x)
        return self.extra(h) if self.take else h


def test_a_module_a_recorded_step_does_not_run_leaves_a_gap_and_a_note(tmp_path):
    torch.manual_seed(0)
    model = _Branchy()
    run = str(tmp_path / "branchy")
    s = spec(["activations of * over steps | stats"], loss=None)
    rec = nnspec.Recorder(s, model, run, record_every=1)
    seen = {}
    for step in range(4):
        model.take = step % 2 == 0
        x = torch.randn(8, 4)
        seen[step] = model.fc(x).detach().double()
        model(x).sum().backward()
        rec.step(step, loss=0.0)
    rec.close()
    r = nnspec.open_run(run)
    f = r.frame()
    assert sorted(f[f.series == "activation extra | stats"].step.unique()) == [0, 2]  # a gap at 1 and 3
    means = f[(f.series == "activation fc | stats") & (f.statistic == "mean")]
    assert means.set_index("step").value.to_dict() == pytest.approx({k: float(v.mean()) for k, v in seen.items()})
    assert r.meta["finished"] == "1"
    assert any("'extra' (from step 1) did not run in the recorded training steps" in n for n in r.notes)


def test_a_step_recorded_before_any_forward_pass_is_an_error(tmp_path):
    model = _Branchy()
    rec = nnspec.Recorder(spec(["activations of * over steps | stats"], loss=None), model, str(tmp_path / "r"))
    with pytest.raises(SpecError, match=r"step 0: module '\w+' did not run in the forward pass before rec.step\(0\)"):
        rec.step(0)
    assert rec.closed


def test_the_recorder_batched_as_on_a_gpu_records_what_it_records_in_its_hooks(tmp_path, monkeypatch):
    """NNSPEC_REDUCE=deferred runs on the CPU the path a GPU takes by default: parameters and
    gradients kept at rec.step and reduced together (numerics/batched.py)."""
    views = [
        "params of * over steps | histogram(bins=64)",
        "params of * over steps | stats",
        "grads of * over steps | histogram(bins=16)",
        "grads of * over steps | norm",
        "weights of fc2 over steps | abs | histogram(bins=8, range=[0, 0.5])",
    ]
    from nnspec.numerics import batched

    flushes: list[str] = []
    flush = batched.Deferred.flush
    monkeypatch.setattr(batched.Deferred, "flush", lambda self: flushes.append(mode) or flush(self))
    frames = {}
    for mode in ("in-hook", "deferred"):
        monkeypatch.setenv("NNSPEC_REDUCE", mode)
        torch.manual_seed(0)
        model = TinyMLP()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        run = str(tmp_path / mode)
        with nnspec.Recorder(spec(views, loss=None), model, run, record_every=1) as rec:
            for step in range(3):
                model(torch.randn(16, 4)).square().mean().backward()
                rec.step(step, loss=0.0)
                opt.step()
                opt.zero_grad()
        f = nnspec.open_run(run).frame()
        frames[mode] = f.sort_values(["series", "step", "statistic", "bin"]).reset_index(drop=True)
    assert flushes == ["deferred"] * 3  # one batched flush a recorded step, and only when deferred
    a, b = frames["in-hook"], frames["deferred"]
    assert len(a) == len(b) > 100
    assert a["series"].tolist() == b["series"].tolist() and a["statistic"].tolist() == b["statistic"].tolist()
    np.testing.assert_allclose(a["value"].astype(float), b["value"].astype(float), rtol=1e-12, equal_nan=True)


def test_a_loop_that_never_closes_its_recorder_keeps_its_last_step(tmp_path):
    """Steps are committed on a thread beside the loop; the interpreter's exit waits for the last one."""
    run = str(tmp_path / "r")
    code = (
        "import sys, torch\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "import nnspec\n"
        "from tests.fixtures.models import TinyMLP\n"
        "from tests.helpers import spec\n"
        "m = TinyMLP()\n"
        f"rec = nnspec.Recorder(spec(['grads of * over steps | histogram(bins=64)'], loss=None), m, {run!r}, record_every=1)\n"
        "for i in range(3):\n"
        "    m(torch.randn(4, 4)).sum().backward()\n"
        "    rec.step(i, loss=1.0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    r = nnspec.open_run(run)
    assert sorted(int(s) for s in r.frame().step.unique()) == [0, 1, 2]
    assert r.meta["finished"] == "0"


def test_a_step_axis_is_whole_steps():
    """Vega splits a span of a few steps in halves (0, 0.5, 1): a short span names each step."""
    import pandas as pd

    from nnspec.marks.steps import step_axis

    assert step_axis(pd.Series([0, 1, 2, 2])).to_dict() == {"values": [0, 1, 2], "format": ",d"}
    assert step_axis(pd.Series([10, 30])).to_dict() == {"values": list(range(10, 31)), "format": ",d"}
    assert step_axis(pd.Series([0, 500, 1000])).to_dict() == {"format": ",d"}  # Vega's nice ticks are whole there
