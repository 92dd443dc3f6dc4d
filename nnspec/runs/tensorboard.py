"""TensorBoard logs both ways: a log directory read as a run, a run written as event files.

    events.out.tfevents.* ──EventAccumulator──▶ TensorBoardRun   (Run's read API: views over steps draw it)
    run.sqlite ──Run──▶ export() ──SummaryWriter──▶ events.out.tfevents.*

One rule names tags both ways (``tag``): the series ``KIND TARGET | REDUCE``
(``Capture.series_key``) is the tag ``KIND/TARGET/REDUCE``:

    grad fc1.weight | norm                ↔ scalar    grad/fc1.weight/norm
    activation act | stats                ↔ scalars   activation/act/stats/numel … /inf (STATS_FIELDS)
    param fc1.weight | histogram(bins=8)  ↔ histogram param/fc1.weight/histogram(bins=8)
                                            (+ scalars …/nan, …/inf, …/outside where not 0)
    the loss                              ↔ scalar    loss

so an exported run renders through ``--run`` exactly as the run itself. A
team's own logs answer too: ``loss over steps`` reads the tag ``loss``, else
``train/loss``, else the one tag whose last part is ``loss``; a
``histogram(...)`` view reads a histogram tagged ``KIND/TARGET`` or, for
parameters, the parameter's name (``add_histogram(name, p)`` over
a loop over the model's parameters), for gradients ``NAME.grad``, drawn with the buckets
TensorBoard stored (noted when their number is not the query's ``bins``).

Buckets: TensorBoard keeps each bucket's right edge (``bucket_limit``) and
its count, the first bucket holding everything at or below the first limit.
nnspec's histogram records have equal bins over [lo, hi], so a histogram is
read exactly when its limits are equally spaced (``add_histogram(...,
bins='auto')`` or an integer ``bins``); TensorFlow's exponential buckets
(``bins='tensorflow'``, torch's default) are refused by name rather than
re-binned into counts TensorBoard never stored.

Only ``--run DIR`` whose own files include event files is read as one run
(TensorBoard's ``--logdir`` holds one run per subdirectory: name each with its
own ``--run``, as nnspec runs are named).

Hyperparameters: the hparams plugin's session start info (``hparams_pb``,
``hp.hparams``, ``SummaryWriter.add_hparams``) is the run's ``hparams``, the
Runs table's columns. ``add_hparams`` writes it into a subdirectory of its
writer's directory (``DIR/<time>/``, unless ``run_name='.'``): small
subdirectories of ``DIR`` are read for it too, in name order, ``DIR``'s own
files last (they win). Numbers come back as numbers (whole ones as integers),
strings and booleans as themselves. An export writes the run's hparams the
same way (``hparams_pb``), in ``DIR``'s own event file; values the plugin has
no type for (lists, null) are written as their JSON text.

An export is all or nothing: it writes into a temporary directory beside
``DIR`` and moves the event file into ``DIR`` only once complete; an export
that fails leaves ``DIR`` as it was and says which series and step it stopped at.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np

from nnspec.errors import SpecError
from nnspec.numerics.reduce import STATS_FIELDS
from nnspec.numerics.reductions import HISTOGRAM_HEAD
from nnspec.runs import messages

if TYPE_CHECKING:
    from nnspec.compiler.plan import Capture

EVENTS = "events.out.tfevents."
LOSS_TAGS = ("loss", "train/loss")  # in this order, then the one tag whose last part is "loss"
MAX_LOG_BYTES = int(os.environ.get("NNSPEC_MAX_RUN_BYTES", 4 << 30))  # as for run files
NONFINITE_TAGS = ("nan", "inf", "outside")  # a histogram's counts beside its buckets, written when not 0
HPARAMS_DIR_BYTES = 1 << 20  # a subdirectory with more event bytes is a run of its own, not add_hparams's


# -- tags --------------------------------------------------------------------------------------
def tag(series_key: str) -> str:
    """The TensorBoard tag of a series: ``grad fc1.weight | norm`` → ``grad/fc1.weight/norm``.

    >>> tag("activation act | abs | histogram(bins=8)")
    'activation/act/abs | histogram(bins=8)'
    """
    kind, _, rest = series_key.partition(" ")
    target, _, reduce = rest.partition(" | ")
    return f"{kind}/{target}/{reduce}"


def _op(reduce: str) -> str:
    return reduce.removeprefix("abs | ").split("(")[0].strip()


def _event_files(directory: str) -> list[str]:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names if n.startswith(EVENTS)]


def is_logdir(directory: str) -> bool:
    """Whether ``directory`` holds TensorBoard event files itself (then it is read as one run)."""
    return bool(_event_files(directory))


def logdir_runs(directory: str) -> list[str]:
    """The subdirectories of a TensorBoard ``--logdir`` that hold event files (each one run)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return []
    return [e.name for e in entries if e.is_dir(follow_symlinks=False) and is_logdir(e.path)]


def _tensorboard():
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        raise SpecError(messages.needs_tensorboard(), None, messages.needs_tensorboard_hint()) from None
    return event_accumulator


# -- reading -----------------------------------------------------------------------------------
@dataclass
class TensorBoardRun:
    """A directory of TensorBoard event files, read with TensorBoard's own ``EventAccumulator``,
    with the read API of ``runs.store.Run`` (views over steps cannot tell them apart)."""

    directory: str
    name: str = ""
    meta: dict = field(default_factory=dict)
    series: dict = field(default_factory=dict)  # tag -> index, scalars then histograms

    def __post_init__(self):
        self.name = self.name or os.path.basename(os.path.normpath(self.directory))
        self.scalars: dict[str, list[tuple[int, float]]] = {}
        self.histograms: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = {}
        self._notes: list[str] = []
        self._view_notes: list[str] = []
        files = _event_files(self.directory)
        if not files:
            self._bad(f"no {EVENTS}* files there")
        total = 0
        for path in files:
            try:
                st = os.stat(path)
            except OSError as e:
                self._bad(f"{os.path.basename(path)}: {e.strerror or e}")
            if not stat.S_ISREG(st.st_mode):
                self._bad(f"{os.path.basename(path)} is not a regular file")
            total += st.st_size
        if total > MAX_LOG_BYTES:
            self._bad(f"its event files hold {total:,} bytes, over the {MAX_LOG_BYTES:,} a run may")
        ea = _tensorboard()
        unread = [(os.path.basename(f), *_readable(f)) for f in files]
        if not any(end for _, end, _ in unread):
            self._bad(messages.not_event_files([name for name, _, _ in unread]))
        self._notes = [
            messages.note_unread(self.name, name, size - end, size) for name, end, size in unread if end < size
        ]
        guidance = {ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0, ea.COMPRESSED_HISTOGRAMS: 1}
        stopped = _Stops()
        raw: dict[str, list] = {}
        try:
            acc = ea.EventAccumulator(self.directory, size_guidance=guidance)
            with stopped:
                acc.Reload()
            tags = acc.Tags()
            for t in tags.get(ea.SCALARS, ()):
                self.scalars[t] = _last_per_step((e.step, float(e.value)) for e in acc.Scalars(t))
            for t in tags.get(ea.TENSORS, ()):
                values = _tensor_scalars(acc.Tensors(t))
                if values is not None:
                    self.scalars.setdefault(t, values)
            for t in tags.get(ea.HISTOGRAMS, ()):
                raw[t] = _last_per_step(
                    (
                        e.step,
                        (
                            np.asarray(e.histogram_value.bucket_limit, dtype=np.float64),
                            np.asarray(e.histogram_value.bucket, dtype=np.float64),
                        ),
                    )
                    for e in acc.Histograms(t)
                )
        except SpecError:
            raise
        except Exception as e:  # a damaged or hostile file: this run's error, never a traceback
            self._bad(f"{type(e).__name__}: {e}")
        self._hparams = self._hparams_below() | self._read_hparams(acc, "its event files")
        for path in stopped.files:  # a record TensorBoard's reader refused past the header check above
            name = os.path.basename(path)
            if not any(name in n for n in self._notes):
                self._notes.append(messages.note_unread(self.name, name, None, os.path.getsize(path)))
        self.histograms = {t: [(s, lim, cnt) for s, (lim, cnt) in rows] for t, rows in raw.items()}
        self.series = {t: i for i, t in enumerate([*self.scalars, *self.histograms])}
        self.meta = {"source": "tensorboard"}

    def _bad(self, why: str):
        raise SpecError(messages.bad_log(self.directory, why))

    @property
    def notes(self) -> list[str]:
        """What views over steps of this run say: the run's own notes, then the last view's."""
        return [*self._notes, *self._view_notes]

    @property
    def hparams(self) -> dict:
        """The hparams plugin's hyperparameters of this run (``{}`` when it logged none)."""
        return dict(self._hparams)

    def _hparams_below(self) -> dict:
        """The hyperparameters ``add_hparams`` wrote into small subdirectories, in name order;
        one that cannot be read is noted, never this run's error."""
        found: dict = {}
        for sub in _hparams_dirs(self.directory):
            where = f"{os.path.basename(sub)}/"
            try:
                acc = _tensorboard().EventAccumulator(sub, size_guidance={})
                acc.Reload()
            except Exception as e:  # a damaged file: the hyperparameters are missing, the run still draws
                self._notes.append(messages.note_hparams_unread(self.name, where, f"{type(e).__name__}: {e}"))
                continue
            found |= self._read_hparams(acc, where)
        return found

    def _read_hparams(self, acc, where: str) -> dict:
        """The hyperparameters in a loaded accumulator; damaged plugin data is noted, not this run's error."""
        try:
            return _session_hparams(acc)
        except Exception as e:
            self._notes.append(messages.note_hparams_unread(self.name, where, f"{type(e).__name__}: {e}"))
            return {}

    # which tags answer a capture -------------------------------------------------------------
    def _candidates(self, c) -> list[str]:
        exact = tag(c.series_key)
        r = c.reduce
        if r is None or r.op != "histogram" or r.abs or r.range:
            return [exact]
        kind, _, rest = c.series_key.partition(" ")
        target = rest.partition(" | ")[0]
        plain = [exact, f"{kind}/{target}"]
        if kind == "param":
            plain.append(target)
        if kind == "grad":
            plain.append(f"{target}.grad")
        return plain

    def _answer(self, c) -> str | None:
        for t in self._candidates(c):
            op = _op(str(c.reduce))
            if op == "stats" and all(f"{t}/{f}" in self.scalars for f in STATS_FIELDS):
                return t
            if op == "histogram" and t in self.histograms:
                return t
            if op not in ("stats", "histogram") and t in self.scalars:
                return t
        return None

    def missing(self, captures) -> list:
        """Every capture answered, else this view's error naming what was looked for and what is there."""
        self._view_notes = []
        lacking = [c for c in captures if self._answer(c) is None]
        if lacking:
            wanted = self._candidates(lacking[0])
            if _op(str(lacking[0].reduce)) == "stats":
                wanted = [f"{wanted[0]}/{STATS_FIELDS[0]}"]
            raise SpecError(
                messages.no_tag(self.name, wanted, sorted(self.scalars), sorted(self.histograms)),
                None,
                messages.no_tag_hint(),
            )
        return []

    def records(self, c, lo=None, hi=None) -> list[tuple[int, np.ndarray]]:
        """(step, vector) at the steps in [lo, hi), laid out as a run.sqlite record of the same reduction."""
        t = self._answer(c)
        if t is None:
            self.missing([c])
        assert t is not None
        op = _op(str(c.reduce))
        if op == "stats":
            columns = [dict(self.scalars[f"{t}/{f}"]) for f in STATS_FIELDS]
            steps = sorted(set.intersection(*(set(col) for col in columns)))
            return [(s, np.array([col[s] for col in columns])) for s in steps if _within(s, lo, hi)]
        if op == "histogram":
            extra = {k: dict(self.scalars.get(f"{t}/{k}", ())) for k in NONFINITE_TAGS}
            out = []
            for s, limits, counts in self.histograms[t]:
                if _within(s, lo, hi):
                    out.append((s, self._histogram(t, s, limits, counts, extra)))
            sizes = sorted({len(v) - len(HISTOGRAM_HEAD) for _, v in out})
            if t != tag(c.series_key) and sizes and sizes != [c.reduce.bins]:
                note = messages.note_buckets(self.name, t, sizes, c.reduce.bins)
                if note not in self._view_notes:
                    self._view_notes.append(note)
            return out
        return [(s, np.array([v])) for s, v in self.scalars[t] if _within(s, lo, hi)]

    def _histogram(self, t: str, step: int, limits: np.ndarray, counts: np.ndarray, extra: dict) -> np.ndarray:
        """TensorBoard's buckets as nnspec's record: lo, hi, nan, inf, outside, then equal bins."""
        if len(limits) < 2 or len(limits) != len(counts) or not np.isfinite(limits).all():
            raise SpecError(messages.uneven_buckets(self.name, t, step), None, messages.uneven_buckets_hint())
        widths = np.diff(limits)
        if not (widths > 0).all() or not np.allclose(widths, widths[0], rtol=1e-6, atol=0):
            raise SpecError(messages.uneven_buckets(self.name, t, step), None, messages.uneven_buckets_hint())
        # the first bucket holds what lies at or below the first limit, outside the bins (an export
        # leaves it empty and writes what lay outside as …/outside)
        nan, inf = (extra[k].get(step, 0.0) for k in ("nan", "inf"))
        outside = extra["outside"].get(step, counts[0])
        head = [limits[0], limits[-1], nan, inf, outside]
        return np.concatenate([np.array(head, dtype=np.float64), counts[1:]])

    def _loss_tag(self) -> str:
        for t in LOSS_TAGS:
            if t in self.scalars:
                return t
        ends = sorted(t for t in self.scalars if t.rsplit("/", 1)[-1] == "loss")
        if len(ends) == 1:
            return ends[0]
        if len(ends) > 1:
            raise SpecError(messages.several_losses(self.name, ends), None, messages.several_losses_hint())
        raise SpecError(
            messages.no_tag(self.name, list(LOSS_TAGS), sorted(self.scalars), sorted(self.histograms)),
            None,
            messages.no_tag_hint(),
        )

    def scalar_series(self, lo=None, hi=None) -> dict[str, list[tuple[int, float]]]:
        """Every scalar tag of the logs (``scalars of train/* over steps``), in tag order."""
        return {t: [(s, v) for s, v in rows if _within(s, lo, hi)] for t, rows in sorted(self.scalars.items())}

    def losses(self, lo=None, hi=None) -> list[tuple[int, float]]:
        return [(s, v) for s, v in self.scalars[self._loss_tag()] if _within(s, lo, hi)]

    def first_nonfinite(self) -> int | None:
        """The first step with a NaN or Inf in any scalar or histogram (nan/inf counts included)."""
        steps = [s for rows in self.scalars.values() for s, v in rows if not math.isfinite(v)]
        counted = [t for t in self.scalars if _counts_nonfinite(t, self.histograms)]
        steps += [s for t in counted for s, v in self.scalars[t] if v > 0]
        steps += [
            s
            for rows in self.histograms.values()
            for s, lim, cnt in rows
            if not (np.isfinite(lim[1:-1]).all() and np.isfinite(cnt).all())
        ]
        return min(steps) if steps else None

    def close(self) -> None:
        pass


class _Stops:
    """The files at which TensorBoard's reader stopped early: it treats a bad record as the end of a file
    still being written and says so only in a debug log line, which this catches."""

    LOGGER = "tensorboard"  # tensorboard.util.tb_logging's one logger

    def __init__(self):
        import logging

        self.files: list[str] = []
        outer = self

        class _Handler(logging.Handler):
            def emit(self, record):
                if str(record.msg).startswith("Truncated record") and record.args:
                    outer.files.append(str(record.args[0]))

        self.handler = _Handler(logging.DEBUG)

    def __enter__(self):
        import logging

        log = logging.getLogger(self.LOGGER)
        self.level = log.level
        log.setLevel(logging.DEBUG)
        log.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        import logging

        log = logging.getLogger(self.LOGGER)
        log.removeHandler(self.handler)
        log.setLevel(self.level)
        return False


def _readable(path: str) -> tuple[int, int]:
    """(bytes of whole records with good length checksums, file size): TensorBoard's reader stops
    silently at a damaged or incomplete record (a file being written ends in one), so say where."""
    import struct

    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    size, end = os.path.getsize(path), 0
    with open(path, "rb") as f:
        while True:
            head = f.read(12)
            if len(head) < 12:
                return end, size
            (length,) = struct.unpack("<Q", head[:8])
            if struct.unpack("<I", head[8:])[0] != masked_crc32c(head[:8]) or end + 16 + length > size:
                return end, size
            end += 16 + length
            f.seek(end)


def _counts_nonfinite(t: str, histograms: dict) -> bool:
    """Whether scalar ``t`` counts NaN or Inf elements: a stats field or a histogram's ``…/nan``, ``…/inf``."""
    parent, _, last = t.rpartition("/")
    return last in ("nan", "inf") and (parent in histograms or parent.endswith("/stats"))


def _hparams_dirs(directory: str) -> list[str]:
    """The subdirectories of ``directory`` small enough to be ``add_hparams``'s, in name order."""
    out = []
    for name in logdir_runs(directory):
        sub = os.path.join(directory, name)
        try:
            size = sum(os.path.getsize(f) for f in _event_files(sub))
        except OSError:
            continue
        if size <= HPARAMS_DIR_BYTES:
            out.append(sub)
    return out


def _session_hparams(acc) -> dict:
    """The hparams plugin's session start info in an accumulator's events, as a run's
    ``hparams`` (bounded as a stored run's are), or ``{}``."""
    from tensorboard.plugins.hparams import metadata

    from nnspec.runs.hparams import decode, encode

    try:
        content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    except KeyError:  # no hparams plugin data in these files
        return {}
    if metadata.SESSION_START_INFO_TAG not in content:
        return {}
    info = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    values = {name: _hparam_value(v) for name, v in info.hparams.items()}
    return decode(encode({k: v for k, v in values.items() if v is not _UNKNOWN}))


_UNKNOWN = object()  # a protobuf Value of a kind hyperparameters never take (a struct)


def _hparam_value(value):
    """A ``google.protobuf.Value`` as a JSON value: a whole number as an int (the plugin stores
    every number as a double, so ``batch=32`` comes back 32, not 32.0)."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        x = value.number_value
        return int(x) if math.isfinite(x) and x.is_integer() and abs(x) < 2**53 else x
    if kind in ("string_value", "bool_value"):
        return getattr(value, kind)
    if kind == "null_value":
        return None
    if kind == "list_value":
        return [x for x in (_hparam_value(v) for v in value.list_value.values) if x is not _UNKNOWN]
    return _UNKNOWN


def _within(step: int, lo, hi) -> bool:
    return (lo is None or step >= lo) and (hi is None or step < hi)


def _last_per_step(rows) -> list:
    """One value per step, the last written (a restarted job writes its steps again), in step order."""
    return sorted(dict(rows).items())


def _tensor_scalars(events) -> list[tuple[int, float]] | None:
    """Scalars written as tensors (``add_scalar(..., new_style=True)``, ``tf.summary.scalar``), else None."""
    from tensorboard.util import tensor_util

    out = []
    for e in events:
        try:
            a = tensor_util.make_ndarray(e.tensor_proto)
        except Exception:
            return None
        if a.size != 1 or a.dtype.kind not in "fiub":
            return None
        out.append((e.step, float(a.reshape(-1)[0])))
    return _last_per_step(out)


# -- writing -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Series:
    """What ``Run.records`` reads of a capture: its series key."""

    series_key: str


def export(run_dir: str, out: str) -> list[str]:
    """Write every series of the nnspec run at ``run_dir`` as TensorBoard event files in ``out``,
    with the run's hyperparameters as the hparams plugin's session start info.

    Scalars are written in float64 (``double_precision``), histograms with
    nnspec's own bins (``add_histogram_raw``: sum and sum of squares, which a
    run does not keep, as 0). All or nothing: the files are written into a
    temporary directory beside ``out`` and moved into it once complete, so a
    failure leaves ``out`` as it was. Returns the files written."""
    from nnspec.runs.store import Run

    if os.path.exists(out) and not os.path.isdir(out):
        raise SpecError(messages.not_a_directory(out))
    if is_logdir(out):
        raise SpecError(messages.export_exists(out), None, messages.export_exists_hint())
    run = Run(run_dir)
    try:
        _tensorboard()
        made = _first_missing(os.path.dirname(os.path.abspath(out)))  # a parent this export creates
        staging = _staging_dir(out)
        done = False
        try:
            _write_run(run, staging, run_dir, out)
            written = _move_into(staging, out)
            done = True
            return written
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when it became ``out``
            if not done and made is not None:
                _remove_empty(made, os.path.dirname(os.path.abspath(out)))
    finally:
        run.close()


def _staging_dir(out: str) -> str:
    """A new empty directory beside ``out`` (same file system: the files move by renaming)."""
    import tempfile

    from nnspec.output import messages as output_messages

    parent = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(parent, exist_ok=True)
        return tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out))}.export-", dir=parent)
    except OSError as e:
        raise SpecError(output_messages.cannot_write(out, e.strerror or str(e))) from None


def _first_missing(path: str) -> str | None:
    """The outermost directory of ``path`` that does not exist yet (what ``makedirs`` creates), else None."""
    missing = None
    while not os.path.lexists(path):
        missing, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _remove_empty(top: str, deepest: str) -> None:
    """The directories from ``deepest`` up to ``top`` that a failed export created, if still empty."""
    path = deepest
    while True:
        try:
            os.rmdir(path)
        except OSError:  # not empty (someone else's files): left
            return
        if path == top or os.path.dirname(path) == path:
            return
        path = os.path.dirname(path)


class _Place:
    """Where an export is: what it is writing (for the message of one that fails)."""

    def __init__(self) -> None:
        self.what = "the event file's start"

    def at(self, what: str) -> None:
        self.what = what


def _write_run(run, directory: str, run_dir: str, out: str) -> None:
    """Every series, the loss and the hyperparameters of ``run`` into a new event file in
    ``directory``; any failure is the export's located error (which series, which step)."""
    from torch.utils.tensorboard import SummaryWriter

    place = _Place()
    try:
        writer = SummaryWriter(log_dir=directory)
        try:
            _write_series(run, writer, place)
            place.at("the hyperparameters")
            _write_hparams(run, writer)
            place.at("the event file's end")
        finally:
            writer.close()
    except SpecError:
        raise
    except Exception as e:  # a full disk, a writer that fails: this export's error, never a traceback
        why = (e.strerror if isinstance(e, OSError) else None) or f"{type(e).__name__}: {e}"
        raise SpecError(messages.export_failed(run_dir, out, place.what, why), None, messages.export_failed_hint())


def _write_series(run, writer, place: _Place) -> None:
    """The loss as the tag ``loss``, then each series under ``tag(series)``, step by step."""
    from nnspec.execute.data import histogram_edges

    def scalar(t: str, x: float, step: int) -> None:
        writer.add_scalar(t, x, step, new_style=True, double_precision=True)

    for s, loss in run.losses():
        place.at(f"the loss at step {s}")
        scalar("loss", loss, s)
    for key in run.series:
        t, op = tag(key), _op(key.partition(" | ")[2])
        for s, v in run.records(cast("Capture", _Series(key))):  # records reads its series_key
            place.at(f"series '{key}' at step {s}")
            if op == "stats":
                for name, x in zip(STATS_FIELDS, v.tolist()):
                    scalar(f"{t}/{name}", x, s)
            elif op == "histogram":
                lo, hi, nan, inf, outside = v[: len(HISTOGRAM_HEAD)].tolist()
                counts = v[len(HISTOGRAM_HEAD) :]
                _, ends = histogram_edges(lo, hi, len(counts))
                writer.add_histogram_raw(
                    t, lo, hi, float(counts.sum()), 0.0, 0.0, [lo, *ends], [0.0, *counts.tolist()], s
                )
                for name, x in zip(NONFINITE_TAGS, (nan, inf, outside)):
                    if x:
                        scalar(f"{t}/{name}", x, s)
            else:
                scalar(t, float(v[0]), s)


def _write_hparams(run, writer) -> None:
    """The run's hyperparameters as the hparams plugin's session start info (TensorBoard's own
    ``hparams_pb``), started when the run was created; nothing for a run without any."""
    from tensorboard.plugins.hparams import summary_v2

    values = {k: _plugin_value(v) for k, v in run.hparams.items()}
    if not values:
        return
    try:
        started = float(run.meta.get("created"))
    except (TypeError, ValueError):
        started = None
    writer.file_writer.add_summary(summary_v2.hparams_pb(values, start_time_secs=started))


def _plugin_value(value):
    """A value the hparams plugin has a type for: numbers, strings and booleans as they are,
    anything else (a list, null) as its JSON text."""
    import json

    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


def _move_into(staging: str, out: str) -> list[str]:
    """The complete event files from ``staging`` into ``out``: ``staging`` renamed to ``out``
    when there is none, else each file renamed into it (never over a file there)."""
    from nnspec.output import messages as output_messages

    names = sorted(os.listdir(staging))
    try:
        if not os.path.exists(out):
            os.rename(staging, out)
        else:
            if is_logdir(out) or any(os.path.lexists(os.path.join(out, n)) for n in names):
                raise SpecError(messages.export_exists(out), None, messages.export_exists_hint())
            for n in names:
                os.rename(os.path.join(staging, n), os.path.join(out, n))
    except OSError as e:
        raise SpecError(output_messages.cannot_write(out, e.strerror or str(e))) from None
    return [os.path.join(out, n) for n in names if n.startswith(EVENTS)]
