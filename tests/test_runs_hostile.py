"""Corrupt and hostile run files: each one gives a clean error naming what is
wrong, or renders the truth (the numbers of the intact run), in bounded time.
Never an internal error, a raw SQLite error, a hang or silently changed numbers."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import time

import pandas as pd
import pytest

import nnspec
from nnspec.errors import InternalError, NnspecError
from nnspec.runs import store
from tests.helpers import iris_spec

VIEWS = [
    "loss over steps",
    "grads of fc1.weight over steps | norm",
    "activations of * over steps | stats",
    "weights of fc1 over steps | histogram(bins=6)",
]
SECONDS = 10  # each case, render included
INFINITE = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r)"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """An intact run and what it draws."""
    d = iris_spec(VIEWS)
    d["train"] = {"steps": 8, "record_every": 2, "optimizer": {"name": "sgd", "lr": 0.1}}
    d["train"]["run"] = str(tmp_path_factory.mktemp("good") / "run")
    nnspec.render(d)
    truth = nnspec.render(iris_spec(VIEWS), runs=[d["train"]["run"]])
    assert all(v.error is None for v in truth.views)
    return d["train"]["run"], [v.data for v in truth.views]


def _copy(good, tmp_path) -> str:
    run = str(tmp_path / "run")
    shutil.copytree(good[0], run)
    return run


def _db(run):
    return os.path.join(run, store.FILE)


def _sql(run, *statements):
    con = sqlite3.connect(_db(run), isolation_level=None)
    for s in statements:
        con.execute(s)
    con.close()


def _outcome(run, good) -> tuple[str, str]:
    """('error', message) or ('truth', notes); anything else fails the test."""
    start = time.monotonic()
    try:
        dash = nnspec.render(iris_spec(VIEWS), runs=[run])
    except NnspecError as e:
        assert not isinstance(e, InternalError), str(e)
        assert "cannot read run" in e.message or "no run at" in e.message, e.message
        return "error", e.message
    finally:
        assert time.monotonic() - start < SECONDS
    errors = [v.error for v in dash.views if v.error]
    if errors:
        for e in errors:
            assert "internal" not in e.lower() and ("cannot read run" in e or "has no record" in e), e
        return "error", errors[0]
    for v, want in zip(dash.views, good[1]):
        pd.testing.assert_frame_equal(v.data.reset_index(drop=True), want.reset_index(drop=True))
    return "truth", " ".join(n for v in dash.views for n in v.notes)


def _truncate(n):
    def f(run):
        size = os.path.getsize(_db(run))
        with open(_db(run), "r+b") as fh:
            fh.truncate(n if n >= 0 else size + n)

    return f


def _write(data: bytes):
    def f(run):
        with open(_db(run), "wb") as fh:
            fh.write(data)

    return f


def _flip(fraction):
    def f(run):
        size = os.path.getsize(_db(run))
        at = min(size - 1, int(size * fraction))
        with open(_db(run), "r+b") as fh:
            fh.seek(at)
            b = fh.read(1)
            fh.seek(at)
            fh.write(bytes([b[0] ^ 0x5A]))

    return f


def _replace_file(kind):
    def f(run):
        os.remove(_db(run))
        if kind == "dir":
            os.mkdir(_db(run))
        elif kind == "fifo":
            os.mkfifo(_db(run))
        elif kind == "dev":
            os.symlink("/dev/zero", _db(run))

    return f


def _stmts(*s):
    return lambda run: _sql(run, *s)


def _first_record_blob(n_numbers, fix_crc=True):
    """One record of the wrong length, with a checksum that matches it (a forged file)."""

    def f(run):
        con = sqlite3.connect(_db(run), isolation_level=None)
        step, sid = con.execute("SELECT step, series FROM records ORDER BY rowid LIMIT 1").fetchone()
        blob = bytes(8 * n_numbers)
        crc = store._crc(step, sid, blob) if fix_crc else 0
        con.execute("UPDATE records SET value = ?, crc = ? WHERE step = ? AND series = ?", (blob, crc, step, sid))
        con.close()

    return f


def _to_format_1(run):
    _sql(
        run,
        *[f"ALTER TABLE {t} DROP COLUMN crc" for t in ("meta", "series", "steps", "records")],
        "UPDATE meta SET value = '1' WHERE key = 'format'",
    )


CASES = {
    # not a run at all
    "empty file": _write(b""),
    "text file": _write(b"hello, I am not a database\n" * 100),
    "random bytes": _write(random.Random(0).randbytes(8192)),
    "sqlite header then junk": _write(b"SQLite format 3\x00" + random.Random(1).randbytes(8192)),
    "a directory": _replace_file("dir"),
    "a FIFO": _replace_file("fifo"),
    "a link to /dev/zero": _replace_file("dev"),
    "no run.sqlite": _replace_file("none"),
    # truncated
    "truncated to 100 bytes": _truncate(100),
    "truncated to one page": _truncate(4096),
    "truncated by half": lambda run: _truncate(os.path.getsize(_db(run)) // 2)(run),
    "truncated by one byte": _truncate(-1),
    # tables dropped, renamed, reshaped
    "records dropped": _stmts("DROP TABLE records"),
    "meta dropped": _stmts("DROP TABLE meta"),
    "steps renamed": _stmts("ALTER TABLE steps RENAME TO steps_old"),
    "a column renamed": _stmts("ALTER TABLE records RENAME COLUMN value TO v"),
    "an extra table": _stmts("CREATE TABLE extra(x)"),
    "crc dropped from one table": _stmts("ALTER TABLE records DROP COLUMN crc"),
    # views, triggers, generated columns, virtual tables
    "records an infinite view": _stmts(
        "ALTER TABLE records RENAME TO r0",
        f"CREATE VIEW records AS {INFINITE} SELECT i AS step, 1 AS series, zeroblob(8) AS value, 0 AS crc FROM r",
    ),
    "meta an infinite view": _stmts(
        "ALTER TABLE meta RENAME TO m0",
        f"CREATE VIEW meta AS {INFINITE} SELECT 'k' || i AS key, hex(zeroblob(1000)) AS value, 0 AS crc FROM r",
    ),
    "a trigger": _stmts("CREATE TRIGGER t AFTER INSERT ON steps BEGIN DELETE FROM records; END"),
    "a view beside the tables": _stmts(f"CREATE VIEW v AS {INFINITE} SELECT i FROM r"),
    "a generated column": _stmts(
        "ALTER TABLE records RENAME TO r0",
        "CREATE TABLE records(step, series, value, crc, big AS (zeroblob(100000000)))",
        "INSERT INTO records(step, series, value, crc) SELECT * FROM r0",
        "DROP TABLE r0",
    ),
    # sizes
    "a giant blob": _stmts("UPDATE records SET value = zeroblob(20000000) WHERE rowid = 1"),
    "a giant meta value": _stmts("UPDATE meta SET value = hex(zeroblob(5000000)) WHERE key = 'spec_name'"),
    "too many meta rows": _stmts(f"INSERT INTO meta {INFINITE} SELECT 'k' || i, 'v', 0 FROM r LIMIT 200000"),
    "a record of the wrong length": _first_record_blob(3),
    "an empty record": _first_record_blob(0),
    "a text record": _stmts("UPDATE records SET value = 'abc' WHERE rowid = 1"),
    "a text loss": _stmts("UPDATE steps SET loss = 'abc' WHERE step = 2"),
    # versions and checksums
    "format 99": _stmts("UPDATE meta SET value = '99' WHERE key = 'format'"),
    "format removed": _stmts("DELETE FROM meta WHERE key = 'format'"),
    "format 1 with checksums": lambda run: _sql(
        run, f"UPDATE meta SET value = '1', crc = {store._crc('format', '1')} WHERE key = 'format'"
    ),
    "a number changed": _stmts("UPDATE records SET value = zeroblob(length(value)) WHERE rowid = 2"),
    "a loss changed": _stmts("UPDATE steps SET loss = loss + 1 WHERE step = 4"),
    "a meta value changed": _stmts("UPDATE meta SET value = 'other' WHERE key = 'spec_name'"),
    "a series key changed": _stmts("UPDATE series SET reduce = 'sum' WHERE id = 1"),
    # damage that leaves the truth: it must render, unchanged
    "an index added": _stmts("CREATE INDEX i ON records(series)"),
    "a garbage WAL beside it": lambda run: open(_db(run) + "-wal", "wb").write(random.Random(2).randbytes(4096)),
    "format 1 (older nnspec)": _to_format_1,
    "unfinished": _stmts("DELETE FROM meta WHERE key = 'finished'"),
}
FLIPS = [i / 23 for i in range(23)]  # byte flips across the whole file


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_run_file_gives_a_clean_error_or_the_truth(good, tmp_path, name):
    run = _copy(good, tmp_path)
    CASES[name](run)
    kind, text = _outcome(run, good)
    expect_truth = {"an index added", "a garbage WAL beside it", "format 1 (older nnspec)", "unfinished"}
    assert (kind == "truth") == (name in expect_truth), (name, kind, text)
    if name == "format 1 (older nnspec)":
        assert "no checksums" in text
    if name == "unfinished":
        assert "is unfinished: stopped at step 7 of 8" in text


def test_byte_flips_anywhere_give_a_clean_error_or_the_unchanged_numbers(good, tmp_path):
    outcomes = []
    for i, at in enumerate(FLIPS):
        run = str(tmp_path / f"flip{i}" / "run")
        shutil.copytree(good[0], run)
        _flip(at)(run)
        outcomes.append(_outcome(run, good)[0])  # never changed numbers: _outcome compares them
    assert "error" in outcomes  # most flips land in data that the checksums cover


def test_the_size_cap_refuses_unread(good, tmp_path, monkeypatch):
    run = _copy(good, tmp_path)
    monkeypatch.setattr(store, "MAX_RUN_BYTES", 1000)
    kind, text = _outcome(run, good)
    assert kind == "error" and "more than nnspec reads" in text


def test_a_slow_query_is_stopped(good, tmp_path, monkeypatch):
    run = _copy(good, tmp_path)
    _sql(run, f"INSERT INTO records {INFINITE} SELECT 1000 + i, 1, zeroblob(8), 0 FROM r LIMIT 300000")
    monkeypatch.setattr(store, "QUERY_SECONDS", 0.0)
    kind, text = _outcome(run, good)
    assert kind == "error" and "took longer than" in text
