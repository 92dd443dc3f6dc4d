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


def _row(table, n=0):
    """The n-th row of a table (format 3's tables have no rowid)."""
    key = "series, step, statistic" if table == "records" else "series, step, bin"
    return f"({key}) = (SELECT {key} FROM {table} ORDER BY {key} LIMIT 1 OFFSET {n})"


def _forged(statement):
    """A row added with a checksum that matches it (a forged file): a record of the wrong length."""

    def f(run):
        con = sqlite3.connect(_db(run), isolation_level=None)
        if statement == "extra":
            step, sid, layer = con.execute("SELECT step, series, layer FROM records LIMIT 1").fetchone()
            row = (step, sid, layer, "extra", 1.0)
            con.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", (*row, store._crc(*row)))
        else:  # one bin more
            step, sid, i, a, b, n = con.execute("SELECT * FROM bins ORDER BY bin DESC LIMIT 1").fetchone()[:6]
            row = (step, sid, i + 1, b, b + 1.0, 1.0)
            con.execute("INSERT INTO bins VALUES (?, ?, ?, ?, ?, ?, ?)", (*row, store._crc(*row)))
        con.close()

    return f


def _to_format(version):
    """The same run as an older nnspec wrote it: format 2 (a record one float64 blob), or 1 (no checksums)."""

    def f(run):
        r = store.Run(run)
        recs = {sid: r._records(sid) for sid in r.reduces}
        r.close()
        con = sqlite3.connect(_db(run), isolation_level=None)
        con.execute("BEGIN")
        con.execute("DROP TABLE records")
        con.execute("DROP TABLE bins")
        con.execute(
            "CREATE TABLE records(step INTEGER NOT NULL, series INTEGER NOT NULL, value BLOB NOT NULL, "
            "crc INTEGER NOT NULL, PRIMARY KEY (step, series))"
        )
        for sid, rows in recs.items():
            for step, v in rows:
                blob = v.astype("<f8").tobytes()
                con.execute("INSERT INTO records VALUES (?, ?, ?, ?)", (step, sid, blob, store._crc(step, sid, blob)))
        con.execute("UPDATE meta SET value = '2', crc = ? WHERE key = 'format'", (store._crc("format", "2"),))
        con.execute("COMMIT")
        if version == "1":
            for t in ("meta", "series", "steps", "records"):
                con.execute(f"ALTER TABLE {t} DROP COLUMN crc")
            con.execute("UPDATE meta SET value = '1' WHERE key = 'format'")
        con.close()

    return f


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
    "bins dropped": _stmts("DROP TABLE bins"),
    "a bins column renamed": _stmts("ALTER TABLE bins RENAME COLUMN count TO n"),
    # views, triggers, generated columns, virtual tables
    "records an infinite view": _stmts(
        "ALTER TABLE records RENAME TO r0",
        f"CREATE VIEW records AS {INFINITE} SELECT i AS step, 1 AS series, 'fc1' AS layer, 'norm' AS statistic, "
        "1.0 AS value, 0 AS crc FROM r",
    ),
    "meta an infinite view": _stmts(
        "ALTER TABLE meta RENAME TO m0",
        f"CREATE VIEW meta AS {INFINITE} SELECT 'k' || i AS key, hex(zeroblob(1000)) AS value, 0 AS crc FROM r",
    ),
    "a trigger": _stmts("CREATE TRIGGER t AFTER INSERT ON steps BEGIN DELETE FROM records; END"),
    "a view beside the tables": _stmts(f"CREATE VIEW v AS {INFINITE} SELECT i FROM r"),
    "a generated column": _stmts(
        "ALTER TABLE records RENAME TO r0",
        "CREATE TABLE records(step, series, layer, statistic, value, crc, big AS (zeroblob(100000000)))",
        "INSERT INTO records(step, series, layer, statistic, value, crc) SELECT * FROM r0",
        "DROP TABLE r0",
    ),
    # sizes
    "a giant blob": _stmts(f"UPDATE records SET value = zeroblob(20000000) WHERE {_row('records')}"),
    "a giant text": _stmts(f"UPDATE records SET statistic = hex(zeroblob(3000000)) WHERE {_row('records')}"),
    "a giant meta value": _stmts("UPDATE meta SET value = hex(zeroblob(5000000)) WHERE key = 'spec_name'"),
    "too many meta rows": _stmts(f"INSERT INTO meta {INFINITE} SELECT 'k' || i, 'v', 0 FROM r LIMIT 200000"),
    "a record of the wrong length": _forged("extra"),
    "a record missing a number": _stmts("DELETE FROM records WHERE step = 2 AND statistic = 'std'"),
    "a histogram with a bin more": _forged("bin"),
    "a histogram missing its first bin": _stmts(f"DELETE FROM bins WHERE {_row('bins')}"),
    "a histogram missing its last bin": _stmts("DELETE FROM bins WHERE bin = 5"),
    "a histogram without its bins": _stmts("DELETE FROM bins WHERE step = 2"),
    "bins without their record": _stmts(
        "DELETE FROM records WHERE step = 2 AND statistic IN ('lo', 'hi', 'nan', 'inf', 'outside')"
    ),
    "a text record": _stmts(f"UPDATE records SET value = 'abc' WHERE {_row('records')}"),
    "a blob record": _stmts(f"UPDATE records SET value = zeroblob(8) WHERE {_row('records')}"),
    "a text bin count": _stmts(f"UPDATE bins SET count = 'abc' WHERE {_row('bins')}"),
    "a record of an unknown series": _stmts(f"UPDATE records SET series = 99 WHERE {_row('records')}"),
    "a text loss": _stmts("UPDATE steps SET loss = 'abc' WHERE step = 2"),
    # versions and checksums
    "format 99": _stmts("UPDATE meta SET value = '99' WHERE key = 'format'"),
    "format removed": _stmts("DELETE FROM meta WHERE key = 'format'"),
    "format 1 with checksums": lambda run: _sql(
        run, f"UPDATE meta SET value = '1', crc = {store._crc('format', '1')} WHERE key = 'format'"
    ),
    "a number changed": _stmts(f"UPDATE records SET value = value + 1 WHERE {_row('records', 1)}"),
    "a layer changed": _stmts(f"UPDATE records SET layer = 'fc9' WHERE {_row('records', 1)}"),
    "a bin count changed": _stmts(f"UPDATE bins SET count = count + 1 WHERE {_row('bins', 3)}"),
    "a bin edge changed": _stmts(f"UPDATE bins SET bin_end = 99 WHERE {_row('bins', 3)}"),
    "a loss changed": _stmts("UPDATE steps SET loss = loss + 1 WHERE step = 4"),
    "a meta value changed": _stmts("UPDATE meta SET value = 'other' WHERE key = 'spec_name'"),
    "a series key changed": _stmts("UPDATE series SET reduce = 'sum' WHERE id = 1"),
    # damage that leaves the truth: it must render, unchanged
    "an index added": _stmts("CREATE INDEX i ON records(series)"),
    "a garbage WAL beside it": lambda run: open(_db(run) + "-wal", "wb").write(random.Random(2).randbytes(4096)),
    "a garbage journal beside it": lambda run: open(_db(run) + "-journal", "wb").write(
        random.Random(3).randbytes(4096)
    ),
    "format 1 (older nnspec)": _to_format("1"),
    "format 2 (the previous nnspec)": _to_format("2"),
    "unfinished": _stmts("DELETE FROM meta WHERE key = 'finished'"),
}
FLIPS = [i / 23 for i in range(23)]  # byte flips across the whole file


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_run_file_gives_a_clean_error_or_the_truth(good, tmp_path, name):
    run = _copy(good, tmp_path)
    CASES[name](run)
    kind, text = _outcome(run, good)
    expect_truth = {
        "an index added",
        "a garbage WAL beside it",
        "a garbage journal beside it",
        "format 1 (older nnspec)",
        "format 2 (the previous nnspec)",
        "unfinished",
    }
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
    _sql(run, f"INSERT INTO records {INFINITE} SELECT 1000 + i, 1, 'fc1.weight', 'norm', 1.0, 0 FROM r LIMIT 300000")
    monkeypatch.setattr(store, "QUERY_SECONDS", 0.0)
    kind, text = _outcome(run, good)
    assert kind == "error" and "took longer than" in text
