"""Vega-Lite ──vl-convert──▶ PNG, SVG or PDF, at the Vega-Lite version Altair emits.

A PNG is a pixel buffer: vl-convert aborts the whole process (SIGABRT) when
one is too large to allocate (a chart 100,000 px wide). So a PNG is measured
first (its SVG states the size) and refused past ``MAX_PNG_PIXELS`` with
``ImageTooLarge``: that view's file is not written, the others are. The PNG is
that SVG rasterised (``svg_to_png``: the bytes ``vegalite_to_png`` gives, the
chart drawn once instead of twice), an SVG drawn without ARIA attributes
(``PNG_CONFIG``: the same pixels, less to draw).

A dashboard's views are drawn by this process and by a worker process per
spare core beside it (``ExportPool``, ``python -m nnspec.output.convert
--serve``; at most ``POOL_WORKERS``): this process draws from the first view
on, each worker from the moment its engine has started (about 0.5 s), the
same calls as the serial path, so the files are the same bytes. A worker that
has not started when the views are done is stopped; one view or two, one core,
workers that cannot start, have other fonts or die: the views are drawn here.

Fonts: ``output.fonts`` (vl-convert's font database, loaded once per process).
"""

from __future__ import annotations

import collections
import os
import pickle
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from nnspec.errors import NnspecError, SpecError
from nnspec.output.fonts import prime_fonts

PNG_SCALE = 2  # device pixels per CSS pixel of the exported PNG
# The Vega-Lite config a PNG's SVG is drawn with (the spec's own config wins): no ARIA
# attributes, a description of every mark that Vega formats and a rasteriser never reads. The
# same pixels, so the same PNG bytes (tests/test_png_pixels.py); 10–40% less SVG to draw and parse.
PNG_CONFIG = {"aria": False}
MAX_PNG_PIXELS = 100_000_000  # 100 Mpx (~400 MB of RGBA): a 4000×4000 chart at scale 2 is 64 Mpx
_SVG_SIZE = re.compile(r'<svg\b[^>]*?\bwidth="([0-9.]+)"[^>]*?\bheight="([0-9.]+)"')
_GRADIENT = re.compile(r'(id="|url\(#)gradient_([0-9]+)')


class ImageTooLarge(SpecError):
    """A chart too large to export as PNG: the view's file is refused, nothing aborts."""


def too_large(width: float, height: float, scale: int, limit: int) -> str:
    px = width * height * scale * scale
    return (
        f"this chart is {width:,.0f}×{height:,.0f} px; as a PNG at scale {scale} it would be "
        f"{px / 1e6:,.0f} Mpx, over the limit of {limit / 1e6:,.0f} Mpx: no PNG written for it"
    )


def too_large_hint() -> str:
    return "give the view a smaller width/height (at most 4000), fewer layers, or export svg/pdf"


def vl_version() -> str:
    import altair as alt
    import vl_convert as vlc

    want = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    have = vlc.get_vegalite_versions()
    return want if want in have else have[-1]


def svg_size(svg: str) -> tuple[float, float] | None:
    """The width and height an SVG of vl-convert's states (None when it states none)."""
    m = _SVG_SIZE.search(svg[:4096])
    return (float(m.group(1)), float(m.group(2))) if m else None


def stable_ids(svg: str) -> str:
    """``svg`` with its gradients numbered from 0 in order of appearance. Vega numbers
    them over its engine's life (``gradient_0``, then ``gradient_1`` in the next chart
    with a colour ramp): renumbered, a view's SVG is the same bytes whichever process
    drew it, and however many charts it drew before."""
    ids: dict[str, str] = {}
    return _GRADIENT.sub(lambda m: f"{m.group(1)}gradient_{ids.setdefault(m.group(2), str(len(ids)))}", svg)


def check_png_size(spec: dict, limit: int = MAX_PNG_PIXELS, scale: int = PNG_SCALE, version: str | None = None) -> None:
    """Raise ``ImageTooLarge`` when the PNG of ``spec`` would hold more than ``limit`` pixels."""
    import vl_convert as vlc

    prime_fonts()
    check_svg_size(vlc.vegalite_to_svg(spec, vl_version=version or vl_version()), limit, scale)


def check_svg_size(svg: str, limit: int = MAX_PNG_PIXELS, scale: int = PNG_SCALE) -> None:
    """``check_png_size`` for the chart drawn as ``svg``."""
    size = svg_size(svg)
    if size is not None and size[0] * size[1] * scale * scale > limit:
        raise ImageTooLarge(too_large(size[0], size[1], scale, limit), None, too_large_hint())


def convert(spec: dict, fmt: str, version: str | None = None):
    """``spec`` as ``fmt`` (png, svg or pdf); ``version``: Vega-Lite's (``vl_version()`` when None)."""
    import vl_convert as vlc

    prime_fonts()
    version = version or vl_version()
    if fmt == "png":  # the SVG first: it states the size; then that SVG rasterised (the same bytes
        # as vegalite_to_png, which would draw the chart a second time)
        svg = vlc.vegalite_to_svg(spec, vl_version=version, config=PNG_CONFIG)
        check_svg_size(svg)
        return vlc.svg_to_png(svg, scale=PNG_SCALE)
    if fmt == "svg":
        return stable_ids(vlc.vegalite_to_svg(spec, vl_version=version))
    return vlc.vegalite_to_pdf(spec, vl_version=version)


# -- a view's exports, here or in a worker ---------------------------------------------------
# One outcome per format, in order: ("ok", fmt, bytes or str), ("refused", fmt, message: too
# large, the view keeps its chart and gets the note), ("failed", fmt, first line of
# vl-convert's error: the view fails alone; the formats after it are not tried).
Outcome = tuple[str, str, object]


def export_view(spec: dict, formats: Sequence[str], draw: Callable | None = None) -> list[Outcome]:
    """Each of ``formats`` of one view's Vega-Lite, drawn by ``draw(spec, fmt)`` (``convert``)."""
    draw = draw or convert
    out: list[Outcome] = []
    for fmt in formats:
        try:
            out.append(("ok", fmt, draw(spec, fmt)))
        except NnspecError as e:  # too large an image: this file is not written, the view still shows
            out.append(("refused", fmt, e.message))
        except ValueError as e:  # vl-convert could not draw our chart: our bug, this view fails alone
            out.append(("failed", fmt, str(e).splitlines()[0] if str(e) else ""))
            break
    return out


POOL_WORKERS = 3  # worker processes at most, beside this process (which draws too), at most cores − 1
POOL_MIN_VIEWS = 3  # fewer views to export: drawn here (a worker's start costs about twelve views)
PREFETCH = 3  # jobs a worker holds at once: the next ones wait in its pipe while it draws one


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pool_size(n_views: int) -> int:
    """How many worker processes help this process export ``n_views`` views (0: it draws them alone).

    Whatever else the machine runs: this process draws views from the first one on, so a
    worker costs only its start on another core (about 0.45 s of CPU), and a worker that has
    not started when the views are done is stopped. On two cores, 100 histograms' PNGs with a
    worker beside this process: 26–28 ms a view against 38–43 ms drawn here alone, quiet, and
    37 against 37–39 ms with a busy loop beside them, where workers that left this process
    idle took 43 ms (``bench/bench_png.py``)."""
    n_cores = cores()
    if n_views < POOL_MIN_VIEWS or n_cores < 2 or not sys.executable:
        return 0
    return min(POOL_WORKERS, n_cores - 1, n_views - 1)


PIPE_SIZE = 1 << 20  # bytes a worker's pipes hold (Linux; its default is 64 KiB, and 1 MiB its usual most)


def _widen(pipe) -> None:
    """Let ``pipe`` hold ``PIPE_SIZE`` bytes where the system allows. A worker's answer (a PNG
    of a few hundred KiB) then goes in one write, without waiting for this process to read
    it; and this process reads it in a read or two, each of which waits for the GIL, which
    this process's own drawing holds for up to tens of ms at a time (vl-convert's calls)."""
    import fcntl

    try:
        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except (OSError, ValueError, AttributeError):
        pass


_DEAD = object()  # what ``_Worker.receive`` gives for a worker that is gone


class _Worker:
    """One ``--serve`` process: it says its fonts (``prime_fonts``) once its engine has started,
    then takes jobs (spec, formats, version) on its stdin and answers each with its outcomes
    (None: the parent draws that view)."""

    def __init__(self, version: str) -> None:
        # the folder that holds the nnspec package (this file is nnspec/output/convert.py)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nnspec.output.convert", "--serve", version],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        for pipe in (self.proc.stdin, self.proc.stdout):  # a PNG's answer in one write, read in one go
            _widen(pipe)

    def send(self, job: tuple) -> bool:
        assert self.proc.stdin is not None
        try:
            pickle.dump(job, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError):  # gone (ValueError: its pipe closed by ``stop``)
            return False

    def receive(self):
        """Its next message; ``_DEAD`` when it is gone."""
        assert self.proc.stdout is not None
        try:
            return pickle.load(self.proc.stdout)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError):
            return _DEAD

    def stop(self) -> None:
        """Stop it now, whatever it is doing (its work is no longer wanted)."""
        try:
            self.proc.terminate()
        except OSError:
            pass

    def close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ExportPool:
    """Views' exports, drawn by this process in ``results()`` and by ``workers`` processes from
    the moment they have started, as they are submitted: ``results()`` gives each view's
    outcomes in submission order. ``workers`` 0, or workers that cannot start, have other
    fonts or die: this process draws every view they do not (``draw``); a view a worker
    died on, or could not draw, is drawn here and by no other worker. Once no view is left
    untaken, this process draws the views the workers hold too, the last taken first
    (a worker may not have begun it): whichever draws a view first gives its outcomes
    (the same bytes), and the workers are stopped once every view has them."""

    def __init__(self, workers: int, draw: Callable | None = None) -> None:
        self.draw = draw
        self.jobs: list[tuple[dict, tuple[str, ...]]] = []
        self.results_: dict[int, list[Outcome]] = {}
        self.todo: collections.deque[int] = collections.deque()  # jobs nobody has taken
        self.here: collections.deque[int] = collections.deque()  # jobs only this process may take
        self.lent: dict[int, None] = {}  # jobs in workers' hands, in the order they were taken
        self.drawn_here: set[int] = set()  # lent jobs this process drew (or draws) too
        self.done = False  # no more jobs for the workers
        self.cond = threading.Condition()
        self.version: str | None = None
        self.fonts: str | None = None
        self.workers: list[_Worker] = []
        if workers:
            try:
                self.version = vl_version()
                for _ in range(workers):
                    self.workers.append(_Worker(self.version))
                self.fonts = prime_fonts()  # while the workers start
            except (OSError, ValueError, ImportError):  # processes cannot start here: draw here
                for worker in self.workers:
                    worker.close()
                self.workers = []
        self.threads = [threading.Thread(target=self._feed, args=(w,), daemon=True) for w in self.workers]
        for t in self.threads:
            t.start()

    def _take(self, holding: int) -> int | None:
        """(``cond`` held) The next job for a worker holding ``holding`` jobs: None when it
        should stop taking for now (it holds enough, or there is nothing left for it). A
        worker that holds a job takes another only while one more is left for this process."""
        while True:
            if holding >= PREFETCH or self.done or (holding and len(self.todo) < 2):
                return None
            if self.todo:
                i = self.todo.popleft()
                self.lent[i] = None
                return i
            if holding:
                return None
            self.cond.wait()

    def _feed(self, worker: _Worker) -> None:
        held: collections.deque[int] = collections.deque()
        try:
            if worker.receive() != self.fonts:  # other fonts, or it could not start: this process draws
                return
            while True:
                with self.cond:
                    i = self._take(len(held))
                if i is not None:
                    held.append(i)
                    spec, formats = self.jobs[i]
                    if not worker.send((spec, formats, self.version)):
                        return
                    continue
                if not held:
                    return
                out = worker.receive()
                if out is _DEAD:
                    return
                i = held.popleft()
                with self.cond:
                    self.lent.pop(i, None)
                    if out is None:  # it could not draw this view: this process does
                        self.here.append(i)
                    else:
                        self.results_.setdefault(i, out)
                    self.cond.notify_all()
        finally:
            with self.cond:  # what it held is drawn here
                for i in held:
                    self.lent.pop(i, None)
                    self.here.append(i)
                self.cond.notify_all()
            worker.close()

    def submit(self, spec: dict, formats: Sequence[str]) -> None:
        with self.cond:
            self.jobs.append((spec, tuple(formats)))
            self.todo.append(len(self.jobs) - 1)
            self.cond.notify_all()

    def _next(self) -> int | None:
        """(``cond`` held) The next view this process draws (None: none for now)."""
        for jobs in (self.here, self.todo):
            while jobs:
                if (i := jobs.popleft()) not in self.results_:
                    return i
        for i in reversed(self.lent):
            if i not in self.drawn_here:
                self.drawn_here.add(i)
                return i
        return None

    def results(self) -> list[list[Outcome]]:
        """Every view's outcomes, drawn here while there is any view to draw (see the class)."""
        while True:
            with self.cond:
                while (i := self._next()) is None and len(self.results_) < len(self.jobs):
                    self.cond.wait()
            if i is None:
                break
            spec, formats = self.jobs[i]
            out = export_view(spec, formats, self.draw)
            with self.cond:
                self.results_.setdefault(i, out)
        self._stop()
        return [self.results_[i] for i in range(len(self.jobs))]

    def _stop(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()
        for worker in self.workers:  # nothing of theirs is wanted any more
            worker.stop()

    def close(self) -> None:
        """Stop the workers and wait for them (after ``results()``, or after an error: then
        without drawing what is left)."""
        self._stop()
        for t in self.threads:
            t.join()


def _serve(version: str) -> None:
    """A worker: jobs from stdin, outcomes to the stdout it started with (anything the
    engine prints goes to stderr); ends at the end of its input. It starts vl-convert's
    engine (and the rasteriser's fonts) at once, by drawing a point, then says its fonts
    (``prime_fonts``: a parent whose fonts differ, loaded before nnspec loaded them, draws
    its views itself). Jobs are read as they come, while it draws (a job in the pipe never
    waits behind an answer the parent has not read yet)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which closes our input
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    jobs: queue.Queue = queue.Queue()
    # not a daemon: it ends at the end of the input, and the process waits for it (a daemon
    # thread inside a read of stdin aborts the interpreter's shutdown)
    threading.Thread(target=_read_jobs, args=(sys.stdin.buffer, jobs)).start()
    fonts = None
    try:
        import vl_convert as vlc

        fonts = prime_fonts()
        vlc.svg_to_png(vlc.vegalite_to_svg({"mark": "point"}, vl_version=version), scale=PNG_SCALE)
    except Exception:  # the parent draws, and says what is wrong, as the serial path would
        pass
    try:
        pickle.dump(fonts, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()
        while (job := jobs.get()) is not None:
            try:
                spec, formats, version = job
                out: list[Outcome] | None = export_view(spec, formats, lambda s, f, v=version: convert(s, f, v))
            except Exception:  # anything else: the parent draws this view itself, and raises as it would
                out = None
            pickle.dump(out, replies, protocol=pickle.HIGHEST_PROTOCOL)
            replies.flush()
    except (BrokenPipeError, OSError):  # the parent stopped listening
        pass


def _read_jobs(stream, jobs: queue.Queue) -> None:
    while True:
        try:
            jobs.put(pickle.load(stream))
        except Exception:  # the end of the input (or a broken pipe): no more jobs
            jobs.put(None)
            return


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"] and len(sys.argv) == 3:
    _serve(sys.argv[2])
