"""Run format 3: plain columns anyone reads, the journal a file system allows, older runs still read."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import nnspec
from nnspec.cli.main import run_dirs
from nnspec.errors import SpecError
from nnspec.numerics.reduce import STATS_FIELDS
from nnspec.runs import messages, store
from tests.conftest import ROOT

FIXTURE_V2 = os.path.join(ROOT, "tests", "fixtures", "run_format2")  # written by nnspec's format-2 writer

# A writer of synthetic records: every number a function of (step, series), so a reader can check any row.
_WRITER = """
import os, sys, time
sys.path.insert(0, {root!r})
from types import SimpleNamespace
import numpy as np
from nnspec.runs.store import RunWriter
caps = [SimpleNamespace(key=k, series_key=k, kind="grad", target=t, reduce=r) for k, t, r in {captures!r}]
w = RunWriter({run!r}, {{"source": "recorder"}}, caps, steps={steps})
for step in range({steps}):
    w.write_step(step, float(step), {{c.key: np.asarray(v, dtype=float) for c, v in zip(caps, {values}(step))}})
    time.sleep({pause})
w.wait()  # the last step's commit (it runs beside the loop) before what the test does next
{end}
"""
CAPTURES = [
    ("grad fc1.weight | norm", "fc1.weight", "norm"),
    ("activation act | stats", "act", "stats"),
    ("activation fc1 | histogram(bins=4)", "fc1", "histogram(bins=4)"),
]


def _values(step):
    stats = [10.0, step * 0.5, 1.0, -step, step, 0.5, 0.0, 0.0, 0.0]
    return [[step + 0.25], stats, [-1.0, 1.0, 0.0, 0.0, 0.0, step, 1.0, 2.0, 3.0]]


_VALUES_SRC = (
    "(lambda step: [[step + 0.25], [10.0, step * 0.5, 1.0, -step, step, 0.5, 0.0, 0.0, 0.0], "
    "[-1.0, 1.0, 0.0, 0.0, 0.0, step, 1.0, 2.0, 3.0]])"
)


def _caps():
    return [SimpleNamespace(key=k, series_key=k, kind="grad", target=t, reduce=r) for k, t, r in CAPTURES]


def _writer(run, steps, pause=0.0, end=""):
    code = _WRITER.format(root=ROOT, run=run, captures=CAPTURES, steps=steps, values=_VALUES_SRC, pause=pause, end=end)
    return [sys.executable, "-c", code]


def _check_prefix(run: store.Run) -> int:
    """Every series holds steps 0..k with exactly the numbers written; the number of steps read."""
    n = None
    for c in _caps():
        recs = run.records(c)
        assert [s for s, _ in recs] == list(range(len(recs)))
        i = [k for k, _, _ in CAPTURES].index(c.key)
        for s, v in recs:
            np.testing.assert_array_equal(v, _values(s)[i])
        n = len(recs) if n is None else min(n, len(recs))
    return n or 0


# -- the journal a file system allows ------------------------------------------------------------
@pytest.mark.parametrize(
    ("fs", "want"),
    [("ext4", "wal"), ("xfs", "wal"), ("tmpfs", "wal"), (None, "wal"), ("nfs4", "delete"), ("nfs", "delete"),
     ("cifs", "delete"), ("smb3", "delete"), ("lustre", "delete"), ("gpfs", "delete"), ("beegfs", "delete"),
     ("ceph", "delete"), ("fuse.sshfs", "delete"), ("fuse.s3fs", "delete")],
)  # fmt: skip
def test_the_journal_is_wal_on_a_local_disk_and_a_rollback_journal_on_a_network_one(monkeypatch, tmp_path, fs, want):
    monkeypatch.delenv("NNSPEC_RUN_JOURNAL", raising=False)
    monkeypatch.setattr(store, "filesystem", lambda d: fs)
    assert store.journal_mode(str(tmp_path)) == want
    w = store.RunWriter(str(tmp_path / "r"), {}, _caps())
    w.write_step(0, 1.0, {c.key: _values(0)[i] for i, c in enumerate(_caps())})
    w.wait()  # the commit runs beside the caller: done before the test reads the connection
    mode = w.con.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == want and os.path.exists(str(tmp_path / "r" / "run.sqlite-wal")) == (want == "wal")
    w.finish()
    run = store.Run(str(tmp_path / "r"))
    assert run.meta["journal"] == want and _check_prefix(run) == 1


def test_the_journal_can_be_forced_and_a_wrong_value_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setattr(store, "filesystem", lambda d: "nfs4")
    monkeypatch.setenv("NNSPEC_RUN_JOURNAL", "WAL")
    assert store.journal_mode(str(tmp_path)) == "wal"
    monkeypatch.setattr(store, "filesystem", lambda d: "ext4")
    monkeypatch.setenv("NNSPEC_RUN_JOURNAL", "delete")
    assert store.journal_mode(str(tmp_path)) == "delete"
    monkeypatch.setenv("NNSPEC_RUN_JOURNAL", "truncate")
    with pytest.raises(SpecError) as e:
        store.RunWriter(str(tmp_path / "r"), {}, _caps())
    assert e.value.message == messages.bad_journal("truncate", store.JOURNALS)


def test_the_file_system_is_read_from_mountinfo():
    if not os.path.exists("/proc/self/mountinfo"):
        pytest.skip("not Linux")
    assert store.filesystem("/") is not None
    assert store.filesystem("/proc") == "proc"
    assert store.filesystem("/proc/self/does/not/exist") == "proc"  # the nearest existing folder's


def _written(run, steps=3):
    w = store.RunWriter(run, {}, _caps())
    for step in range(steps):
        w.write_step(step, float(step), {c.key: _values(step)[i] for i, c in enumerate(_caps())})
    w.wait()
    return w


def test_a_run_finishes_while_a_dashboard_reads_it(tmp_path, monkeypatch):
    """serve / render --watch hold the run open while they draw it: finishing waits
    for them to let go, and one that holds on still sees a finished, complete run."""
    monkeypatch.setattr(store, "filesystem", lambda d: "ext4")
    monkeypatch.delenv("NNSPEC_RUN_JOURNAL", raising=False)
    run = str(tmp_path / "r")
    w = _written(run)
    reader = store.Run(run)  # the reader holds the file open in WAL mode: SQLite refuses the switch at once
    leave_wal = store._leave_wal
    monkeypatch.setattr(store, "_leave_wal", lambda con: leave_wal(con, patience=0.2))
    w.finish()  # before the fix: sqlite3.OperationalError: database is locked
    assert _check_prefix(reader) == 3
    reader.close()
    again = store.Run(run)
    assert again.meta["finished"] == "1" and _check_prefix(again) == 3 and not again.notes
    again.close()

    monkeypatch.setattr(store, "_leave_wal", leave_wal)
    run2 = str(tmp_path / "r2")  # a reader that lets go within the patience: the file ends self-contained
    w2 = _written(run2)
    reader2 = store.Run(run2)
    threading.Timer(0.3, reader2.close).start()
    w2.finish()
    assert not os.path.exists(run2 + "/run.sqlite-wal")
    con = sqlite3.connect(run2 + "/run.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()


def test_a_rollback_journal_run_read_while_it_is_written_is_read_right(tmp_path, monkeypatch):
    monkeypatch.setenv("NNSPEC_RUN_JOURNAL", "delete")
    run = str(tmp_path / "r")
    proc = subprocess.Popen(_writer(run, 150, pause=0.01), env={**os.environ})
    reads, seen = 0, []
    try:
        while proc.poll() is None or reads == 0:
            if not os.path.exists(os.path.join(run, "run.sqlite")):
                time.sleep(0.01)
                continue
            try:
                r = store.Run(run)
            except SpecError as e:
                assert e.message == messages.run_starting(run) and not seen
                continue
            seen.append(_check_prefix(r))
            assert [s for s, _ in r.losses()][: seen[-1]] == list(range(seen[-1]))
            r.close()
            reads += 1
    finally:
        proc.wait()
    assert proc.returncode == 0 and reads >= 5 and seen == sorted(seen)
    assert _check_prefix(store.Run(run)) == 150


def test_a_rollback_journal_run_killed_mid_training_loses_at_most_the_step_in_flight(tmp_path, monkeypatch):
    monkeypatch.setenv("NNSPEC_RUN_JOURNAL", "delete")
    run = str(tmp_path / "r")
    proc = subprocess.Popen(_writer(run, 1_000_000, pause=0.0))
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            time.sleep(0.1)
            try:
                if len(store.Run(run).losses()) >= 50:
                    break
            except SpecError:
                pass
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    r = store.Run(run)
    n = _check_prefix(r)
    assert n >= 50 and [s for s, _ in r.losses()] == list(range(n))  # every committed step, whole
    assert "is unfinished" in " ".join(r.notes)


def test_a_writer_killed_mid_commit_leaves_a_journal_that_reading_rolls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("NNSPEC_RUN_JOURNAL", "delete")
    run = str(tmp_path / "r")
    end = (  # a big step whose pages spill to the file before the commit, then death
        "w.con.execute('PRAGMA cache_size=2'); w.con.execute('BEGIN')\n"
        "store_rows = [(s, caps[0].key, [1.0]) for s in range(10**5, 10**5 + 3000)]\n"
        "from nnspec.runs.store import _insert\n"
        "_insert(w.con, [(s, 1, v) for s, _, v in store_rows], w.layers, w.reduces)\n"
        "os._exit(9)"
    )
    subprocess.run(_writer(run, 10, end=end), check=False)
    assert os.path.getsize(os.path.join(run, "run.sqlite-journal")) > 0
    r = store.Run(run)
    assert _check_prefix(r) == 10 and not os.path.exists(os.path.join(run, "run.sqlite-journal"))


# -- plain columns ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A run a Recorder wrote, and the numbers the Recorder computed (captured from write_step)."""
    import torch

    from tests.fixtures.models import TinyMLP
    from tests.helpers import spec, train

    run = str(tmp_path_factory.mktemp("v3") / "exp")
    written = []
    real = store.RunWriter.write_step

    def spy(self, step, loss, records, late=None):
        written.append((step, loss, {self.ids[k]: np.asarray(v, dtype=float).copy() for k, v in records.items()}))
        return real(self, step, loss, records, late)

    views = ["loss over steps", "grads of *.weight over steps | norm", "activations of act over steps | stats",
             "activations of fc1 over steps | histogram(bins=5)"]  # fmt: skip
    torch.manual_seed(0)
    model = TinyMLP()
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    store.RunWriter.write_step = spy
    try:
        with nnspec.Recorder(spec(views, loss="cross_entropy"), model, run=run, record_every=2) as rec:
            train(rec, model, x, y, opt, 6)
    finally:
        store.RunWriter.write_step = real
    return run, written


def test_pandas_reads_the_numbers_the_recorder_computed(recorded):
    run, written = recorded
    con = sqlite3.connect(os.path.join(run, "run.sqlite"))
    records = pd.read_sql("select * from records", con)
    bins = pd.read_sql("select * from bins", con)
    series = pd.read_sql("select * from series", con).set_index("id")
    assert records["value"].dtype == np.float64 and bins["count"].dtype == np.float64
    for frame in (records, bins):  # numbers and names, never bytes
        assert not any(isinstance(x, bytes) for col in frame for x in frame[col])
    n = 0
    for step, _, recs in written:
        for sid, v in recs.items():
            rows = records[(records.step == step) & (records.series == sid)].set_index("statistic")["value"]
            reduce = series.loc[sid, "reduce"]
            if reduce == "stats":
                assert rows[list(STATS_FIELDS)].tolist() == v.tolist()
            elif reduce.startswith("histogram"):
                assert rows[["lo", "hi", "nan", "inf", "outside"]].tolist() == v[:5].tolist()
                got = bins[(bins.step == step) & (bins.series == sid)].sort_values("bin")
                assert got["count"].tolist() == v[5:].tolist()
                assert got["bin_start"].iloc[0] == v[0] and got["bin_end"].iloc[-1] == v[1]
            else:
                assert rows.tolist() == v.tolist()
            n += 1
    assert n >= 3 * 4
    steps = pd.read_sql("select step, loss from steps", con)
    assert steps["loss"].tolist() == [w[1] for w in written]


def test_the_sqlite_shell_reads_them(recorded):
    run, _ = recorded
    db = os.path.join(run, "run.sqlite")
    sql = "select s.key, r.step, r.statistic, r.value from records r join series s on s.id = r.series "
    sql += "where s.reduce = 'stats' and r.statistic = 'mean' order by r.step"
    if shutil.which("sqlite3"):
        cmd = ["sqlite3", "-readonly", "-separator", "\t", db, sql]
        rows = [line.split("\t") for line in subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()]
    else:
        rows = [[str(x) for x in row] for row in sqlite3.connect(db).execute(sql)]
    want = [(s, v[1]) for s, v in store.Run(run).records(SimpleNamespace(series_key=rows[0][0]))]
    assert [int(r[1]) for r in rows] == [s for s, _ in want] and len(want) == 3
    assert [float(r[3]) for r in rows] == pytest.approx([float(v) for _, v in want], rel=1e-14)  # 15 digits shown


def test_open_run_frame_is_tidy_and_equals_the_records(recorded):
    run, _ = recorded
    r = nnspec.open_run(run)
    f = r.frame()
    assert list(f.columns) == ["run", "step", "series", "kind", "layer", "statistic", "value", "bin", "bin_start",
                               "bin_end"]  # fmt: skip
    for key in r.series:
        part = f[f.series == key]
        recs = r.records(SimpleNamespace(series_key=key))
        for step, v in recs:
            rows = part[part.step == step]
            want = list(v) if "histogram" not in key else list(v[:5]) + list(v[5:])
            assert rows["value"].tolist() == want
            if "histogram" in key:
                assert rows["bin"].dropna().tolist() == list(range(len(v) - 5))
    assert f[f.series == "loss"]["value"].tolist() == [v for _, v in r.losses()]
    assert set(r.frame("* | stats")["statistic"]) == set(STATS_FIELDS)
    assert nnspec.open_run(os.path.join(run, "run.sqlite")).frame("loss").equals(r.frame("loss"))
    with pytest.raises(SpecError, match="records no series matching"):
        r.frame("weights of nothing")


# -- format 2, and many runs ----------------------------------------------------------------------
def test_a_format_2_run_is_read_as_written_and_migrates_to_the_same_numbers(tmp_path):
    truth = json.load(open(os.path.join(FIXTURE_V2, "truth.json")))
    run = str(tmp_path / "old")
    shutil.copytree(FIXTURE_V2, run)
    for migrated in (False, True):
        r = store.Run(run)
        assert r.version == ("3" if migrated else "2") and r.notes == []
        assert r.losses() == [tuple(x) for x in truth["losses"]]
        for key, recs in truth["records"].items():
            got = r.records(SimpleNamespace(series_key=key))
            assert [(s, v.tolist()) for s, v in got] == [(s, v) for s, v in recs]
        frame = r.frame().drop(columns="run")
        r.close()
        if not migrated:
            before = frame
            assert store.migrate(run) is True
    pd.testing.assert_frame_equal(before, frame)
    assert store.migrate(run) is False
    assert store.Run(run).meta["migrated_from"] == "2"


def test_run_globs_expand_to_the_runs_they_match(tmp_path):
    for name in ("b", "a", "c"):
        w = store.RunWriter(str(tmp_path / "runs" / name), {}, _caps())
        w.finish()
    (tmp_path / "runs" / "notes").mkdir()  # not a run: a glob skips it
    pattern = str(tmp_path / "runs" / "*")
    assert run_dirs([pattern]) == [str(tmp_path / "runs" / n) for n in ("a", "b", "c")]
    assert run_dirs(["x", pattern, "y"])[0] == "x" and run_dirs(["x", pattern, "y"])[-1] == "y"
    assert run_dirs([str(tmp_path / "nothing*")]) == [str(tmp_path / "nothing*")]  # no match: "no run at …"
