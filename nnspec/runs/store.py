"""Runs: what a training recorded, one SQLite file per run (``runs/<name>/run.sqlite``).

WAL journal, one transaction per recorded step: a process killed mid-training
loses at most the step in flight, and a run can be read while it is written.
The schema (docs/guide.md, "Runs") is plain SQL, readable without nnspec:

    meta(key TEXT PRIMARY KEY, value TEXT)      format, nnspec, spec_name, spec_hash,
                                                model_hash, source, record_every, world_size
    series(id INTEGER PRIMARY KEY, key TEXT UNIQUE, kind TEXT, target TEXT, reduce TEXT)
    steps(step INTEGER PRIMARY KEY, loss REAL, time REAL)
    records(step INTEGER, series INTEGER, value BLOB, PRIMARY KEY (step, series))

A record's value is little-endian float64 (layout in ``partials``).
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from dataclasses import dataclass, field

import numpy as np

from nnspec.compiler.plan import Capture
from nnspec.errors import SpecError
from nnspec.output import messages as output_messages
from nnspec.runs import messages

FORMAT = "1"
FILE = "run.sqlite"
_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE series(id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, kind TEXT NOT NULL,
                    target TEXT NOT NULL, reduce TEXT NOT NULL);
CREATE TABLE steps(step INTEGER PRIMARY KEY, loss REAL, time REAL NOT NULL);
CREATE TABLE records(step INTEGER NOT NULL, series INTEGER NOT NULL REFERENCES series(id),
                     value BLOB NOT NULL, PRIMARY KEY (step, series));
"""


def _connect(path: str) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses no committed step
    return con


class RunWriter:
    """Writes one run; ``write_step`` is one transaction."""

    def __init__(self, directory: str, meta: dict, captures, replace: str | None = None):
        """``replace``: a run of this ``source`` already there may be replaced
        (a spec's ``train:`` re-run); any other existing run is an error."""
        self.directory = directory
        path = os.path.join(directory, FILE)
        if os.path.exists(path):
            _make_room(directory, path, replace)
        try:
            os.makedirs(directory, exist_ok=True)
            self.con = _connect(path)
        except (OSError, sqlite3.Error) as e:
            raise SpecError(output_messages.cannot_write(path, str(e))) from None
        self.path = path
        with self.con:
            self.con.execute("BEGIN")
            self.con.executescript(_SCHEMA.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
            meta = {"format": FORMAT, "created": f"{time.time():.3f}", **meta}
            self.con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
            self.ids = {}
            for c in captures:
                cur = self.con.execute(
                    "INSERT INTO series(key, kind, target, reduce) VALUES (?, ?, ?, ?)",
                    (c.series_key, c.kind, c.target, str(c.reduce)),
                )
                self.ids[c.key] = cur.lastrowid

    def write_step(self, step: int, loss: float | None, records: dict, late: tuple | None = None) -> None:
        """One recorded step (capture key -> vector), and records of an earlier
        step that became known only now (``late`` = (step, records): update ratios)."""
        rows = self._rows(step, records) + (self._rows(*late) if late is not None else [])
        loss = None if loss is None else float(loss)
        self._commit(rows, (step, _real(loss), time.time()))

    def write_late(self, step: int, records: dict) -> None:
        if records:
            self._commit(self._rows(step, records))

    def _rows(self, step: int, records: dict) -> list:
        return [(step, self.ids[k], _blob(v)) for k, v in records.items()]

    def _commit(self, rows: list, step_row: tuple | None = None) -> None:
        """One transaction: all of it is in the run, or none of it."""
        self.con.execute("BEGIN")
        try:
            if step_row is not None:
                self.con.execute("INSERT OR REPLACE INTO steps VALUES (?, ?, ?)", step_row)
            self.con.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", rows)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


def _make_room(directory: str, path: str, replace: str | None) -> None:
    try:
        source = Run(directory).meta.get("source")
    except SpecError:
        source = None
    if replace is None or source != replace:
        raise SpecError(messages.run_exists(directory), None, messages.run_exists_hint())
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def _blob(v) -> bytes:
    return np.asarray(v, dtype="<f8").reshape(-1).tobytes()


def _real(v: float | None):
    """SQLite REAL has no NaN (it becomes NULL): keep non-finite losses as text."""
    if v is None or math.isfinite(v):
        return v
    return str(v)


@dataclass
class Run:
    """A run opened for reading (also while another process writes it)."""

    directory: str
    name: str = ""
    meta: dict = field(default_factory=dict)
    series: dict = field(default_factory=dict)  # key -> id

    def __post_init__(self):
        path = os.path.join(self.directory, FILE)
        if not os.path.exists(path):
            raise SpecError(messages.no_run(self.directory), None, messages.no_run_hint())
        self.name = self.name or os.path.basename(os.path.normpath(self.directory))
        try:
            self.con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            self.meta = dict(self.con.execute("SELECT key, value FROM meta"))
            self.series = dict(self.con.execute("SELECT key, id FROM series"))
        except sqlite3.Error as e:
            raise SpecError(messages.bad_run(self.directory, str(e))) from None

    def records(self, c: Capture, lo=None, hi=None) -> list[tuple[int, np.ndarray]]:
        """(step, vector) of one capture at the recorded steps in [lo, hi)."""
        sid = self.series[c.series_key]
        rows = self.con.execute(
            "SELECT step, value FROM records WHERE series = ? AND step >= ? AND step < ? ORDER BY step",
            (sid, -(2**62) if lo is None else lo, 2**62 if hi is None else hi),
        )
        return [(s, np.frombuffer(v, dtype="<f8")) for s, v in rows]

    def losses(self, lo=None, hi=None) -> list[tuple[int, float]]:
        rows = self.con.execute(
            "SELECT step, loss FROM steps WHERE loss IS NOT NULL AND step >= ? AND step < ? ORDER BY step",
            (-(2**62) if lo is None else lo, 2**62 if hi is None else hi),
        )
        return [(s, float(v)) for s, v in rows]

    def missing(self, captures) -> list[Capture]:
        return [c for c in captures if c.series_key not in self.series]

    def first_nonfinite(self) -> int | None:
        """The first recorded step with a NaN or Inf in the loss or any record.

        It reads every record, and each view over steps asks: read once per opening."""
        if not hasattr(self, "_first_nonfinite"):
            self._first_nonfinite = self._scan_nonfinite()
        return self._first_nonfinite

    def _scan_nonfinite(self) -> int | None:
        steps = [s for s, v in self.losses() if not math.isfinite(v)]
        kinds = dict(self.con.execute("SELECT id, reduce FROM series"))
        for step, sid, value in self.con.execute("SELECT step, series, value FROM records"):
            v = np.frombuffer(value, dtype="<f8")
            if _nonfinite(kinds[sid], v):
                steps.append(step)
        return min(steps) if steps else None

    def close(self) -> None:
        self.con.close()


def _nonfinite(reduce: str, v: np.ndarray) -> bool:
    op = reduce.removeprefix("abs | ").split("(")[0]
    if op == "stats":
        return bool(v[7] > 0 or v[8] > 0)  # nan, inf counts
    if op == "histogram":
        return bool(v[2] > 0 or v[3] > 0)
    if op in ("nan_count", "inf_count"):
        return bool(v[0] > 0)
    return not bool(np.isfinite(v).all())
