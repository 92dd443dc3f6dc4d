"""Runs: what a training recorded, one SQLite file per run (``runs/<name>/run.sqlite``).

One transaction per recorded step: a process killed mid-training loses at
most the step in flight, and a run can be read while it is written. The
journal is WAL on a local disk and a rollback journal (``DELETE``,
``synchronous=FULL``) on a network or cluster file system, where SQLite's WAL
is unsafe (``journal_mode``; ``NNSPEC_RUN_JOURNAL=wal|delete`` overrides).
The schema, format 3 (docs/guide.md, "Runs"), is plain SQL: ``pandas.read_sql``
and the ``sqlite3`` shell read every number without nnspec:

    meta(key TEXT PRIMARY KEY, value TEXT, crc)  format, nnspec, spec_name, spec_hash, model_hash,
                                                 source, record_every, world_size, created, journal,
                                                 finished, steps_planned, last_step, hparams (JSON)
    series(id INTEGER PRIMARY KEY, key TEXT UNIQUE, kind TEXT, target TEXT, reduce TEXT, crc)
    steps(step INTEGER PRIMARY KEY, loss REAL, time REAL, crc)
    records(step, series, layer TEXT, statistic TEXT, value REAL, crc)     one row per number
    bins(step, series, bin INTEGER, bin_start REAL, bin_end REAL, count REAL, crc)   histogram bins

A record is its reduction's numbers (layout in ``partials``), one row each,
named by ``statistic`` (``_statistics``); a histogram's head (lo, hi, nan,
inf, outside) is in ``records`` and its counts are rows of ``bins``. NaN is
NULL (SQLite has no NaN). ``crc`` is the CRC-32 of each row (``_crc``), so a
damaged file is an error, never changed numbers. Format 2 (a record one
float64 blob) and format 1 (no ``crc`` columns) are still read as they are
(``migrate`` rewrites them as format 3); format 1 with a note that its
numbers are not verified.

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

import atexit
import contextlib
import errno
import fnmatch
import functools
import json
import math
import os
import re
import socket
import sqlite3
import stat
import struct
import threading
import time
import urllib.parse
import weakref
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np

from nnspec.compiler.plan import Capture
from nnspec.errors import SpecError
from nnspec.execute.data import histogram_edges
from nnspec.numerics.partials import HISTOGRAM_HEAD
from nnspec.numerics.reduce import STATS_FIELDS
from nnspec.output import messages as output_messages
from nnspec.runs import messages

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock (one writer is the user's business)
    fcntl = None  # type: ignore[assignment]

FORMAT = "3"
FORMATS = ("1", "2", FORMAT)  # what this nnspec reads
FILE = "run.sqlite"
PARTIAL = FILE + ".partial"
LOCK = "run.lock"
MAX_RUN_BYTES = int(os.environ.get("NNSPEC_MAX_RUN_BYTES", 4 << 30))  # a bigger file is refused unread
MAX_RECORD_BYTES = 1 << 20  # one record: a histogram of 131,072 bins at most
MAX_BINS = MAX_RECORD_BYTES // 8
MAX_TEXT = 1 << 16  # a meta value, a series key
MAX_ROWS = 100_000  # of meta and of series
QUERY_SECONDS = 60.0  # a query of a run that takes longer is stopped

_V1 = {
    "meta": ("key", "value"),
    "series": ("id", "key", "kind", "target", "reduce"),
    "steps": ("step", "loss", "time"),
    "records": ("step", "series", "value"),
}
_COLUMNS = {  # each format's tables and their columns, exactly
    "1": _V1,
    "2": {t: (*cols, "crc") for t, cols in _V1.items()},
    FORMAT: {
        **{t: (*cols, "crc") for t, cols in _V1.items() if t != "records"},
        "records": ("step", "series", "layer", "statistic", "value", "crc"),
        "bins": ("step", "series", "bin", "bin_start", "bin_end", "count", "crc"),
    },
}
_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE series(id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, kind TEXT NOT NULL,
                    target TEXT NOT NULL, reduce TEXT NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE steps(step INTEGER PRIMARY KEY, loss REAL, time REAL NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE records(step INTEGER NOT NULL, series INTEGER NOT NULL REFERENCES series(id), layer TEXT NOT NULL,
                     statistic TEXT NOT NULL, value REAL, crc INTEGER NOT NULL,
                     PRIMARY KEY (series, step, statistic)) WITHOUT ROWID;
CREATE TABLE bins(step INTEGER NOT NULL, series INTEGER NOT NULL REFERENCES series(id), bin INTEGER NOT NULL,
                  bin_start REAL, bin_end REAL, count REAL, crc INTEGER NOT NULL,
                  PRIMARY KEY (series, step, bin)) WITHOUT ROWID;
"""


_WRITING: weakref.WeakSet = weakref.WeakSet()  # run writers that have committed beside the loop


@atexit.register
def _exit_writes() -> None:
    for writer in list(_WRITING):
        writer._finish_writing()


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


_PACK_D, _PACK_I = struct.Struct("<d").pack, struct.Struct("<I").pack


def _crc(*values) -> int:
    """CRC-32 over each value as (length, type tag and bytes); run once per row read, so its common
    types skip ``_canon`` (same bytes)."""
    return zlib.crc32(_bytes(values))


def _bytes(values) -> bytes:
    parts: list[bytes] = []
    for v in values:
        t = type(v)
        if t is float:
            b = b"f" + _PACK_D(v)
        elif t is int:
            b = b"i" + str(v).encode()
        elif t is str:
            b = b"s" + v.encode("utf-8", "surrogatepass")
        else:
            b = _canon(v)
        parts += (_PACK_I(len(b)), b)
    return b"".join(parts)


_PACK_3F = struct.Struct("<IcdIcdIcd").pack  # three floats, as _bytes lays each out


def _bin_crcs(step: int, sid: int, starts: list, ends: list, counts: list) -> list[int]:
    """``_crc(step, sid, i, start, end, count)`` of each bin row, the same numbers computed
    faster: the CRC of the row's first two values once (CRC-32 continues over a
    concatenation), the three floats of a row in one pack where none is NULL."""
    head = zlib.crc32(_bytes((step, sid)))
    crc, pack, index = zlib.crc32, _PACK_3F, _indexes(len(counts))
    out = []
    for i, a, b, n in zip(range(len(counts)), starts, ends, counts):
        if type(a) is float and type(b) is float and type(n) is float:
            out.append(crc(index[i] + pack(9, b"f", a, 9, b"f", b, 9, b"f", n), head))
        else:
            out.append(crc(_bytes((i, a, b, n)), head))
    return out


@functools.lru_cache(maxsize=8)
def _indexes(n: int) -> list[bytes]:
    """``_bytes((i,))`` of the bin indexes 0..n-1."""
    return [_bytes((i,)) for i in range(n)]


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


def _try_lock(directory: str) -> int | None:
    """The run's lock taken (a descriptor to close) when no writer holds it; None while one does."""
    try:
        fd = os.open(os.path.join(directory, LOCK), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return -1  # no lock file: no writer of nnspec's
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                return None
            # a file system without locks: writers write unlocked there (RunLock), so no writer can be told
    return fd


def _writer_alive(directory: str) -> bool:
    fd = _try_lock(directory)
    if fd is not None and fd >= 0:
        os.close(fd)
    return fd is None


def _read_holder(fd: int) -> str | None:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return None
    return "".join(ch for ch in text if ch.isprintable()) or None


# -- the journal -------------------------------------------------------------------------------
# File systems shared between machines, where SQLite's WAL (shared memory beside
# the file) is unsafe: names as /proc/self/mountinfo gives them; any "fuse.*" too.
NETWORK_FS = frozenset(
    "nfs nfs4 cifs smb3 smbfs ncpfs afs 9p lustre gpfs beegfs ceph glusterfs ocfs2 gfs2 pvfs2 orangefs "
    "panfs davfs sshfs cvmfs quobyte wekafs".split()
)
JOURNALS = ("wal", "delete")


def filesystem(directory: str) -> str | None:
    """The type of the file system holding ``directory`` (``nfs4``, ``ext4``, …); None where unknown."""
    path = os.path.realpath(directory)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None  # not Linux
    best, kind = "", None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or not tail:
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # \040: a space
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, tail[0]
    return kind


def is_network(fs: str | None) -> bool:
    return fs is not None and (fs in NETWORK_FS or fs.startswith("fuse."))


def journal_mode(directory: str) -> str:
    """``wal`` on a local disk, ``delete`` (a rollback journal) on a network file system.

    ``NNSPEC_RUN_JOURNAL=wal|delete`` overrides the choice (tests, file systems
    this list does not know)."""
    forced = os.environ.get("NNSPEC_RUN_JOURNAL", "").strip().lower()
    if forced:
        if forced not in JOURNALS:
            raise SpecError(messages.bad_journal(forced, JOURNALS))
        return forced
    return "delete" if is_network(filesystem(directory)) else "wal"


# -- writing -----------------------------------------------------------------------------------
def _connect(path: str, journal: str = "wal") -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    if journal == "wal":
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses no committed step
    else:  # rollback journal: each commit is durable before the next step (the file may be on another machine)
        con.execute("PRAGMA journal_mode=DELETE")
        con.execute("PRAGMA synchronous=FULL")
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
        self._job: threading.Thread | None = None  # the write in flight
        self._failed: BaseException | None = None
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
            self.journal = journal_mode(directory)
            try:
                self.con = _connect(self.path, self.journal)
            except (OSError, sqlite3.Error) as e:
                raise SpecError(output_messages.cannot_write(self.path, str(e))) from None
            self.con.executescript("BEGIN;" + _SCHEMA)  # a fresh file: the partial was removed
            meta = {"format": FORMAT, "created": f"{time.time():.3f}", "journal": self.journal, "finished": 0, **meta}
            if steps is not None:
                meta["steps_planned"] = steps
            self._meta(meta)
            self.ids, self.layers, self.reduces = {}, {}, {}
            self._written: set[tuple[int, int]] = set()  # (step, series) with rows: rewriting replaces them
            for c in captures:
                row = (c.series_key, c.kind, c.target, str(c.reduce))
                cur = self.con.execute("INSERT INTO series(key, kind, target, reduce, crc) VALUES (?, ?, ?, ?, 0)", row)
                sid = cur.lastrowid
                self.con.execute("UPDATE series SET crc = ? WHERE id = ?", (_crc(sid, *row), sid))
                self.ids[c.key], self.layers[sid], self.reduces[sid] = sid, c.target, str(c.reduce)
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
        self._submit(self._commit, rows, (step, value, t, _crc(step, value, t)))

    def not_run(self, modules: dict) -> None:
        """Modules a recorded step's forward pass did not call ({path: first such step}):
        kept in the run's meta, so every view over steps of the run can say so."""
        self._submit(self._note, {"not_run": json.dumps(modules)})

    def _note(self, items: dict) -> None:
        with self._transaction():
            self._meta(items)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction: all of it is in the run, or none of it."""
        assert self.con is not None
        self.con.execute("BEGIN")
        try:
            yield
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def write_late(self, step: int, records: dict) -> None:
        if records:
            self._submit(self._commit, self._rows(step, records))

    # -- one write at a time, beside the training loop --------------------------------------
    def _submit(self, fn, *args) -> None:
        """``fn(*args)`` (a transaction) on a thread of its own, once the write before it
        has finished: the training loop goes on while a step's rows are checksummed
        and committed, and at most one step is in flight (what a crash can lose). A
        write that failed raises here, at the next write, or at ``finish``."""
        self.wait()
        job = threading.Thread(target=self._run, args=(fn, args), name="nnspec-run-writer", daemon=True)
        self._job = job
        _WRITING.add(self)
        job.start()

    def _finish_writing(self) -> None:
        """At interpreter exit: the write in flight committed (a loop that never called
        ``close()`` keeps its last step, as when every write was made in ``rec.step``)."""
        job = self._job
        if job is not None:
            job.join()

    def _run(self, fn, args) -> None:
        try:
            fn(*args)
        except BaseException as e:  # handed to the training loop's thread by wait()
            self._failed = e

    def wait(self) -> None:
        """Until the write in flight is committed; its error, if it failed."""
        job, self._job = self._job, None
        if job is not None:
            job.join()
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed

    def _rows(self, step: int, records: dict) -> list:
        return [(step, self.ids[k], v) for k, v in records.items()]

    def _commit(self, records: list, step_row: tuple | None = None) -> None:
        """A step's rows (and its row in ``steps``) in one transaction."""
        with self._transaction():
            assert self.con is not None
            if step_row is not None:
                self.con.execute("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?)", step_row)
                last = self.con.execute("SELECT max(step) FROM steps").fetchone()[0]
                self._meta({"last_step": last})
            again = [r for r in records if (r[0], r[1]) in self._written]
            _insert(self.con, records, self.layers, self.reduces, again)
        self._written.update((r[0], r[1]) for r in records)

    def finish(self) -> None:
        """The run is complete: mark it finished, make it one self-contained
        file, and (a ``train:`` run) put it in place of the old one."""
        if self.con is None:
            return
        try:
            self.wait()
            with self._transaction():
                self._meta({"finished": 1})
            _leave_wal(self.con)
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
        try:
            self.wait()
        except BaseException:  # dropping the run: what failed to be written goes with it
            pass
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


def _leave_wal(con: sqlite3.Connection, patience: float = 10.0) -> None:
    """Make a finished run one self-contained file: back to a rollback journal,
    which checkpoints the WAL into it. SQLite refuses that (at once, without its
    busy handler) while a reader has the file open, as ``serve`` or ``render
    --watch`` do while they draw the run: try again until they let go, and if
    one holds on, checkpoint the WAL into the file and leave the mode as it is;
    the run is complete either way."""
    deadline = time.monotonic() + patience
    while True:
        try:
            con.execute("PRAGMA journal_mode=DELETE")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")


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


def _insert(con: sqlite3.Connection, records: list, layers: dict, reduces: dict, again: list | None = None) -> None:
    """Records ``(step, series id, vector)`` as rows of ``records`` and ``bins``; those
    in ``again`` (written before) replace all of their rows."""
    rows: list = []
    bins: list = []
    for step, sid, v in records:
        values = [None if x != x else x + 0.0 for x in np.asarray(v, dtype="<f8").reshape(-1).tolist()]  # _plain
        names, counts = _statistics(reduces[sid], len(values)), []
        if _op(reduces[sid]) == "histogram":
            values, counts = values[: len(HISTOGRAM_HEAD)], values[len(HISTOGRAM_HEAD) :]
        layer = layers[sid]
        head = zlib.crc32(_bytes((step, sid, layer)))  # the CRC of a row continues from its first values'
        rows += [(step, sid, layer, n, x, zlib.crc32(_bytes((n, x)), head)) for n, x in zip(names, values)]
        if counts:
            lo, hi = (float("nan") if x is None else x for x in values[:2])
            starts, ends = (list(map(_plain, e)) for e in histogram_edges(lo, hi, len(counts)))
            crcs = _bin_crcs(step, sid, starts, ends, counts)
            bins += [(step, sid, i, *row) for i, row in enumerate(zip(starts, ends, counts, crcs))]
    if again:
        gone = [(sid, step) for step, sid, _ in again]
        con.executemany("DELETE FROM records WHERE series = ? AND step = ?", gone)
        con.executemany("DELETE FROM bins WHERE series = ? AND step = ?", gone)
    con.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.executemany("INSERT INTO bins VALUES (?, ?, ?, ?, ?, ?, ?)", bins)


def _plain(x: float) -> float | None:
    """A number as SQLite keeps it: NaN is NULL, and -0.0 is 0.0 (SQLite stores a whole REAL as an integer)."""
    return None if math.isnan(x) else x + 0.0


def _op(reduce: str) -> str:
    return reduce.removeprefix("abs | ").split("(")[0].strip()


def _statistics(reduce: str, n: int) -> tuple[str, ...]:
    """The names of a record's numbers: ``stats`` → STATS_FIELDS, a histogram's head
    → HISTOGRAM_HEAD (its counts go to ``bins``), one value → the reduction (``norm``),
    several → ``norm[0]``, ``norm[1]``, …"""
    op = _op(reduce)
    if op == "stats":
        return STATS_FIELDS
    if op == "histogram":
        return HISTOGRAM_HEAD
    op = op or "value"
    return (op,) if n == 1 else tuple(f"{op}[{i}]" for i in range(n))


def _real(v: float | None):
    """SQLite REAL has no NaN (it becomes NULL): keep non-finite losses as text."""
    if v is None or math.isfinite(v):
        return v
    return str(v)


# -- reading -----------------------------------------------------------------------------------
def _expected_length(reduce: str) -> tuple[int, int | None]:
    """(least, most) numbers in a record of this reduction (``most`` None: any)."""
    op = _op(reduce)
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
        size = st.st_size
        for beside in (self.path + "-wal", self.path + "-journal"):  # both are read into the file's pages
            size += os.path.getsize(beside) if os.path.isfile(beside) else 0
        if size > MAX_RUN_BYTES:
            self._bad(messages.run_too_big(size, MAX_RUN_BYTES))
        self._check_header(st.st_size)
        self._roll_back()
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
            if _writer_alive(self.directory) and not getattr(self, "_retried", False):
                time.sleep(0.2)  # a writer mid-commit (rollback journal) grows the file after its header
                self._retried = True
                return self._check_header(os.path.getsize(self.path))
            self._bad(messages.run_damaged(f"truncated: {size:,} bytes of {pages * page:,}"))

    def _roll_back(self) -> None:
        """A writer killed mid-commit leaves ``run.sqlite-journal`` (rollback journal mode):
        a read-only connection cannot roll it back, so when no writer holds the lock,
        open the file once for writing and let SQLite put back the last committed step."""
        journal = self.path + "-journal"
        try:
            if os.path.getsize(journal) == 0:
                return
        except OSError:
            return
        held = _try_lock(self.directory)
        if held is None:
            return  # a live writer: its journal is not hot, SQLite waits for the commit
        try:
            con = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            try:
                con.execute("PRAGMA trusted_schema=OFF")
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                con.close()
        except sqlite3.Error as e:
            self._bad(messages.run_interrupted(str(e)))
        finally:
            if held >= 0:
                os.close(held)

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
            if fmt not in FORMATS:
                self._bad(messages.run_format(fmt, FORMATS))
            self._bad(messages.run_schema(f"format {fmt} with the tables of format {self.version}"))
        self.series, self.reduces, self.info = {}, {}, {}
        for row in self._query("SELECT * FROM series ORDER BY id LIMIT ?", (MAX_ROWS + 1,)):
            sid, key, kind, target, reduce = row[:5]
            if not all(isinstance(x, str) for x in (key, kind, target, reduce)) or not isinstance(sid, int):
                self._bad(messages.run_bad_row("series", sid))
            if self.version != "1" and row[5] != _crc(*row[:5]):
                self._bad(messages.run_checksum("series", f"'{key}'"))
            self.series[key], self.reduces[sid], self.info[sid] = sid, reduce, (key, kind, target)
        if len(self.series) > MAX_ROWS:
            self._bad(messages.run_too_many("series", MAX_ROWS))
        self.notes = list(self.notes)
        if self.version == "1":
            self.notes.append(messages.note_unverified(self.name))
        elif self.meta.get("finished") != "1":
            planned = _int(self.meta.get("steps_planned"))
            self.notes.append(messages.note_unfinished(self.name, _int(self.meta.get("last_step")), planned))
        if (not_run := _not_run(self.meta.get("not_run"))) is not None:
            self.notes.append(messages.note_not_run(self.name, not_run))

    def _check_schema(self) -> str:
        """The run's format by its tables and columns; anything else in the file is an error.

        Format 3 is told by its ``bins`` table, 1 and 2 by their ``crc`` columns."""
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
        tables = _COLUMNS[FORMAT] if "bins" in found else _COLUMNS["2"]
        missing = [t for t in tables if t not in found]
        if not found and _writer_alive(self.directory):  # its first transaction, schema and meta, is not in yet
            raise SpecError(messages.run_starting(self.directory), None, messages.no_run_hint())
        if missing:
            self._bad(messages.run_schema(f"no table '{missing[0]}'"))
        extra = [t for t in found if t not in tables and not str(t).startswith("sqlite_")]
        if extra:
            self._bad(messages.run_schema(f"an unknown table '{_short(extra[0])}'"))
        versions = set()
        for table, want in tables.items():
            cols = list(self._query(f"PRAGMA table_xinfo({table})"))
            if any(c[6] != 0 for c in cols):  # hidden or generated columns
                self._bad(messages.run_schema(f"a generated column in '{table}'"))
            names = tuple(c[1] for c in cols)
            if names == want:
                versions.add(FORMAT if "bins" in found else "2")
            elif "bins" not in found and names == _V1[table]:
                versions.add("1")
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
        return self._records(self.series[c.series_key], lo, hi)

    def _records(self, sid: int, lo=None, hi=None) -> list[tuple[int, np.ndarray]]:
        if self.version == FORMAT:
            return self._records_v3(sid, lo, hi)
        crc = "crc" if self.version != "1" else "NULL"
        rows = self._query(
            f"SELECT step, value, {crc} FROM records WHERE series = ? AND step >= ? AND step < ? ORDER BY step",
            (sid, -(2**62) if lo is None else lo, 2**62 if hi is None else hi),
        )
        return [(s, self._value(sid, s, v, k)) for s, v, k in rows]

    def _records_v3(self, sid: int, lo=None, hi=None) -> list[tuple[int, np.ndarray]]:
        """Format 3: a record's rows of ``records`` and ``bins``, read in one transaction (a
        writer's commit between the two would part a histogram from its head)."""
        assert self.con is not None
        try:
            self.con.execute("BEGIN")
        except sqlite3.Error as e:
            self._bad(self._why(e))
        try:
            return self._rows_v3(sid, lo, hi)
        finally:
            if self.con is not None and self.con.in_transaction:
                self.con.execute("COMMIT")

    def _rows_v3(self, sid: int, lo, hi) -> list[tuple[int, np.ndarray]]:
        """A record's rows put back in its order, each row checked."""
        reduce, (_, _, layer) = self.reduces[sid], self.info[sid]
        span = (sid, -(2**62) if lo is None else lo, 2**62 if hi is None else hi)
        where = "WHERE series = ? AND step >= ? AND step < ? ORDER BY step"
        by_step: dict = {}
        for step, lay, name, value, k in self._query(
            f"SELECT step, layer, statistic, value, crc FROM records {where}, statistic", span
        ):
            if not isinstance(step, int) or lay != layer or not isinstance(name, str):
                self._bad(messages.run_bad_row("records", f"step {step}"))
            if value is not None and not isinstance(value, float):
                self._bad(messages.run_bad_row("records", f"step {step}"))
            if k != _crc(step, sid, lay, name, value):
                self._bad(messages.run_checksum("records", f"step {step}"))
            by_step.setdefault(step, {})[name] = math.nan if value is None else value
        counts: dict = {}
        if _op(reduce) == "histogram":
            for step, i, a, b, n, k in self._query(
                f"SELECT step, bin, bin_start, bin_end, count, crc FROM bins {where}, bin", span
            ):
                ok = isinstance(step, int) and isinstance(i, int)
                if not ok or any(x is not None and not isinstance(x, float) for x in (a, b, n)):
                    self._bad(messages.run_bad_row("bins", f"step {step}"))
                if k != _crc(step, sid, i, a, b, n):
                    self._bad(messages.run_checksum("bins", f"step {step}"))
                got = counts.setdefault(step, [])
                if i != len(got) or len(got) >= MAX_BINS:
                    self._bad(messages.run_bins(step, reduce))
                got.append(math.nan if n is None else n)
        out = []
        n_bins = re.search(r"\bbins\s*=\s*(\d+)", reduce)  # histogram(bins=6): six rows of bins, no fewer
        for step, named in by_step.items():
            bins = counts.pop(step, [])
            names = _statistics(reduce, len(named))
            short = _op(reduce) == "histogram" and (not bins or (n_bins is not None and len(bins) != int(n_bins[1])))
            if set(named) != set(names) or short:
                self._bad(messages.run_record_length(step, reduce, len(named) + len(bins)))
            out.append((step, np.array([named[n] for n in names] + bins, dtype="<f8")))
        if counts:  # bins of a step without its head
            self._bad(messages.run_record_length(next(iter(counts)), reduce, len(counts[next(iter(counts))])))
        return out

    def scalar_series(self, lo=None, hi=None) -> dict[str, list[tuple[int, float]]]:
        """The run's scalars by tag (``scalars of … over steps``): a recorded run keeps its loss."""
        losses = self.losses(lo, hi)
        return {"loss": losses} if losses else {}

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
        if self.version == FORMAT:
            orphan = "SELECT step FROM {} WHERE series NOT IN (SELECT id FROM series)"
            unknown = next(self._query(f"{orphan.format('records')} UNION ALL {orphan.format('bins')} LIMIT 1"), None)
            if unknown is not None:
                self._bad(messages.run_bad_row("records", f"step {unknown[0]}"))
            for sid, reduce in self.reduces.items():
                steps += self._nonfinite_v3(sid, reduce)
            return min(steps) if steps else None
        crc = "crc" if self.version != "1" else "NULL"
        for step, sid, value, k in self._query(f"SELECT step, series, value, {crc} FROM records"):
            if sid not in self.reduces:
                self._bad(messages.run_bad_row("records", f"step {step}"))
            v = self._value(sid, step, value, k)
            if _nonfinite(self.reduces[sid], v):
                steps.append(step)
        return min(steps) if steps else None

    def _nonfinite_v3(self, sid: int, reduce: str) -> list[int]:
        """The first step of a series with a NaN or Inf: found by SQL, then that record read and
        verified (a damaged row never marks a step; every row drawn is verified as it is drawn)."""
        if _op(reduce) in ("stats", "histogram"):  # their nan and inf counts
            sql = "statistic IN ('nan', 'inf') AND (typeof(value) NOT IN ('real', 'null') OR value > 0)"
        else:
            sql = "value IS NULL OR typeof(value) != 'real' OR abs(value) > 1.7976931348623157e308"
        row = next(self._query(f"SELECT min(step) FROM records WHERE series = ? AND ({sql})", (sid,)), None)
        if row is None or row[0] is None:
            return []
        step = row[0] if isinstance(row[0], int) else self._bad(messages.run_bad_row("records", f"step {row[0]}"))
        return [s for s, v in self._records(sid, step, step + 1) if _nonfinite(reduce, v)]

    def frame(self, query_or_series: str | None = None):
        """The run as one tidy pandas frame: a row per number.

        Columns ``run, step, series, kind, layer, statistic, value, bin, bin_start,
        bin_end``: the loss is series ``loss``; a stats record gives one row per
        statistic (``mean``, ``std``, …); a histogram its head (``lo``, ``hi``,
        ``nan``, ``inf``, ``outside``) and a row per bin (statistic ``count``, with
        ``bin``, ``bin_start``, ``bin_end``). ``query_or_series`` keeps the series
        whose key matches it exactly or as a glob (``'grad *'``, ``'* | stats'``,
        ``'loss'``); None keeps all.

        >>> nnspec.open_run("runs/exp1").frame("activation * | stats")  # doctest: +SKIP
        """
        import pandas as pd

        keys = ["loss", *self.series]
        if query_or_series is not None:
            keys = [k for k in keys if k == query_or_series or fnmatch.fnmatchcase(k, query_or_series)]
            if not keys:
                raise SpecError(messages.not_a_series(query_or_series, ["loss", *self.series]))
        rows: list = []
        nan = math.nan
        if "loss" in keys:
            rows += [(s, "loss", "loss", "", "loss", v, None, nan, nan) for s, v in self.losses()]
        for key in keys[1:] if keys[0] == "loss" else keys:
            sid = self.series[key]
            _, kind, layer = self.info[sid]
            reduce = self.reduces[sid]
            for step, v in self._records(sid):
                names = _statistics(reduce, len(v))
                rows += [(step, key, kind, layer, n, float(x), None, nan, nan) for n, x in zip(names, v)]
                if _op(reduce) == "histogram":
                    counts = v[len(HISTOGRAM_HEAD) :]
                    starts, ends = histogram_edges(float(v[0]), float(v[1]), len(counts))
                    rows += [
                        (step, key, kind, layer, "count", float(n), i, a, b)
                        for i, (a, b, n) in enumerate(zip(starts, ends, counts))
                    ]
        columns = ["step", "series", "kind", "layer", "statistic", "value", "bin", "bin_start", "bin_end"]
        df = pd.DataFrame(rows, columns=columns)
        df.insert(0, "run", self.name)
        df["bin"] = df["bin"].astype("Int64")
        return df

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


def open_run(path: str, name: str = "") -> Run:
    """A run to read: its directory (or its ``run.sqlite``), checked as every view over steps checks it.

    >>> run = nnspec.open_run("runs/exp1")  # doctest: +SKIP
    >>> run.frame("grad fc1.weight | norm")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if os.path.basename(path) == FILE and os.path.isfile(path):
        path = os.path.dirname(path) or "."
    return Run(path, name)


def migrate(directory: str) -> bool:
    """Rewrite a run of format 1 or 2 as format 3, in place (False: it is format 3 already).

    Every record is read and verified first; the new file is written beside the
    old one and renamed over it, under the run's lock."""
    run = Run(directory)
    try:
        if run.version == FORMAT:
            return False
        lock = RunLock(directory)
        try:
            path = os.path.join(directory, PARTIAL)
            _remove(path)
            con = _connect(path, "delete")
            try:
                con.executescript("BEGIN;" + _SCHEMA)
                meta = {**run.meta, "format": FORMAT, "migrated_from": run.version}
                con.executemany("INSERT INTO meta VALUES (?, ?, ?)", [(k, v, _crc(k, v)) for k, v in meta.items()])
                for key, sid in run.series.items():
                    _, kind, target = run.info[sid]
                    row = (sid, key, kind, target, run.reduces[sid])
                    con.execute("INSERT INTO series VALUES (?, ?, ?, ?, ?, ?)", (*row, _crc(*row)))
                steps = run._query("SELECT step, loss, time FROM steps ORDER BY step")
                con.executemany("INSERT INTO steps VALUES (?, ?, ?, ?)", [(*r, _crc(*r)) for r in steps])
                layers = {sid: info[2] for sid, info in run.info.items()}
                for sid in run.reduces:
                    recs = [(step, sid, v) for step, v in run._records(sid)]
                    _insert(con, recs, layers, run.reduces)
                con.execute("COMMIT")
            finally:
                con.close()
            _sync(path)
            os.replace(path, os.path.join(directory, FILE))
            _sync(directory)
        finally:
            lock.release()
        return True
    finally:
        run.close()


def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _short(text) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return text if len(text) <= 60 else text[:57] + "..."


def _nonfinite(reduce: str, v: np.ndarray) -> bool:
    op = _op(reduce)
    if op == "stats":
        return bool(v[7] > 0 or v[8] > 0)  # nan, inf counts
    if op == "histogram":
        return bool(v[2] > 0 or v[3] > 0)
    if op in ("nan_count", "inf_count"):
        return bool(v[0] > 0)
    return not bool(np.isfinite(v).all())


def _not_run(text) -> dict | None:
    """The run's modules that did not run ({path: step}), or None (none, or unreadable)."""
    try:
        found = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    if not isinstance(found, dict) or not found:
        return None
    return {str(k): v for k, v in found.items() if isinstance(v, int)} or None
