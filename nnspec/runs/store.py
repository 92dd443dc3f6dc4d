"""Runs: what a training recorded, one SQLite file per run (``runs/<name>/run.sqlite``).

WAL journal, one transaction per recorded step: a process killed mid-training
loses at most the step in flight, and a run can be read while it is written.
The schema (docs/guide.md, "Runs") is plain SQL, readable without nnspec:

    meta(key TEXT PRIMARY KEY, value TEXT, crc)  format, nnspec, spec_name, spec_hash, model_hash,
                                                 source, record_every, world_size, created,
                                                 finished, steps_planned, last_step, hparams (JSON)
    series(id INTEGER PRIMARY KEY, key TEXT UNIQUE, kind TEXT, target TEXT, reduce TEXT, crc)
    steps(step INTEGER PRIMARY KEY, loss REAL, time REAL, crc)
    records(step INTEGER, series INTEGER, value BLOB, crc, PRIMARY KEY (step, series))

A record's value is little-endian float64 (layout in ``partials``); ``crc`` is
the CRC-32 of each row (``_crc``), so a damaged file is an error, never
changed numbers. Format 1 (no ``crc`` columns, no ``finished``) is still read,
with a note that its numbers are not verified.

Writers take a lock per run directory (``run.lock``, ``flock``: the OS
releases it when the process dies), so a second writer fails at once.
A spec's ``train:`` writes ``run.sqlite.partial`` beside the old run and
renames it over ``run.sqlite`` only when training finished: a kill mid-training
leaves the previous complete run as it was.

Reading validates before it queries: a regular file under a size cap, the
four tables with their columns and nothing else (no views, triggers or
virtual tables, no generated columns), the format version, then every row's
length and checksum as it is read; each query runs under a time budget.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import sqlite3
import stat
import struct
import time
import urllib.parse
import zlib
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np

from nnspec.compiler.plan import Capture
from nnspec.errors import SpecError
from nnspec.numerics.partials import HISTOGRAM_HEAD
from nnspec.numerics.reduce import STATS_FIELDS
from nnspec.output import messages as output_messages
from nnspec.runs import messages

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock (one writer is the user's business)
    fcntl = None  # type: ignore[assignment]

FORMAT = "2"
FILE = "run.sqlite"
PARTIAL = FILE + ".partial"
LOCK = "run.lock"
MAX_RUN_BYTES = int(os.environ.get("NNSPEC_MAX_RUN_BYTES", 4 << 30))  # a bigger file is refused unread
MAX_RECORD_BYTES = 1 << 20  # one record: a histogram of 131,072 bins at most
MAX_TEXT = 1 << 16  # a meta value, a series key
MAX_ROWS = 100_000  # of meta and of series
QUERY_SECONDS = 60.0  # a query of a run that takes longer is stopped

_COLUMNS = {
    "meta": ("key", "value"),
    "series": ("id", "key", "kind", "target", "reduce"),
    "steps": ("step", "loss", "time"),
    "records": ("step", "series", "value"),
}
_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE series(id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, kind TEXT NOT NULL,
                    target TEXT NOT NULL, reduce TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE steps(step INTEGER PRIMARY KEY, loss REAL, time REAL NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE records(step INTEGER NOT NULL, series INTEGER NOT NULL REFERENCES series(id),
                     value BLOB NOT NULL, crc INTEGER NOT NULL, PRIMARY KEY (step, series));
"""


# -- checksums ---------------------------------------------------------------------------------
def _canon(v) -> bytes:
    """One value's bytes, as SQLite gives it back (float64 bit-exact)."""
    if v is None:
        return b"N"
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, int):
        return b"i" + str(v).encode()
    if isinstance(v, float):
        return b"f" + struct.pack("<d", v)
    if isinstance(v, str):
        return b"s" + v.encode("utf-8", "surrogatepass")
    if isinstance(v, (bytes, bytearray, memoryview)):
        return b"b" + bytes(v)
    raise TypeError(type(v).__name__)


def _crc(*values) -> int:
    c = 0
    for v in values:
        b = _canon(v)
        c = zlib.crc32(struct.pack("<I", len(b)) + b, c)
    return c


# -- the lock ----------------------------------------------------------------------------------
class RunLock:
    """An exclusive ``flock`` on ``<directory>/run.lock``; the OS drops it when the process dies."""

    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, LOCK)
        self.fd: int | None = None
        try:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            raise SpecError(output_messages.cannot_write(self.path, e.strerror or str(e))) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise SpecError(messages.run_locked(directory, holder), None, messages.run_locked_hint()) from None
                # a file system without locks (some network mounts): write unlocked
        self.fd = fd
        try:
            who = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
            os.ftruncate(fd, 0)
            os.pwrite(fd, who.encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __del__(self):
        self.release()


def _read_holder(fd: int) -> str | None:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return None
    return "".join(ch for ch in text if ch.isprintable()) or None


# -- writing -----------------------------------------------------------------------------------
def _connect(path: str) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses no committed step
    return con


def _remove(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


class RunWriter:
    """Writes one run; ``write_step`` is one transaction.

    ``replace``: a run of this ``source`` already there may be replaced (a
    spec's ``train:`` re-run): the new run is written to ``run.sqlite.partial``
    and renamed over the old one by ``finish()``; ``abandon()`` removes it and
    the old run stays. Without ``replace`` an existing run is an error and the
    run is written in place (readable while it is written)."""

    def __init__(self, directory: str, meta: dict, captures, replace: str | None = None, steps: int | None = None):
        self.directory = directory
        self.con: sqlite3.Connection | None = None
        self.lock = RunLock(directory)  # a second writer fails here, at once
        try:
            final = os.path.join(directory, FILE)
            if os.path.lexists(final):
                _make_room(directory, replace)
            else:
                _remove(final)  # a journal left without its run must not be paired with the new file
            self.final = final
            self.path = os.path.join(directory, PARTIAL) if replace is not None else final
            _remove(os.path.join(directory, PARTIAL))  # what a killed training left
            try:
                self.con = _connect(self.path)
            except (OSError, sqlite3.Error) as e:
                raise SpecError(output_messages.cannot_write(self.path, str(e))) from None
            self.con.executescript("BEGIN;" + _SCHEMA + "COMMIT;")  # a fresh file: the partial was removed
            self.con.execute("BEGIN")
            meta = {"format": FORMAT, "created": f"{time.time():.3f}", "finished": 0, **meta}
            if steps is not None:
                meta["steps_planned"] = steps
            self._meta(meta)
            self.ids = {}
            for c in captures:
                row = (c.series_key, c.kind, c.target, str(c.reduce))
                cur = self.con.execute("INSERT INTO series(key, kind, target, reduce, crc) VALUES (?, ?, ?, ?, 0)", row)
                sid = cur.lastrowid
                self.con.execute("UPDATE series SET crc = ? WHERE id = ?", (_crc(sid, *row), sid))
                self.ids[c.key] = sid
            self.con.execute("COMMIT")
        except BaseException:
            self._drop()
            raise

    def _meta(self, items: dict) -> None:
        assert self.con is not None
        rows = [(k, str(v), _crc(k, str(v))) for k, v in items.items()]
        self.con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)", rows)

    def write_step(self, step: int, loss: float | None, records: dict, late: tuple | None = None) -> None:
        """One recorded step (capture key -> vector), and records of an earlier
        step that became known only now (``late`` = (step, records): update ratios)."""
        rows = self._rows(step, records) + (self._rows(*late) if late is not None else [])
        value = _real(None if loss is None else float(loss))
        t = time.time()
        self._commit(rows, (step, value, t, _crc(step, value, t)))

    def write_late(self, step: int, records: dict) -> None:
        if records:
            self._commit(self._rows(step, records))

    def _rows(self, step: int, records: dict) -> list:
        out = []
        for k, v in records.items():
            sid, blob = self.ids[k], _blob(v)
            out.append((step, sid, blob, _crc(step, sid, blob)))
        return out

    def _commit(self, rows: list, step_row: tuple | None = None) -> None:
        """One transaction: all of it is in the run, or none of it."""
        assert self.con is not None
        self.con.execute("BEGIN")
        try:
            if step_row is not None:
                self.con.execute("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?)", step_row)
                last = self.con.execute("SELECT max(step) FROM steps").fetchone()[0]
                self._meta({"last_step": last})
            self.con.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", rows)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def finish(self) -> None:
        """The run is complete: mark it finished, make it one self-contained
        file, and (a ``train:`` run) put it in place of the old one."""
        if self.con is None:
            return
        try:
            self.con.execute("BEGIN")
            self._meta({"finished": 1})
            self.con.execute("COMMIT")
            self.con.execute("PRAGMA journal_mode=DELETE")  # checkpoints the WAL into the file
            self.con.close()
            self.con = None
            if self.path != self.final:
                _sync(self.path)
                for suffix in ("-wal", "-shm", "-journal"):  # an old run's, never to be paired with the new file
                    if os.path.exists(self.final + suffix):
                        os.remove(self.final + suffix)
                os.replace(self.path, self.final)
                _sync(self.directory)
        except BaseException:
            self._drop()
            raise
        self.lock.release()

    def abandon(self) -> None:
        """Training stopped: a partial run is removed (the old run stays), a run
        written in place stays as it is (unfinished, and says so when drawn)."""
        self._drop()

    def _drop(self) -> None:
        if self.con is not None:
            try:
                self.con.close()
            except sqlite3.Error:
                pass
            self.con = None
        if getattr(self, "path", None) is not None and self.path != getattr(self, "final", None):
            try:
                _remove(self.path)
            except OSError:
                pass
        self.lock.release()

    def close(self) -> None:
        self.finish()


def _sync(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _make_room(directory: str, replace: str | None) -> None:
    """Whether the run already in ``directory`` may be replaced (raises if not)."""
    try:
        run = Run(directory)
        source = run.meta.get("source")
        run.close()
    except SpecError:
        source = None
    if replace is None or source != replace:
        raise SpecError(messages.run_exists(directory), None, messages.run_exists_hint())


def _blob(v) -> bytes:
    return np.asarray(v, dtype="<f8").reshape(-1).tobytes()


def _real(v: float | None):
    """SQLite REAL has no NaN (it becomes NULL): keep non-finite losses as text."""
    if v is None or math.isfinite(v):
        return v
    return str(v)


# -- reading -----------------------------------------------------------------------------------
def _expected_length(reduce: str) -> tuple[int, int | None]:
    """(least, most) numbers in a record of this reduction (``most`` None: any)."""
    op = reduce.removeprefix("abs | ").split("(")[0].strip()
    if op == "stats":
        return len(STATS_FIELDS), len(STATS_FIELDS)
    if op == "histogram":
        return len(HISTOGRAM_HEAD) + 1, None
    return 1, None


@dataclass
class Run:
    """A run opened for reading (also while another process writes it), validated first."""

    directory: str
    name: str = ""
    meta: dict = field(default_factory=dict)
    series: dict = field(default_factory=dict)  # key -> id
    notes: list = field(default_factory=list)  # what every view over steps of this run says about it

    def __post_init__(self):
        self.name = self.name or os.path.basename(os.path.normpath(self.directory))
        self.path = os.path.join(self.directory, FILE)
        self.con: sqlite3.Connection | None = None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise SpecError(messages.no_run(self.directory), None, messages.no_run_hint()) from None
        except OSError as e:
            self._bad(e.strerror or str(e))
        if not stat.S_ISREG(st.st_mode):
            self._bad(messages.run_not_a_file("a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"))
        wal = os.path.join(self.directory, FILE + "-wal")
        size = st.st_size + (os.path.getsize(wal) if os.path.isfile(wal) else 0)
        if size > MAX_RUN_BYTES:
            self._bad(messages.run_too_big(size, MAX_RUN_BYTES))
        self._check_header(st.st_size)
        try:
            self._open()
        except sqlite3.Error as e:
            self.close()
            self._bad(self._why(e))
        except SpecError:
            self.close()
            raise

    def _check_header(self, size: int) -> None:
        """A file shorter than its header says is truncated (SQLite would read the
        missing pages as zeros and drop their rows without a word)."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(100)
        except OSError as e:
            self._bad(e.strerror or str(e))
        if len(head) == 0:
            return  # an empty file: SQLite's empty database, refused by its schema
        if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
            self._bad(messages.run_damaged("not an SQLite file"))
        page = struct.unpack(">H", head[16:18])[0]
        page = 65536 if page == 1 else page
        pages, counter, valid_for = struct.unpack(">I", head[28:32])[0], head[24:28], head[92:96]
        if counter == valid_for and pages and size < pages * page:
            self._bad(messages.run_damaged(f"truncated: {size:,} bytes of {pages * page:,}"))

    def _bad(self, why: str) -> NoReturn:
        raise SpecError(messages.bad_run(self.directory, why), None, messages.bad_run_hint())

    def _why(self, e: sqlite3.Error) -> str:
        text = str(e)
        if "interrupted" in text:
            return messages.run_too_slow(QUERY_SECONDS)
        if "not a database" in text or "malformed" in text or "disk image" in text:
            return messages.run_damaged(text)
        return text

    def _open(self) -> None:
        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
        self.con = con = sqlite3.connect(uri, uri=True, check_same_thread=False)
        con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(MAX_RECORD_BYTES, MAX_TEXT) * 2)
        con.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 100_000)
        self._deadline = time.monotonic() + QUERY_SECONDS
        con.set_progress_handler(lambda: int(time.monotonic() > self._deadline), 10_000)
        for pragma in ("trusted_schema=OFF", "query_only=ON", "cell_size_check=ON", "mmap_size=0"):
            con.execute(f"PRAGMA {pragma}")
        self.version = self._check_schema()
        problems = [r[0] for r in self._query("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            self._bad(messages.run_damaged("; ".join(_short(p) for p in problems)))
        self.meta = self._read_meta()
        fmt = self.meta.get("format")
        if fmt != self.version:
            if fmt not in ("1", FORMAT):
                self._bad(messages.run_format(fmt, ("1", FORMAT)))
            self._bad(messages.run_schema(f"format {fmt} with the tables of format {self.version}"))
        self.series, self.reduces = {}, {}
        for row in self._query("SELECT * FROM series ORDER BY id LIMIT ?", (MAX_ROWS + 1,)):
            sid, key, kind, target, reduce = row[:5]
            if not all(isinstance(x, str) for x in (key, kind, target, reduce)) or not isinstance(sid, int):
                self._bad(messages.run_bad_row("series", sid))
            if self.version != "1" and row[5] != _crc(*row[:5]):
                self._bad(messages.run_checksum("series", f"'{key}'"))
            self.series[key], self.reduces[sid] = sid, reduce
        if len(self.series) > MAX_ROWS:
            self._bad(messages.run_too_many("series", MAX_ROWS))
        self.notes = list(self.notes)
        if self.version == "1":
            self.notes.append(messages.note_unverified(self.name))
        elif self.meta.get("finished") != "1":
            planned = _int(self.meta.get("steps_planned"))
            self.notes.append(messages.note_unfinished(self.name, _int(self.meta.get("last_step")), planned))

    def _check_schema(self) -> str:
        """The run's format by its tables and columns; anything else in the file is an error."""
        found = {}
        for kind, name, sql in self._query("SELECT type, name, sql FROM sqlite_master LIMIT 1000"):
            if kind in ("view", "trigger"):
                self._bad(messages.run_schema(f"a {kind} '{_short(name)}' (a run holds tables only)"))
            if kind == "table" and isinstance(sql, str) and sql.lstrip().upper().startswith("CREATE VIRTUAL"):
                self._bad(messages.run_schema(f"a virtual table '{_short(name)}'"))
            if kind == "table":
                found[name] = True
            elif kind != "index":
                self._bad(messages.run_schema(f"a {_short(str(kind))} '{_short(name)}'"))
        missing = [t for t in _COLUMNS if t not in found]
        if missing:
            self._bad(messages.run_schema(f"no table '{missing[0]}'"))
        extra = [t for t in found if t not in _COLUMNS and not str(t).startswith("sqlite_")]
        if extra:
            self._bad(messages.run_schema(f"an unknown table '{_short(extra[0])}'"))
        versions = set()
        for table, want in _COLUMNS.items():
            cols = list(self._query(f"PRAGMA table_xinfo({table})"))
            if any(c[6] != 0 for c in cols):  # hidden or generated columns
                self._bad(messages.run_schema(f"a generated column in '{table}'"))
            names = tuple(c[1] for c in cols)
            if names == want:
                versions.add("1")
            elif names == (*want, "crc"):
                versions.add(FORMAT)
            else:
                self._bad(messages.run_schema(f"table '{table}' has columns {', '.join(map(_short, names))}"))
        if len(versions) > 1:
            self._bad(messages.run_schema("tables of different formats"))
        return versions.pop()

    def _read_meta(self) -> dict:
        meta = {}
        for row in self._query("SELECT * FROM meta LIMIT ?", (MAX_ROWS + 1,)):
            key, value = row[:2]
            if not isinstance(key, str) or not isinstance(value, str) or len(value) > MAX_TEXT:
                self._bad(messages.run_bad_row("meta", _short(str(key))))
            if self.version != "1" and row[2] != _crc(key, value):
                self._bad(messages.run_checksum("meta", f"'{_short(key)}'"))
            meta[key] = value
        if len(meta) > MAX_ROWS:
            self._bad(messages.run_too_many("meta", MAX_ROWS))
        return meta

    def _query(self, sql: str, params=()):
        """Rows of one query, under the time budget; any SQLite error is this run's error."""
        if self.con is None:
            self._bad("the run is closed")
        self._deadline = time.monotonic() + QUERY_SECONDS
        try:
            cur = self.con.execute(sql, params)
            while True:
                rows = cur.fetchmany(1000)
                if not rows:
                    return
                yield from rows
                self._deadline = time.monotonic() + QUERY_SECONDS
        except sqlite3.Error as e:
            self._bad(self._why(e))

    def _value(self, sid: int, step, value, crc) -> np.ndarray:
        """One record, checked: an integer step, its length for its reduction, its checksum."""
        reduce = self.reduces.get(sid, "")
        if not isinstance(step, int) or not isinstance(value, bytes) or len(value) % 8:
            self._bad(messages.run_bad_row("records", f"step {step}"))
        least, most = _expected_length(reduce)
        n = len(value) // 8
        if n < least or (most is not None and n > most) or len(value) > MAX_RECORD_BYTES:
            self._bad(messages.run_record_length(step, reduce, n))
        if self.version != "1" and crc != _crc(step, sid, value):
            self._bad(messages.run_checksum("records", f"step {step}"))
        return np.frombuffer(value, dtype="<f8")

    def records(self, c: Capture, lo=None, hi=None) -> list[tuple[int, np.ndarray]]:
        """(step, vector) of one capture at the recorded steps in [lo, hi)."""
        sid = self.series[c.series_key]
        crc = "crc" if self.version != "1" else "NULL"
        rows = self._query(
            f"SELECT step, value, {crc} FROM records WHERE series = ? AND step >= ? AND step < ? ORDER BY step",
            (sid, -(2**62) if lo is None else lo, 2**62 if hi is None else hi),
        )
        return [(s, self._value(sid, s, v, k)) for s, v, k in rows]

    def losses(self, lo=None, hi=None) -> list[tuple[int, float]]:
        crc = "crc" if self.version != "1" else "NULL"
        rows = self._query(
            f"SELECT step, loss, time, {crc} FROM steps WHERE loss IS NOT NULL AND step >= ? AND step < ? "
            "ORDER BY step",
            (-(2**62) if lo is None else lo, 2**62 if hi is None else hi),
        )
        out = []
        for s, v, t, k in rows:
            if self.version != "1" and k != _crc(s, v, t):
                self._bad(messages.run_checksum("steps", f"step {s}"))
            out.append((s, self._loss(s, v)))
        return out

    def _loss(self, step, v) -> float:
        if not isinstance(step, int) or isinstance(v, bytes):
            self._bad(messages.run_bad_row("steps", f"step {step}"))
        try:
            return float(v)
        except (TypeError, ValueError):
            self._bad(messages.run_bad_row("steps", f"step {step}"))

    @property
    def hparams(self) -> dict:
        """The hyperparameters the run was recorded with (``runs/hparams.py``); ``{}`` for a run without."""
        from nnspec.runs.hparams import decode

        return decode(self.meta.get("hparams"))

    def missing(self, captures) -> list[Capture]:
        return [c for c in captures if c.series_key not in self.series]

    def first_nonfinite(self) -> int | None:
        """The first recorded step with a NaN or Inf in the loss or any record.

        It reads (and verifies) every record, and each view over steps asks:
        read once per opening."""
        if not hasattr(self, "_first_nonfinite"):
            self._first_nonfinite = self._scan_nonfinite()
        return self._first_nonfinite

    def _scan_nonfinite(self) -> int | None:
        steps = [s for s, v in self.losses() if not math.isfinite(v)]
        crc = "crc" if self.version != "1" else "NULL"
        for step, sid, value, k in self._query(f"SELECT step, series, value, {crc} FROM records"):
            if sid not in self.reduces:
                self._bad(messages.run_bad_row("records", f"step {step}"))
            v = self._value(sid, step, value, k)
            if _nonfinite(self.reduces[sid], v):
                steps.append(step)
        return min(steps) if steps else None

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _short(text) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return text if len(text) <= 60 else text[:57] + "..."


def _nonfinite(reduce: str, v: np.ndarray) -> bool:
    op = reduce.removeprefix("abs | ").split("(")[0].strip()
    if op == "stats":
        return bool(v[7] > 0 or v[8] > 0)  # nan, inf counts
    if op == "histogram":
        return bool(v[2] > 0 or v[3] > 0)
    if op in ("nan_count", "inf_count"):
        return bool(v[0] > 0)
    return not bool(np.isfinite(v).all())
