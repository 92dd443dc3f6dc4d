"""render --watch: a change to the spec or a file it extends renders again; an invalid spec keeps the last good dashboard."""

from __future__ import annotations

import os
import threading
import time

import nnspec
from nnspec.cli.watch import watch

MODEL = 'model: {factory: "tests.fixtures.models:make_tiny_mlp"}\n'


def _wait(cond, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_watch_renders_on_changes_and_keeps_the_last_good_dashboard(tmp_path):
    base = tmp_path / "base.yaml"
    spec = tmp_path / "s.yaml"
    out = tmp_path / "out"
    html = out / "s.html"
    base.write_text("nnspec: 1\ntitle: First title\n")
    spec.write_text("nnspec: 1\nextends: base.yaml\n" + MODEL + "views:\n  - query: weights of fc1 | heatmap\n")
    said, stop = [], threading.Event()

    def once():
        nnspec.render(str(spec), out=str(out))

    t = threading.Thread(target=watch, args=(str(spec), once, said.append, stop.is_set, 0.05), daemon=True)
    t.start()
    try:
        assert _wait(lambda: html.exists() and "First title" in html.read_text())
        assert _wait(lambda: any(str(base) in s for s in said))  # it watches the extended file too
        time.sleep(0.05)
        base.write_text("nnspec: 1\ntitle: Second title\n")  # a change in the file it extends
        assert _wait(lambda: "Second title" in html.read_text())
        good = html.read_text()
        spec.write_text(
            "nnspec: 1\nextends: base.yaml\n" + MODEL + "views:\n  - query: weights of fc1 | heatmpa\n  - {}\n"
        )
        assert _wait(lambda: any("error" in s and "kept the last good dashboard" in s for s in said))
        assert html.read_text() == good
        os.utime(spec)  # still invalid: still the old dashboard
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()


def _watching(spec, once, said, interval=0.02):
    stop = threading.Event()
    t = threading.Thread(target=watch, args=(str(spec), once, said.append, stop.is_set, interval), daemon=True)
    t.start()
    return stop, t


def test_watch_survives_whatever_a_spec_does(tmp_path):
    spec = tmp_path / "s.yaml"
    out = tmp_path / "out"
    html = out / "s.html"
    good = "nnspec: 1\ntitle: T@\n" + MODEL + "views:\n  - query: weights of fc1 | heatmap\n"
    bad = [
        "nnspec: 1\ntitle: a\x07bell\n" + MODEL,  # a control character
        "nnspec: 1\nviews: [unclosed\n",  # invalid YAML
        "nnspec: 1\nmodel: {factory: 'tests.fixtures.models:nosuch'}\nviews: [{query: weights of fc1 | heatmap}]\n",
        b"nnspec: 1\ntitle: \xff\xfe\n",  # not UTF-8
    ]
    said: list[str] = []
    calls = []

    def once():
        calls.append(spec.read_bytes())
        if b"raise" in calls[-1]:
            raise RuntimeError("a bug somewhere")
        nnspec.render(str(spec), out=str(out))

    spec.write_text(good.replace("@", "0"))
    stop, t = _watching(spec, once, said)
    try:
        assert _wait(lambda: html.exists() and "T0" in html.read_text())
        for i, text in enumerate([*bad, "nnspec: 1\n# raise\n"], start=1):
            n = len(said)
            spec.write_bytes(text if isinstance(text, bytes) else text.encode())
            assert _wait(lambda n=n: any("kept the last good dashboard" in s for s in said[n:])), (text, said[n:])
            assert t.is_alive() and "T0" in html.read_text()
            spec.write_text(good.replace("@", str(i)))  # fixed again: it renders again
            assert _wait(lambda i=i: f"T{i}" in html.read_text()), said[-3:]
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()


def test_an_edit_made_during_a_render_is_never_missed(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("version 0")
    for attempt in range(5):
        rendered: list[str] = []
        edited = threading.Event()

        def once(attempt=attempt, rendered=rendered, edited=edited):
            rendered.append(spec.read_text())  # what this render saw ...
            if not edited.is_set():  # ... and an edit lands while it still runs
                edited.set()
                spec.write_text(f"version {attempt + 1}")

        stop, t = _watching(spec, once, [], interval=0.01)
        try:
            assert _wait(lambda rendered=rendered, a=attempt: rendered[-1:] == [f"version {a + 1}"], timeout=10)
        finally:
            stop.set()
            t.join(10)
        assert rendered == [f"version {attempt}", f"version {attempt + 1}"]


_INTERRUPTED = """
import sys, tempfile, threading, time, _thread
sys.path.insert(0, {root!r})
import nnspec
from nnspec.lazy import load_heavy
threading.Thread(target=lambda: (time.sleep({delay}), _thread.interrupt_main()), daemon=True).start()
try:
    load_heavy()  # what nnspec.render does first: the imports complete, then Ctrl-C is raised
    nnspec.render({spec!r})
    time.sleep({delay} + 1)
except KeyboardInterrupt:
    pass
for _ in range(2):
    nnspec.render({spec!r})  # later renders in the same process work
print("ok")
"""


def test_ctrl_c_during_the_first_imports_does_not_break_later_renders():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = os.path.join(root, "specs", "quickstart.yaml")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _INTERRUPTED.format(root=root, delay=d, spec=spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in (0.3, 1.0)  # inside import torch on any machine we know
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]


def test_watch_renders_again_when_a_run_it_draws_grows(tmp_path):
    """A run recorded while the watch runs: each committed step renders again (27 → 52 steps showed nothing before)."""
    import torch

    from tests.fixtures.models import TinyMLP

    spec = tmp_path / "s.yaml"
    spec.write_text("nnspec: 1\n" + MODEL + "loss: cross_entropy\nviews:\n  - query: loss over steps\n")
    run = str(tmp_path / "runs" / "grow")
    torch.manual_seed(0)
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))

    def train(rec, steps):
        for step in steps:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            rec.step(step, loss=loss)
            opt.step()
            opt.zero_grad()

    drawn: list[int] = []
    said: list[str] = []

    def once():
        dash = nnspec.render(str(spec), runs=[run])
        drawn.append(len(dash.views[0].data))

    with nnspec.Recorder(str(spec), model, run=run, record_every=1, steps=10) as rec:
        train(rec, range(3))
        stop, t = _watching_runs(spec, once, said, [run])
        try:
            assert _wait(lambda: drawn[-1:] == [3]), (drawn, said)
            assert any(os.path.join(run, "run.sqlite") in s for s in said)  # the run's files are watched
            train(rec, range(3, 7))
            assert _wait(lambda: drawn[-1:] == [7]), (drawn, said)
        finally:
            stop.set()
            t.join(10)
    assert not t.is_alive()


def _watching_runs(spec, once, said, runs, interval=0.02):
    stop = threading.Event()
    args = (str(spec), once, said.append, stop.is_set, interval, None, (), tuple(runs))
    t = threading.Thread(target=watch, args=args, daemon=True)
    t.start()
    return stop, t


def test_watch_follows_the_factory_module_and_the_checkpoint(tmp_path, monkeypatch):
    import torch

    from nnspec.cli.watch import watched_files

    monkeypatch.chdir(tmp_path)
    name = f"watched_models_{os.getpid()}"
    module = tmp_path / f"{name}.py"
    module.write_text(
        "import torch\nclass M(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc1 = torch.nn.Linear(4, 3)\n    def forward(self, x):\n        return self.fc1(x)\n"
        "def make():\n    torch.manual_seed(0)\n    return M()\n"
    )
    torch.save(torch.nn.Linear(4, 3).state_dict(), tmp_path / "ck.pt")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"nnspec: 1\nmodel: {{factory: '{name}:make'}}\nviews:\n  - query: weights of fc1 | heatmap\n")
    shapes: list[int] = []
    said: list[str] = []

    def once():
        dash = nnspec.render(str(spec))
        assert dash.views[0].error is None, dash.views[0].error
        shapes.append(len(dash.views[0].data))

    stop, t = _watching_runs(spec, once, said, ())
    try:
        assert _wait(lambda: shapes[-1:] == [12]), (shapes, said)  # 3 x 4 weights
        assert _wait(lambda: any(str(module) in s for s in said)), said  # the imported module is watched ...
        module.write_text(module.read_text().replace("Linear(4, 3)", "Linear(4, 5)"))
        assert _wait(lambda: shapes[-1:] == [20]), (shapes, said)  # ... and imported again when it changes
    finally:
        stop.set()
        t.join(10)
    spec.write_text(spec.read_text().replace("'}", "', checkpoint: ck.pt}"))
    files = watched_files(str(spec))
    assert str(spec) in files and str(tmp_path / "ck.pt") in files and str(module) in files
    assert watched_files(str(spec), runs=[str(tmp_path / "nothing")])[-1] == str(tmp_path / "nothing")


def test_render_watch_watches_the_runs_it_draws(tmp_path, monkeypatch):
    from nnspec.cli import watch as watch_module
    from nnspec.cli.main import main

    seen = {}
    monkeypatch.setattr(watch_module, "watch", lambda spec, once, say, **kw: seen.update(kw, spec=spec))
    assert main(["render", "s.yaml", "--watch", "--run", "runs/a", "--run", "runs/b", "--set", "n=2"]) == 0
    assert seen == {"spec": "s.yaml", "runs": ("runs/a", "runs/b"), "vars": {"n": 2}, "values_files": ()}
